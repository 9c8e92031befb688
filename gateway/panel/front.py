"""The panel's front: its port, listening from the gateway's start, and the panel's server made
at the first connection (issue 15: the panel's server is imported when it is first used).

A gateway's panel waits most of its life for a technician, a phone or a scrape; its server —
HTTP/1.1 on h11, the routes, sessions, the Events and Incidents views, the static pages — is
about 1.1 MiB of a running gateway and 80 ms of its start (this machine, 2,000 points: RSS
48.1 → 47.0 MiB). So the front binds the port at start, as the server did (a port in use is
reported then, and retried by the daemon), but does not accept: the listening socket waits in
the event loop's selector. The first connection wakes it once: the server's modules are
imported in a worker thread (the safety core's loop keeps running: a first page load never
holds it) and the server adopts the listener — the connection waiting in the kernel's backlog
(at most `LISTEN_BACKLOG`) is accepted then, and every one after it, within the server's
bounds (`gateway.ops.connections`). Nothing is accepted before those bounds exist.

What the server would refuse at start is refused here at start too: a malformed password hash
of a panel user (`PanelServer` checks them the same way later).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import TYPE_CHECKING

from gateway.clock import Clock
from gateway.config.site import Panel
from gateway.ops.connections import listen
from gateway.panel.backend import PanelBackend
from gateway.panel.logfmt import kv
from gateway.panel.passwords import parse_hash

if TYPE_CHECKING:  # imported at the first connection (_open)
    from gateway.panel.server import PanelServer

log = logging.getLogger("gateway.panel.server")

SERVER_MODULE = "gateway.panel.server"
RETRY_AFTER = 5.0
"""Seconds before a front whose server could not be made listens for the next try."""


class PanelFront:
    """The daemon's panel: `start()` listens, the first connection makes the server."""

    def __init__(self, backend: PanelBackend, settings: Panel, clock: Clock) -> None:
        for user in settings.users:  # as PanelServer would, so a bad config fails at start
            try:
                parse_hash(user.password_hash)
            except ValueError as exc:
                raise ValueError(f"panel user {user.name!r}: {exc}") from None
        self._backend = backend
        self._settings = settings
        self._clock = clock
        self._listener: asyncio.Server | None = None
        self._server: PanelServer | None = None
        self._opening: asyncio.Task[None] | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._watched: list[int] = []
        self.port: int | None = None

    @property
    def opened(self) -> bool:
        """Whether the server has been made (a first connection came, or `server` was read)."""
        return self._server is not None

    @property
    def server(self) -> PanelServer:
        """The panel's server; made now (imported in this thread) if no connection made it."""
        if self._server is None:
            self._server = self._make(importlib.import_module(SERVER_MODULE))
        return self._server

    async def start(self) -> int:
        """Listen on the panel's address (OSError if it cannot: the daemon retries)."""
        if self._listener is not None:
            raise RuntimeError("panel server already started")
        listener = await listen(self._serve, self._settings.bind, self._settings.port)
        self._listener = listener
        self.port = int(listener.sockets[0].getsockname()[1])
        if self._server is not None:  # made already (`server` read before the start)
            await self._server.adopt(listener)
        else:
            self._watch()
        log.info(kv("panel_started", bind=self._settings.bind, port=self.port))
        return self.port

    async def stop(self) -> None:
        self._unwatch()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        opening, self._opening = self._opening, None
        if opening is not None and not opening.done():
            opening.cancel()
            await asyncio.gather(opening, return_exceptions=True)
        listener, self._listener = self._listener, None
        if self._server is not None:
            await self._server.stop()  # closes the listener it adopted
        if listener is not None:
            listener.close()
            await listener.wait_closed()

    # ------------------------------------------------------------------------------------------

    def _make(self, module: object) -> PanelServer:
        server: PanelServer = module.PanelServer(  # type: ignore[attr-defined]
            self._backend, self._settings, self._clock)
        return server

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server = self._server
        if server is None:  # (the listener serves only once a server adopted it)
            writer.close()
            return
        await server.serve(reader, writer)

    def _watch(self) -> None:
        assert self._listener is not None
        loop = asyncio.get_running_loop()
        for sock in self._listener.sockets:
            loop.add_reader(sock.fileno(), self._first_connection)
            self._watched.append(sock.fileno())

    def _unwatch(self) -> None:
        if not self._watched:
            return
        loop = asyncio.get_running_loop()
        for fd in self._watched:
            loop.remove_reader(fd)
        self._watched = []

    def _first_connection(self) -> None:
        self._unwatch()
        if self._opening is None or self._opening.done():
            self._opening = asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        """Import and make the server off the loop's thread, then let it take the listener."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            if self._server is None:
                module = await asyncio.to_thread(importlib.import_module, SERVER_MODULE)
                if self._server is None:  # (`server` may have been read meanwhile)
                    self._server = self._make(module)
        except Exception as exc:  # a broken install: say so, try again at a later connection
            log.error(kv("panel_open_failed", error=repr(exc), retry_in=RETRY_AFTER))
            if self._listener is not None:
                self._retry = loop.call_later(RETRY_AFTER, self._rewatch)
            return
        await self._adopt()
        log.info(kv("panel_opened", port=self.port, ms=round((loop.time() - began) * 1000)))

    async def _adopt(self) -> None:
        listener = self._listener
        if listener is None or self._server is None:
            return
        await self._server.adopt(listener)

    def _rewatch(self) -> None:
        self._retry = None
        if self._listener is not None and self._server is None:
            self._watch()
