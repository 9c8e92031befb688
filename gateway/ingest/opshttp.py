"""The ingest's ops endpoint (`http:` in the central config): `/healthz` and `/metrics`
(`gateway.ops.routes`, the same routes the gateway's panel serves) on the shared HTTP server
(`gateway.ops.http`: bounded requests, at most `MAX_CONNECTIONS` connections, idle ones closed).

The ingest itself is threads (paho's network thread, the writer), so the server runs its own
asyncio loop in one daemon thread; `health()` and the metrics are read from that thread, as
they are thread-safe.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from gateway.ops.http import HttpServer
from gateway.ops.httptypes import Router
from gateway.ops.routes import add_ops_routes

MAX_CONNECTIONS = 64
"""Monitoring clients only: a scraper, a load balancer, an operator's curl."""
START_TIMEOUT = 10.0


class OpsEndpoint:
    """`start()` binds (in its thread) and returns the port; `stop()` closes it."""

    def __init__(self, bind: str, port: int, *, health: Callable[[], tuple[bool, dict[str, Any]]],
                 metrics: Callable[[], bytes], content_type: str) -> None:
        self._bind = bind
        self._wanted = port
        router = Router()

        def healthz() -> tuple[int, object]:
            ok, body = health()
            return (200 if ok else 503), {"ok": ok, **body}

        add_ops_routes(router, health=healthz, metrics=lambda: (metrics(), content_type),
                       name="ingest")
        self._server = HttpServer(router, name="ingest", limit=MAX_CONNECTIONS)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self.port: int | None = None

    def start(self) -> int:
        started = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            self._stop = asyncio.Event()
            try:
                self.port = await self._server.start(self._bind, self._wanted)
            except BaseException as exc:
                failure.append(exc)
                started.set()
                return
            started.set()
            try:
                await self._stop.wait()
            finally:
                await self._server.stop()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(serve())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="ingest-http", daemon=True)
        self._thread.start()
        if not started.wait(START_TIMEOUT):
            raise RuntimeError("the ingest's HTTP endpoint did not start")
        if failure:
            self._thread.join()
            raise failure[0]
        assert self.port is not None
        return self.port

    def stop(self) -> None:
        loop, stop, thread = self._loop, self._stop, self._thread
        if thread is None or not thread.is_alive() or loop is None or stop is None:
            return
        loop.call_soon_threadsafe(stop.set)
        thread.join(5)
