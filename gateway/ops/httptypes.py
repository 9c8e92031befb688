"""What the shared HTTP server (`gateway.ops.http`) hands a handler and takes back: `Request`
(complete and parsed: method, path, query, lower-case headers, cookies, peer, body), `Response`
(with its cookies), `HttpError` (a refusal: status, code, reason, details), JSON answers, and the
`Router` of exact paths (404 for an unknown path, 405 with `Allow` for another method, HEAD
answered by GET routes). No I/O here."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Awaitable, Callable

from gateway.records import dataclass, field


class HttpError(Exception):
    """Answer `status` with `{"error", "message"[, "details"]}` (and `headers`)."""

    def __init__(self, status: int, error: str, message: str,
                 details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.details = details
        self.headers: dict[str, str] = {}


@dataclass(slots=True)
class Request:
    """One complete request. Header names are lower case; repeated headers are joined with
    ", " (cookies with "; ")."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    remote: str
    body: bytes = b""
    query_pairs: list[tuple[str, str]] = field(default_factory=list)
    """The query's parameters in order, repeats included (`query` keeps the last of each)."""

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower case ("" when absent)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    @property
    def host(self) -> str:
        return self.headers.get("host", "")

    @property
    def cookies(self) -> dict[str, str]:
        """The request's cookies, read leniently: the header is split on ";" into name=value
        pairs and a pair that does not parse (no "=", an empty or odd name, an unclosed quote)
        is skipped, never the rest of the header — another application on the same host (cookies
        ignore ports) may set cookies `http.cookies` refuses, and one of those before ours must
        not log the operator out. A quoted value is unquoted as `http.cookies` does; a name
        given twice keeps its last value. `http.cookies` is imported at the first request with
        a Cookie header (a browser's, not a scraper's or a health check's: issue 15)."""
        header = self.headers.get("cookie", "")
        if not header:
            return {}
        from http.cookies import SimpleCookie

        decoder: SimpleCookie = SimpleCookie()
        found: dict[str, str] = {}
        for pair in header.split(";"):
            name, equals, value = pair.partition("=")
            name, value = name.strip(), value.strip()
            if not equals or not _COOKIE_NAME.match(name):
                continue
            if value.startswith('"'):
                if len(value) < 2 or not value.endswith('"'):
                    continue
                value = str(decoder.value_decode(value)[0])
            found[name] = value
        return found


_COOKIE_NAME = re.compile(r"\A[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}\Z")
"""A cookie name: an HTTP token (RFC 6265)."""


@dataclass(slots=True)
class Response:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    cookies: list[str] = field(default_factory=list)
    """Set-Cookie header values."""

    def set_cookie(self, name: str, value: str, *, max_age: int, path: str = "/",
                   httponly: bool = True, samesite: str = "Strict") -> None:
        parts = [f"{name}={value}", f"Max-Age={max_age}", f"Path={path}",
                 f"SameSite={samesite}"]
        if httponly:
            parts.append("HttpOnly")
        self.cookies.append("; ".join(parts))

    def del_cookie(self, name: str, path: str = "/") -> None:
        self.cookies.append(f'{name}=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; '
                            f"Path={path}")


def json_response(data: object, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    """Compact JSON, never cached."""
    return Response(json.dumps(data, separators=(",", ":")).encode(), status,
                    "application/json", {**(headers or {}), "Cache-Control": "no-store"})


COMPRESS_FROM = 8192
"""Bytes from which a JSON or text answer is sent gzip-compressed to a client that takes it:
the panel's state (every room's readings) is 0.2-0.5 MiB, fetched every 1.5 s by each open
panel — 2.5 Mbit/s a phone on a site's Wi-Fi (the storm audit); level 1 makes it ~10 times
smaller in a few milliseconds."""


def compressed(response: Response, request: Request) -> Response:
    """`response` gzip-compressed if it is large JSON or text and `request` accepts gzip."""
    if len(response.body) < COMPRESS_FROM or "content-encoding" in {
            k.lower() for k in response.headers} or not (
            response.content_type == "application/json"
            or response.content_type.startswith("text/")):
        return response
    if not _accepts_gzip(request.headers.get("accept-encoding", "")):
        return response
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)  # 31: the gzip format
    response.body = packer.compress(response.body) + packer.flush()
    response.headers = {**response.headers, "Content-Encoding": "gzip",
                        "Vary": "Accept-Encoding"}
    return response


def _accepts_gzip(header: str) -> bool:
    """`Accept-Encoding` names gzip with a quality above 0 (`gzip;q=0` refuses it)."""
    for part in header.split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() != "gzip":
            continue
        name, _, value = params.strip().partition("=")
        if name.strip().lower() != "q":
            return True
        try:
            return float(value) > 0
        except ValueError:
            return False
    return False


def error_response(exc: HttpError) -> Response:
    body: dict[str, object] = {"error": exc.error, "message": exc.message}
    if exc.details is not None:
        body["details"] = exc.details
    return json_response(body, exc.status, exc.headers)


Handler = Callable[[Request], Awaitable[Response]]


class Router:
    """Exact paths to handlers, per method."""

    def __init__(self) -> None:
        self._routes: dict[str, dict[str, Handler]] = {}

    def add(self, method: str, path: str, handler: Handler) -> None:
        methods = self._routes.setdefault(path, {})
        if method in methods:
            raise ValueError(f"route {method} {path} is already taken")
        methods[method] = handler

    def add_get(self, path: str, handler: Handler) -> None:
        self.add("GET", path, handler)

    def add_post(self, path: str, handler: Handler) -> None:
        self.add("POST", path, handler)

    def paths(self) -> list[str]:
        return list(self._routes)

    def resolve(self, method: str, path: str) -> Handler:
        methods = self._routes.get(path)
        if methods is None:
            raise HttpError(404, "not_found", f"no such page or API: {method} {path[:200]}")
        handler = methods.get("GET" if method == "HEAD" else method)
        if handler is None:
            allow = ", ".join(sorted(methods))
            error = HttpError(405, "method_not_allowed",
                              f"{method[:20]} is not allowed here (only {allow})")
            error.headers["Allow"] = allow
            raise error
        return handler
