"""The panel's HTTP server: the page, the JSON API, /healthz and /metrics, on aiohttp.

Everything that arrives is parsed at the boundary: a POST must be `application/json`, at most
`MAX_BODY` bytes, valid JSON and valid against its pydantic command model, or it gets a JSON
error (`{"error": <code>, "message": <reason>}`) with a 4xx status. Changing state needs a
session (cookie from `POST /api/login`); reading needs one only with `login_to_view`.

`GET /healthz` (no login) answers the gateway's health as judged by `gateway.ops.health`:
`{"ok", "status": ok|degraded|failing, "checks": {...}}`, 200 unless failing (503).
`GET /metrics` (no login; only for clients in `panel.metrics_allow`, and not at all with
`panel.metrics: false`) answers Prometheus's text format from `gateway.ops.metrics`. Both need
a backend that is also a `gateway.ops.source.MetricsSource` (the daemon's Gateway is); with a
bare panel backend /healthz answers ok with no checks and /metrics is 404.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.clock import Clock
from gateway.config.site import Panel
from gateway.ops.health import HealthMonitor, HealthReport, Level, monitor_for
from gateway.ops.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gateway.ops.metrics import make_registry, render
from gateway.ops.source import MetricsSource
from gateway.panel.backend import CommandRefused, PanelBackend
from gateway.panel.connections import (
    IDLE_TIMEOUT,
    LISTEN_BACKLOG,
    ConnectionGuard,
    RateLimitFilter,
    quieten_accept_errors,
)
from gateway.panel.events import History, Reply  # issue 12: the Events and Incidents views
from gateway.panel.passwords import ScryptHash, parse_hash, verify_password
from gateway.panel.throttle import LoginThrottle
from gateway.panel.views import (
    AcknowledgeCommand,
    LoginCommand,
    ShelveCommand,
    SuppressCommand,
    UnsuppressCommand,
)

if TYPE_CHECKING:  # prometheus_client is imported at the first scrape (gateway.ops.metrics)
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)
log.addFilter(RateLimitFilter(prefix="event=panel_error"))  # a failing handler: 1 line a minute
log.addFilter(RateLimitFilter(prefix="event=panel_login_throttled"))
_http_log = logging.getLogger(f"{__name__}.http")
"""aiohttp's own errors (malformed requests, lost connections) of the panel's connections."""
_http_log.addFilter(RateLimitFilter())

MAX_BODY = 64 * 1024
COOKIE = "roomwarden_session"
MAX_SESSIONS = 256

_STATIC = {
    "/": ("index.html", "text/html"),
    "/static/panel.js": ("panel.js", "text/javascript"),
    "/static/panel.css": ("panel.css", "text/css"),
    "/static/sound.js": ("sound.js", "text/javascript"),  # issue 14: the browser's alarm sound
    "/static/views.js": ("views.js", "text/javascript"),  # issue 14: readings, health, outputs
    "/static/history.js": ("history.js", "text/javascript"),  # issue 12: Events, Incidents
}
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
}

_REPORT_HEADERS = {  # issue 12: an incident report (inline styles, no script) in the panel's frame
    "Cache-Control": "no-store",
    "X-Frame-Options": "SAMEORIGIN",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'self'"
    ),
}

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def kv(event: str, **fields: object) -> str:
    """One structured log line: `event=... key=value ...`, values with spaces JSON-quoted."""
    parts = [f"event={event}"]
    for key, value in fields.items():
        text = "" if value is None else str(value)
        if not text or any(c.isspace() or c in '"=\\' for c in text) or not text.isprintable():
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    return " ".join(parts)


class ApiError(Exception):
    def __init__(
        self, status: int, error: str, message: str, details: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.details = details
        self.headers: dict[str, str] = {}


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    response = web.Response(
        text=json.dumps(data, separators=(",", ":")),
        status=status,
        content_type="application/json",
        headers=headers,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _error_response(exc: ApiError) -> web.Response:
    body: dict[str, object] = {"error": exc.error, "message": exc.message}
    if exc.details is not None:
        body["details"] = exc.details
    return _json(body, exc.status, exc.headers or None)


_SCOPES = {"address": "from this address", "user": "for this user name",
           "panel": "on this panel"}

_HTTP_ERRORS = {
    400: "bad_request",
    401: "not_logged_in",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


@dataclass(slots=True)
class Session:
    user: str
    expires: float
    """clock.monotonic() after which the session is gone."""


class SessionTable:
    """In-memory sessions: random tokens, fixed lifetime, bounded size (oldest evicted)."""

    def __init__(self, clock: Clock, ttl: float, limit: int = MAX_SESSIONS) -> None:
        self._clock = clock
        self._ttl = ttl
        self._limit = limit
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self, user: str) -> str:
        self._prune()
        while len(self._sessions) >= self._limit:
            self._sessions.popitem(last=False)
        token = secrets.token_urlsafe(32)
        self._sessions[token] = Session(user, self._clock.monotonic() + self._ttl)
        return token

    def user(self, token: str | None) -> str | None:
        if not token:
            return None
        session = self._sessions.get(token)
        if session is None:
            return None
        if self._clock.monotonic() >= session.expires:
            del self._sessions[token]
            return None
        return session.user

    def drop(self, token: str | None) -> None:
        if token:
            self._sessions.pop(token, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _prune(self) -> None:
        now = self._clock.monotonic()
        for token in [t for t, s in self._sessions.items() if now >= s.expires]:
            del self._sessions[token]


def _load_static() -> dict[str, tuple[bytes, str]]:
    root = resources.files("gateway.panel").joinpath("static")
    return {
        path: (root.joinpath(name).read_bytes(), ctype) for path, (name, ctype) in _STATIC.items()
    }


class PanelServer:
    """The panel's HTTP server; `start()` binds and returns the port, `stop()` closes it.

    `ops`: what /healthz and /metrics read; default: the backend, when it is a MetricsSource
    (the daemon's Gateway). That is decided at the first request, not here: the daemon makes
    its panel before it has set every attribute the ops views read."""

    def __init__(self, backend: PanelBackend, settings: Panel, clock: Clock, *,
                 ops: MetricsSource | None = None) -> None:
        self._backend = backend
        self._ops = ops
        self._health: HealthMonitor | None = None
        self._registry: CollectorRegistry | None = None
        self._metrics_allow = settings.metrics_allow
        self._settings = settings
        self._clock = clock
        self._users: dict[str, ScryptHash] = {}
        for user in settings.users:
            try:
                self._users[user.name] = parse_hash(user.password_hash)
            except ValueError as exc:
                raise ValueError(f"panel user {user.name!r}: {exc}") from None
        # A well-formed hash to verify against for unknown users, so a login takes as long
        # whether or not the user exists.
        self._decoy = ScryptHash(
            n=2**14, r=8, p=1, salt=secrets.token_bytes(16), digest=secrets.token_bytes(32)
        )
        self.sessions = SessionTable(clock, settings.session_ttl)
        self.throttle = LoginThrottle(clock, users=self._users)
        self.connections: ConnectionGuard | None = None
        """The connection bounds (gateway.panel.connections), made by `start()`."""
        self._verify_lock = asyncio.Semaphore(1)
        self._static = _load_static()
        self._runner: web.AppRunner | None = None
        self._history: History | None = None  # issue 12: made at the first read
        self.port: int | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._errors])
        for path in self._static:
            app.router.add_get(path, self._static_file)
        app.router.add_get("/healthz", self._healthz)
        if self._settings.metrics:
            app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/me", self._me)
        app.router.add_post("/api/login", self._login)
        app.router.add_post("/api/logout", self._logout)
        app.router.add_post("/api/alarms/acknowledge", self._acknowledge)
        app.router.add_post("/api/alarms/shelve", self._shelve)
        app.router.add_post("/api/suppress", self._suppress)
        app.router.add_post("/api/unsuppress", self._unsuppress)
        # --- issue 12: the Events and Incidents views (reading only; gateway.panel.events) ---
        app.router.add_get("/api/events", self._history_view(lambda h, q: h.events(q)))
        app.router.add_get("/api/incidents", self._history_view(lambda h, q: h.incidents(q)))
        app.router.add_get("/api/incidents/report",
                           self._history_view(lambda h, q: h.report(q)))
        # --- end issue 12 ---
        return app

    async def start(self) -> int:
        if self._runner is not None:
            raise RuntimeError("panel server already started")
        runner = web.AppRunner(
            self.make_app(), access_log=None, handle_signals=False, shutdown_timeout=2.0,
            keepalive_timeout=IDLE_TIMEOUT, logger=_http_log,
        )
        await runner.setup()
        quieten_accept_errors()
        self.connections = ConnectionGuard()
        assert runner.server is not None
        self.connections.attach(runner.server)
        try:
            site = web.TCPSite(runner, self._settings.bind, self._settings.port,
                               backlog=LISTEN_BACKLOG)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        address = runner.addresses[0]
        self.port = int(address[1])
        log.info(kv("panel_started", bind=self._settings.bind, port=self.port))
        return self.port

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            if self.connections is not None:
                self.connections.close_all()
            log.info(kv("panel_stopped", port=self.port))

    # --- middleware and helpers ---------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        guard, protocol = self.connections, request.protocol
        if guard is not None:
            guard.begin(protocol)
        try:
            response = await handler(request)
        except ApiError as exc:
            response = _error_response(exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = _HTTP_ERRORS.get(exc.status, "http_error")
            message = exc.reason
            if exc.status == 404:
                message = f"no such page or API: {request.method} {request.path}"
            elif exc.status == 413:
                message = f"request body is larger than {MAX_BODY} bytes"
            error = ApiError(exc.status, code, message)
            if exc.status == 405 and "Allow" in exc.headers:
                error.headers["Allow"] = exc.headers["Allow"]
            response = _error_response(error)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("event=panel_error method=%s path=%s", request.method,
                          json.dumps(request.path[:200]))
            response = _error_response(ApiError(500, "internal_error", "internal server error"))
        finally:
            if guard is not None:
                guard.end(protocol)
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    def _user(self, request: web.Request) -> str | None:
        return self.sessions.user(request.cookies.get(COOKIE))

    def _require_user(self, request: web.Request) -> str:
        user = self._user(request)
        if user is None:
            raise ApiError(401, "not_logged_in", "log in first")
        return user

    def _check_origin(self, request: web.Request) -> None:
        """Refuse cross-site POSTs (SameSite=Strict and the JSON content type do the rest)."""
        fetch_site = request.headers.get("Sec-Fetch-Site")
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            raise ApiError(403, "forbidden", f"cross-site request refused ({fetch_site})")
        origin = request.headers.get("Origin")
        if origin is not None and origin != "null" and urlsplit(origin).netloc != request.host:
            raise ApiError(403, "forbidden", "request from another origin refused")

    async def _body(self, request: web.Request, model: type[M]) -> M:
        self._check_origin(request)
        if request.content_type != "application/json":
            raise ApiError(
                415,
                "unsupported_media_type",
                f"Content-Type must be application/json, not {request.content_type or 'none'}",
            )
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise ApiError(413, "body_too_large", f"request body is larger than {MAX_BODY} bytes")
        raw = await request.read()
        try:
            data: Any = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            reason = str(exc) if isinstance(exc, json.JSONDecodeError) else "not UTF-8 JSON"
            if isinstance(exc, RecursionError):
                reason = "nested too deeply"
            raise ApiError(400, "malformed_json", f"body is not valid JSON: {reason}") from None
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
            raise ApiError(
                400, "invalid_body", f"invalid {model.__name__}: {summary}", details
            ) from None

    async def _empty_body(self, request: web.Request) -> None:
        self._check_origin(request)
        if request.content_type != "application/json":
            raise ApiError(
                415,
                "unsupported_media_type",
                f"Content-Type must be application/json, not {request.content_type or 'none'}",
            )
        await request.read()

    @staticmethod
    def _client(request: web.Request) -> str:
        return request.remote or "unknown"

    # --- handlers -----------------------------------------------------------------------------

    async def _static_file(self, request: web.Request) -> web.Response:
        body, ctype = self._static[request.path]
        response = web.Response(body=body, content_type=ctype, charset="utf-8")
        response.headers["Cache-Control"] = "no-cache"
        return response

    def _ops_source(self) -> MetricsSource | None:
        if self._ops is None and isinstance(self._backend, MetricsSource):
            self._ops = self._backend
        return self._ops

    @property
    def health(self) -> HealthMonitor | None:
        """The gateway's health monitor (None: the backend is no MetricsSource)."""
        if self._health is None and (ops := self._ops_source()) is not None:
            self._health = monitor_for(ops)
        return self._health

    @property
    def metrics(self) -> CollectorRegistry | None:
        """This gateway's own Prometheus registry (None: the backend is no MetricsSource)."""
        if self._registry is None and (ops := self._ops_source()) is not None:
            self._registry = make_registry(ops, health=self.health)
        return self._registry

    async def _healthz(self, request: web.Request) -> web.Response:
        health = self.health
        if health is None:
            report = HealthReport(ok=True, status=Level.OK, checks={})
        else:
            report = health.check()
        return _json(report.model_dump(mode="json"), status=report.http_status)

    def _metrics_allowed(self, request: web.Request) -> bool:
        try:
            address = ipaddress.ip_address((request.remote or "").split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._metrics_allow)

    async def _metrics(self, request: web.Request) -> web.Response:
        registry = self.metrics
        if registry is None:
            raise ApiError(404, "not_found", "this panel has no gateway to report metrics of")
        if not self._metrics_allowed(request):
            log.info(kv("metrics_refused", client=self._client(request)))
            raise ApiError(403, "forbidden", "metrics are not served to this address")
        response = web.Response(body=render(registry))
        response.headers["Content-Type"] = METRICS_CONTENT_TYPE
        response.headers["Cache-Control"] = "no-store"
        return response

    async def _state(self, request: web.Request) -> web.Response:
        if self._settings.login_to_view:
            self._require_user(request)
        state = self._backend.panel_state()
        return _json(state.model_dump(mode="json"))

    # --- issue 12: the Events and Incidents views ---------------------------------------------

    def _history_view(self, view: Callable[[History, Iterable[tuple[str, str]]],
                                           Awaitable[Reply]]) -> Handler:
        """A read of the journal or the incident records: the same login as /api/state."""

        async def handler(request: web.Request) -> web.StreamResponse:
            if self._settings.login_to_view:
                self._require_user(request)
            if self._history is None:
                self._history = History.of(self._backend)
            if self._history is None:
                raise ApiError(404, "not_found", "this panel has no alarm journal to show")
            reply = await view(self._history, list(request.query.items()))
            if isinstance(reply.body, dict):
                return _json(reply.body, reply.status)
            return web.Response(text=reply.body, status=reply.status, content_type="text/html",
                                headers=_REPORT_HEADERS)

        return handler

    # --- end issue 12 -------------------------------------------------------------------------

    async def _me(self, request: web.Request) -> web.Response:
        return _json(
            {
                "user": self._user(request),
                "login_to_view": self._settings.login_to_view,
                "login_enabled": bool(self._users),
            }
        )

    async def _login(self, request: web.Request) -> web.Response:
        client = self._client(request)
        command = await self._body(request, LoginCommand)
        refusal = self.throttle.check(client, command.user)
        if refusal is not None:
            log.warning("event=panel_login_throttled scope=%s wait_s=%.0f", refusal.scope,
                        refusal.wait)
            error = ApiError(429, "too_many_attempts", f"too many failed logins ("
                             f"{_SCOPES[refusal.scope]}); try again in {refusal.wait:.0f} s")
            error.headers["Retry-After"] = str(max(1, int(refusal.wait + 0.999)))
            raise error
        known = self._users.get(command.user)
        # Count the attempt as a failure before checking it, so parallel guesses cannot slip
        # past the limits while scrypt runs; a success takes it back (gateway.panel.throttle).
        self.throttle.failed(client, command.user)
        async with self._verify_lock:  # scrypt is CPU and memory heavy: one at a time
            ok = await asyncio.get_running_loop().run_in_executor(
                None, verify_password, command.password, known or self._decoy
            )
        if not ok or known is None:
            log.warning(kv("panel_login_failed", user=command.user, client=client))
            raise ApiError(401, "login_failed", "wrong user name or password")
        self.throttle.succeeded(client, command.user)
        self.sessions.drop(request.cookies.get(COOKIE))
        token = self.sessions.create(command.user)
        log.info(kv("panel_login", user=command.user, client=client))
        response = _json({"ok": True, "user": command.user})
        response.set_cookie(
            COOKIE,
            token,
            max_age=max(1, int(self._settings.session_ttl)),
            path="/",
            httponly=True,
            samesite="Strict",
        )
        return response

    async def _logout(self, request: web.Request) -> web.Response:
        await self._empty_body(request)
        token = request.cookies.get(COOKIE)
        user = self.sessions.user(token)
        self.sessions.drop(token)
        if user is not None:
            log.info(kv("panel_logout", user=user, client=self._client(request)))
        response = _json({"ok": True})
        response.del_cookie(COOKIE, path="/")
        return response

    async def _command(self, request: web.Request, model: type[M], event: str,
                       run: Callable[[M, str], int | None],
                       target: Callable[[M], dict[str, object]],
                       detail: Callable[[M], dict[str, object]]) -> web.Response:
        """A logged-in user's alarm command, carried out by the daemon's one
        `OperatorCommands` (the service `cmd` uses too): parsed, run in the user's name and
        logged; a refusal is a 409 with the reason."""
        user = self._require_user(request)
        command = await self._body(request, model)
        where = target(command)
        try:
            changed = run(command, user)
        except CommandRefused as exc:
            log.info(kv(f"panel_{event}_refused", user=user, **where, reason=exc))
            raise ApiError(409, "refused", str(exc) or "command refused") from None
        counted: dict[str, object] = {} if changed is None else {"changed": changed}
        log.info(kv(f"panel_{event}", user=user, **where, **counted, **detail(command)))
        return _json({"ok": True, **counted})

    async def _acknowledge(self, request: web.Request) -> web.Response:
        return await self._command(
            request, AcknowledgeCommand, "acknowledge",
            lambda c, user: self._backend.acknowledge(c.alarms, user, c.note),
            lambda c: {"alarms": ",".join(f"{a.rule}/{a.subject}" for a in c.alarms)},
            lambda c: {"note": c.note})

    async def _shelve(self, request: web.Request) -> web.Response:
        return await self._command(
            request, ShelveCommand, "shelve",
            lambda c, user: self._backend.shelve(c.alarm, user, c.minutes, c.reason),
            lambda c: {"alarm": f"{c.alarm.rule}/{c.alarm.subject}"},
            lambda c: {"minutes": c.minutes, "reason": c.reason})

    async def _suppress(self, request: web.Request) -> web.Response:
        return await self._command(
            request, SuppressCommand, "suppress",
            lambda c, user: self._backend.suppress(c.scope, user, c.minutes, c.reason),
            lambda c: {"scope": c.scope}, lambda c: {"minutes": c.minutes, "reason": c.reason})

    async def _unsuppress(self, request: web.Request) -> web.Response:
        return await self._command(
            request, UnsuppressCommand, "unsuppress",
            lambda c, user: self._backend.unsuppress(c.scope, user),
            lambda c: {"scope": c.scope}, lambda c: {})
