"""The panel's HTTP server: the page, the JSON API, /healthz and /metrics, on
`gateway.ops.http` (h11 on asyncio streams; every size, time and connection bounded there).

Everything that arrives is parsed at the boundary: a POST must be `application/json`, at most
`MAX_BODY` bytes, valid JSON and valid against its pydantic command model, or it gets a JSON
error (`{"error": <code>, "message": <reason>}`) with a 4xx status. Changing state needs a
session (cookie from `POST /api/login`, `gateway.panel.sessions`); reading needs one only with
`login_to_view`.

`GET /healthz` (no login) answers the gateway's health as judged by `gateway.ops.health`:
`{"ok", "status": ok|degraded|failing, "checks": {...}}`, 200 unless failing (503).
`GET /metrics` (no login; only for clients in `panel.metrics_allow`, and not at all with
`panel.metrics: false`) answers Prometheus's text format from `gateway.ops.metrics`. Both are
`gateway.ops.routes` (the ingest serves the same) and need a backend that is also a
`gateway.ops.source.MetricsSource` (the daemon's Gateway is); with a bare panel backend
/healthz answers ok with no checks and /metrics is 404.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from gateway.clock import Clock
from gateway.config.site import Panel
from gateway.first_import import FirstImport
from gateway.ops.connections import ConnectionGuard, RateLimitFilter, listen
from gateway.ops.health import HealthMonitor, HealthReport, Level, monitor_for
from gateway.ops.health_report import as_json
from gateway.ops.http import MAX_BODY, HttpServer
from gateway.ops.httptypes import (
    Handler,
    HttpError,
    Request,
    Response,
    Router,
    json_response,
)
from gateway.ops.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gateway.ops.metrics import Registry, make_registry, render
from gateway.ops.routes import add_ops_routes
from gateway.ops.source import MetricsSource
from gateway.panel.actions import PanelActions
from gateway.panel.backend import PanelBackend
from gateway.panel.events import History, Reply  # issue 12: the Events and Incidents views
from gateway.panel.hosts import HostCheck, HostCheckedRouter, client_of
from gateway.panel.logfmt import kv
from gateway.panel.passwords import ScryptHash, parse_hash, verify_password
from gateway.panel.requests import json_body, json_request
from gateway.panel.sessions import COOKIE, SessionTable
from gateway.panel.throttle import LoginThrottle

__all__ = ["COOKIE", "MAX_BODY", "ApiError", "PanelServer", "kv"]

log = logging.getLogger(__name__)

VIEWS_MODULE = "gateway.panel.views"
COLLECTOR_MODULES = ("gateway.ops.collector", "gateway.ops.exposition",
                     "gateway.ops.process_metrics")
"""What the first /metrics scrape renders with (6 ms here), imported off the loop's thread."""
log.addFilter(RateLimitFilter(prefix="event=panel_login_throttled"))

ApiError = HttpError
"""A handler's refusal: status, error code, message (and details)."""

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

_SCOPES = {"address": "from this address", "user": "for this user name",
           "panel": "on this panel"}


def _load_static() -> dict[str, tuple[bytes, str]]:
    # the files beside this module, read once at start; a plain path rather than
    # `importlib.resources`, whose readers bring `zipfile` into every gateway with a panel
    root = Path(__file__).with_name("static")
    return {
        path: (root.joinpath(name).read_bytes(), f"{ctype}; charset=utf-8")
        for path, (name, ctype) in _STATIC.items()
    }


class PanelServer(PanelActions):
    """The panel's HTTP server; `start()` binds and returns the port, `stop()` closes it.

    `ops`: what /healthz and /metrics read; default: the backend, when it is a MetricsSource
    (the daemon's Gateway). That is decided at the first request, not here: the daemon makes
    its panel before it has set every attribute the ops views read."""

    def __init__(self, backend: PanelBackend, settings: Panel, clock: Clock, *,
                 ops: MetricsSource | None = None) -> None:
        self._backend = backend
        self._ops = ops
        self._health: HealthMonitor | None = None
        self._registry: Registry | None = None
        self._metrics_allow = settings.metrics_allow
        self._settings = settings
        self._clock = clock
        self._users: dict[str, ScryptHash] = {}
        self._may = {user.name: frozenset(user.may) for user in settings.users}
        self._hosts = HostCheck(settings.bind, settings.hosts)
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
        self._verify_lock = asyncio.Semaphore(1)
        self._static = _load_static()
        self._http: HttpServer | None = None
        self._history: History | None = None  # issue 12: made at the first read
        self._views = FirstImport(VIEWS_MODULE)  # the models, at the first need (`_models`)
        self._collector = FirstImport(*COLLECTOR_MODULES)  # at the first scrape
        self.port: int | None = None

    @property
    def connections(self) -> ConnectionGuard | None:
        """The connection bounds (gateway.ops.connections), made by `start()`."""
        return None if self._http is None else self._http.connections

    # --- lifecycle ----------------------------------------------------------------------------

    def make_router(self) -> Router:
        """Every route of the panel; all but /healthz and /metrics check the `Host`
        (gateway.panel.hosts)."""
        router: Router = HostCheckedRouter(self._hosts, self._settings.trusted_proxies)
        for path in self._static:
            router.add_get(path, self._static_file)
        add_ops_routes(router, health=self._healthz,
                       metrics=self._metrics if self._settings.metrics else None,
                       allow=self._metrics_allow, name="panel", ready=self._collector.ready)
        router.add_get("/api/state", self._with_models(self._state))
        router.add_get("/api/me", self._me)
        router.add_post("/api/login", self._with_models(self._login))
        router.add_post("/api/logout", self._logout)
        router.add_post("/api/alarms/acknowledge", self._with_models(self._acknowledge))
        router.add_post("/api/alarms/shelve", self._with_models(self._shelve))
        router.add_post("/api/alarms/unshelve", self._with_models(self._unshelve))
        router.add_post("/api/alarms/reset", self._with_models(self._reset_alarm))
        router.add_post("/api/suppress", self._with_models(self._suppress))
        router.add_post("/api/unsuppress", self._with_models(self._unsuppress))
        router.add_post("/api/outputs/reset", self._with_models(self._reset_output))
        # --- issue 12: the Events and Incidents views (reading only; gateway.panel.events) ---
        router.add_get("/api/events", self._history_view(lambda h, q: h.events(q)))
        router.add_get("/api/incidents", self._history_view(lambda h, q: h.incidents(q)))
        router.add_get("/api/incidents/report", self._history_view(lambda h, q: h.report(q)))
        # --- end issue 12 ---
        return router

    def _with_models(self, handler: Handler) -> Handler:
        """`handler`, once the panel's models are imported (`_models`)."""

        async def gated(request: Request) -> Response:
            await self._models()
            return await handler(request)

        return gated

    async def _models(self) -> None:
        """The panel's models (gateway.panel.views: pydantic, about 7 MiB and 0.1-0.3 s here)
        imported at the first request that needs them, in a worker thread
        (gateway.first_import): the safety core shares this loop."""
        await self._views.ready()

    async def start(self) -> int:
        if self._http is not None:
            raise RuntimeError("panel server already started")
        port = await self.adopt(await listen(self.serve, self._settings.bind,
                                             self._settings.port))
        log.info(kv("panel_started", bind=self._settings.bind, port=port))
        return port

    async def adopt(self, listener: asyncio.Server) -> int:
        """Serve `listener`'s connections (`gateway.ops.connections.listen`, its connections
        going to `serve`) from now on: what `start` does once it listens, and what the panel's
        front (gateway.panel.front) hands over at the first connection. Returns the port."""
        if self._http is not None:
            raise RuntimeError("panel server already started")
        http = HttpServer(self.make_router(), name="panel", max_body=MAX_BODY,
                          headers=_SECURITY_HEADERS)
        self._http = http
        self.port = await http.adopt(listener)
        self._hosts.port = self.port
        return self.port

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One accepted connection (of the listener `adopt` took), to its end."""
        http = self._http
        if http is None:  # (stopped before the connection's task ran)
            writer.close()
            return
        await http.serve(reader, writer)

    async def stop(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.stop()
            log.info(kv("panel_stopped", port=self.port))

    # --- helpers ------------------------------------------------------------------------------

    def _user(self, request: Request) -> str | None:
        return self.sessions.user(request.cookies.get(COOKIE))

    def _require_user(self, request: Request) -> str:
        user = self._user(request)
        if user is None:
            raise ApiError(401, "not_logged_in", "log in first")
        return user

    def _client(self, request: Request) -> str:
        """The client's address (behind a `panel.trusted_proxies` proxy: the one it names)."""
        return client_of(request, self._settings.trusted_proxies)

    # --- handlers -----------------------------------------------------------------------------

    async def _static_file(self, request: Request) -> Response:
        body, ctype = self._static[request.path]
        return Response(body, 200, ctype, {"Cache-Control": "no-cache"})

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
    def metrics(self) -> Registry | None:
        """This gateway's own Prometheus registry (None: the backend is no MetricsSource)."""
        if self._registry is None and (ops := self._ops_source()) is not None:
            self._registry = make_registry(ops, health=self.health)
        return self._registry

    def _healthz(self) -> tuple[int, object]:
        health = self.health
        if health is None:
            report = HealthReport(ok=True, status=Level.OK, checks={})
        else:
            report = health.check()
        return report.http_status, as_json(report)  # (no pydantic serializer: issue 15)

    def _metrics(self) -> tuple[bytes, str] | None:
        registry = self.metrics
        return None if registry is None else (render(registry), METRICS_CONTENT_TYPE)

    async def _state(self, request: Request) -> Response:
        if self._settings.login_to_view:
            self._require_user(request)
        state = self._backend.panel_state()
        return json_response(state.model_dump(mode="json"))

    # --- issue 12: the Events and Incidents views ---------------------------------------------

    def _history_view(self, view: Callable[[History, Iterable[tuple[str, str]]],
                                           Awaitable[Reply]]) -> Callable[[Request],
                                                                          Awaitable[Response]]:
        """A read of the journal or the incident records: the same login as /api/state."""

        async def handler(request: Request) -> Response:
            if self._settings.login_to_view:
                self._require_user(request)
            if self._history is None:
                self._history = History.of(self._backend)
            if self._history is None:
                raise ApiError(404, "not_found", "this panel has no alarm journal to show")
            reply = await view(self._history, request.query_pairs)
            if isinstance(reply.body, dict):
                return json_response(reply.body, reply.status)
            return Response(reply.body.encode(), reply.status, "text/html; charset=utf-8",
                            dict(_REPORT_HEADERS))

        return handler

    # --- end issue 12 -------------------------------------------------------------------------

    async def _me(self, request: Request) -> Response:
        user = self._user(request)
        return json_response(
            {
                "user": user,
                "may": sorted(self._may.get(user, ())) if user is not None else [],
                "login_to_view": self._settings.login_to_view,
                "login_enabled": bool(self._users),
            }
        )

    async def _login(self, request: Request) -> Response:
        from gateway.panel.views import LoginCommand  # the panel's models: at first use

        client = self._client(request)
        command = json_body(request, LoginCommand)
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
        attempt = self.throttle.failed(client, command.user)
        async with self._verify_lock:  # scrypt is CPU and memory heavy: one at a time
            ok = await asyncio.get_running_loop().run_in_executor(
                None, verify_password, command.password, known or self._decoy
            )
        if not ok or known is None:
            log.warning(kv("panel_login_failed", user=command.user, client=client))
            raise ApiError(401, "login_failed", "wrong user name or password")
        self.throttle.succeeded(client, command.user, attempt)
        self.sessions.drop(request.cookies.get(COOKIE))
        token = self.sessions.create(command.user)
        log.info(kv("panel_login", user=command.user, client=client))
        response = json_response({"ok": True, "user": command.user,
                                  "may": sorted(self._may.get(command.user, ()))})
        response.set_cookie(COOKIE, token, max_age=max(1, int(self._settings.session_ttl)),
                            path="/", httponly=True, samesite="Strict")
        return response

    async def _logout(self, request: Request) -> Response:
        json_request(request)
        token = request.cookies.get(COOKIE)
        user = self.sessions.user(token)
        self.sessions.drop(token)
        if user is not None:
            log.info(kv("panel_logout", user=user, client=self._client(request)))
        response = json_response({"ok": True})
        response.del_cookie(COOKIE, path="/")
        return response
