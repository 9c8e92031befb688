"""How the panel reads a request at the boundary: a state-changing POST comes from the panel's
own page (no cross-site request: `Sec-Fetch-Site`, `Origin`, and no `Origin: null`; a refusal
is logged, rate-limited), is `application/json` (415), valid
JSON (400 `malformed_json`) and valid against its pydantic command model (400 `invalid_body` with
each field's reason, never echoing the input). The size and time bounds are the HTTP server's
(`gateway.ops.http`)."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from gateway.ops.connections import RateLimitFilter
from gateway.ops.httptypes import HttpError, Request

if TYPE_CHECKING:  # pydantic: at the first body parsed (a panel at rest does without, issue 15)
    from pydantic import BaseModel

M = TypeVar("M", bound="BaseModel")

log = logging.getLogger("gateway.panel.server")
log.addFilter(RateLimitFilter(prefix="event=panel_cross_site_refused"))


def check_origin(request: Request) -> None:
    """Refuse cross-site POSTs (SameSite=Strict and the JSON content type do the rest), and
    those from an opaque origin (`Origin: null`: a sandboxed frame, a `data:` page, a file) —
    the panel's own page always sends its origin. Each refusal is logged
    (`event=panel_cross_site_refused`, one line, then at most one a minute with a count)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        _refused(request)
        raise HttpError(403, "forbidden", f"cross-site request refused ({fetch_site[:40]})")
    origin = request.headers.get("origin")
    if origin == "null":
        _refused(request)
        raise HttpError(403, "forbidden", "request from an opaque origin (Origin: null) "
                                          "refused: use the panel's own page")
    if origin is not None and _netloc(origin) != request.host:
        _refused(request)
        raise HttpError(403, "forbidden", "request from another origin refused")


def _refused(request: Request) -> None:
    log.warning("event=panel_cross_site_refused client=%s path=%s origin=%r fetch_site=%r",
                request.remote or "unknown", request.path[:100],
                request.headers.get("origin", "")[:100],
                request.headers.get("sec-fetch-site", "")[:40])


def _netloc(origin: str) -> str | None:
    try:
        return urlsplit(origin).netloc
    except ValueError:  # e.g. "http://[oops": no origin this panel serves
        return None


def json_request(request: Request) -> None:
    """A POST's origin and content type: same-site, `application/json`."""
    check_origin(request)
    if request.content_type != "application/json":
        raise HttpError(
            415,
            "unsupported_media_type",
            "Content-Type must be application/json, not "
            f"{request.content_type[:60] or 'none'}",
        )


def json_body(request: Request, model: type[M]) -> M:
    """The body as `model` (after `json_request`), or a 400 with the reasons."""
    from pydantic import ValidationError

    json_request(request)
    try:
        data: Any = json.loads(request.body)
    except (ValueError, RecursionError) as exc:
        reason = str(exc) if isinstance(exc, json.JSONDecodeError) else "not UTF-8 JSON"
        if isinstance(exc, RecursionError):
            reason = "nested too deeply"
        raise HttpError(400, "malformed_json", f"body is not valid JSON: {reason}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {
                "loc": ".".join(str(part) for part in err["loc"]) or "(body)",
                "msg": err["msg"],
            }
            for err in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        summary = "; ".join(f"{d['loc']}: {d['msg']}" for d in details[:5])
        raise HttpError(
            400, "invalid_body", f"invalid {model.__name__}: {summary}", details
        ) from None
