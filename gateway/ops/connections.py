"""Bounds on an HTTP server's connections: how many are open, how long one may sit idle, and how
much their failures may log (the panel's and the ingest's server, `gateway.ops.http`).

`ConnectionGuard` follows the connections of one server:

- at most `MAX_CONNECTIONS` (256) open connections — a quarter of a default 1,024-descriptor
  limit, so the gateway's buses, journal and outbox always have descriptors left (plus, for a
  moment, those being accepted or closed: see LISTEN_BACKLOG);
- when a new connection arrives at the cap, one *idle* connection is shed (closed) to make room:
  the oldest one of the client address holding the most connections. A connection is idle
  unless a complete request is being handled on it: one still sending its headers or its body
  is idle here. So a flood of idle or slow connections (slow headers or slow bodies) evicts its
  own oldest sockets first and never locks out an operator or a `/healthz` probe: a new
  connection always gets in, and its request is served. Only when every open connection is
  busy in a handler is the new one closed at once;
- a connection that has not completed a request within `IDLE_TIMEOUT` (10 s) of its
  acceptance or of its last response is closed (this bounds slow-header clients too); while
  a request's body is being read the server's own body timeout applies instead.

One timer per open connection, none when there is none (idle means asleep).

`RateLimitFilter` turns a burst of identical log records into one line per interval with a
count of what it swallowed (and drops their tracebacks after the first): the panel's error
logs go through it, and so does asyncio's "socket.accept() out of system resource", the
record a descriptor shortage would otherwise repeat with a traceback at every accept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from typing import Protocol

from gateway.records import dataclass

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 256
IDLE_TIMEOUT = 10.0
LISTEN_BACKLOG = 32
"""The listening socket's backlog: asyncio accepts up to this many connections in one loop pass,
and a connection reaches the guard three passes after its accept (a shed one is closed one pass
later), so the panel holds at most MAX_CONNECTIONS + 4 × LISTEN_BACKLOG descriptors (384) at any
instant — measured by tests/bounds/test_panel_flood.py."""
MAX_HEADER = 16 * 1024
"""A request's line and headers at most (gateway.ops.http); also the stream's buffer limit: a
connection buffers at most 2 × MAX_HEADER unread bytes before it stops reading."""
LOG_INTERVAL = 60.0


class Closable(Protocol):
    """One connection as the guard sees it: something it can close."""

    def close(self) -> None: ...


@dataclass(slots=True)
class _Conn:
    client: str
    last: float
    """loop.time() of the acceptance or the end of the last request."""
    busy: int = 0
    reading: bool = False
    """A request's headers came and its body is being read (the server bounds that time)."""
    timer: asyncio.TimerHandle | None = None


class ConnectionGuard:
    """Bounds the connections of one server (see the module docstring): the server calls
    `made()` for every accepted connection (False: close it at once), `reading()` when a
    request's headers have come and its body is being read, `begin()` / `end()` around the
    handling of every complete request and `lost()` when a connection ends. `name` prefixes
    its log events."""

    def __init__(self, *, limit: int = MAX_CONNECTIONS, idle_timeout: float = IDLE_TIMEOUT,
                 name: str = "panel") -> None:
        if limit < 1 or idle_timeout <= 0:
            raise ValueError("limit must be >= 1 and idle_timeout > 0")
        self.name = name
        self.limit = limit
        self.idle_timeout = idle_timeout
        self._loop = asyncio.get_running_loop()
        self._conns: OrderedDict[Closable, _Conn] = OrderedDict()
        self._per_client: Counter[str] = Counter()
        self.shed = 0
        """Idle connections closed to make room for new ones."""
        self.refused = 0
        """New connections closed because every open one was busy."""
        self.expired = 0
        """Connections closed after `idle_timeout` without a request."""

    def __len__(self) -> int:
        return len(self._conns)

    def made(self, handler: Closable, client: str) -> bool:
        """A new connection from `client`: False if it must be closed (every place is busy)."""
        if len(self._conns) >= self.limit and not self._shed_one():
            self.refused += 1
            log.warning("event=%s_connection_refused total=%d limit=%d", self.name,
                        self.refused, self.limit)
            return False
        conn = _Conn(client=client, last=self._loop.time())
        self._conns[handler] = conn
        self._per_client[client] += 1
        self._arm(handler, conn)
        return True

    def lost(self, handler: Closable) -> None:
        """The connection ended (closed by either side)."""
        self._forget(handler)

    def reading(self, handler: Closable) -> None:
        """A request's body is being read on `handler`'s connection: not closed by the idle
        timer (the server bounds the body's time itself), but still shed at the cap like an
        idle connection — a flood of slow bodies evicts its own sockets."""
        conn = self._conns.get(handler)
        if conn is not None:
            conn.reading = True

    def begin(self, handler: Closable) -> None:
        """A complete request is being handled on `handler`'s connection: it is not idle."""
        conn = self._conns.get(handler)
        if conn is not None:
            conn.reading = False
            conn.busy += 1

    def end(self, handler: Closable) -> None:
        """The request (begun, or only read) is over."""
        conn = self._conns.get(handler)
        if conn is not None:
            conn.reading = False
            conn.busy = max(0, conn.busy - 1)
            conn.last = self._loop.time()

    def close_idle(self) -> None:
        """Close every connection on which no request is being handled (the server stops)."""
        for handler, conn in list(self._conns.items()):
            if conn.busy == 0:
                self._close(handler)

    def close_all(self) -> None:
        """Close every connection (the server is stopping)."""
        for handler, conn in list(self._conns.items()):
            if conn.timer is not None:
                conn.timer.cancel()
            handler.close()
        self._conns.clear()
        self._per_client.clear()

    # ------------------------------------------------------------------------------------------

    def _arm(self, handler: Closable, conn: _Conn) -> None:
        """Look again when the connection would have been idle for `idle_timeout` (while a
        request runs: `idle_timeout` from now)."""
        since = self._loop.time() if conn.busy or conn.reading else conn.last
        conn.timer = self._loop.call_at(since + self.idle_timeout, self._expire, handler)

    def _expire(self, handler: Closable) -> None:
        conn = self._conns.get(handler)
        if conn is None:
            return
        if conn.busy == 0 and not conn.reading \
                and self._loop.time() - conn.last >= self.idle_timeout:
            self.expired += 1
            self._close(handler)
        else:
            self._arm(handler, conn)

    def _shed_one(self) -> bool:
        """Close the oldest idle connection (one reading a body counts as idle) of the client
        holding the most; False if every connection is busy in a handler."""
        idle_by_client: dict[str, Closable] = {}
        for handler, conn in self._conns.items():  # oldest first
            if conn.busy == 0:
                idle_by_client.setdefault(conn.client, handler)
        if not idle_by_client:
            return False
        client = max(idle_by_client, key=lambda c: self._per_client[c])
        self.shed += 1
        log.warning("event=%s_connections_shed total=%d limit=%d", self.name, self.shed,
                    self.limit)
        self._close(idle_by_client[client])
        return True

    def _close(self, handler: Closable) -> None:
        self._forget(handler)
        handler.close()

    def _forget(self, handler: Closable) -> None:
        conn = self._conns.pop(handler, None)
        if conn is None:
            return
        if conn.timer is not None:
            conn.timer.cancel()
        self._per_client[conn.client] -= 1
        if self._per_client[conn.client] <= 0:
            del self._per_client[conn.client]


class LogBudget:
    """At most `budget` lines per `window` seconds of one kind of refusal: a flood is counted,
    not logged line by line. `take()` is None for a line left out (counted in `suppressed`),
    else how many were left out since the last line logged (that line says `suppressed=N`).
    The operator inbox's refusals and the config applier's use one each."""

    def __init__(self, budget: int = 30, window: float = 60.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self.window = window
        self._clock = clock
        self.window_start = float("-inf")
        self._logged = 0
        self.suppressed = 0
        """Lines left out since the last one logged."""

    def take(self) -> int | None:
        now = self._clock()
        if now - self.window_start >= self.window:
            self.window_start, self._logged = now, 0
        if self._logged >= self.budget:
            self.suppressed += 1
            return None
        self._logged += 1
        left_out, self.suppressed = self.suppressed, 0
        return left_out


class RateLimitFilter(logging.Filter):
    """Lets the first record of each (logger, message template) through, then at most one per
    `interval` seconds, that one saying how many were suppressed; tracebacks only on the
    first. Records of other templates are not affected."""

    def __init__(self, interval: float = LOG_INTERVAL, prefix: str = "", *,
                 kind: Callable[[logging.LogRecord], str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`kind`: what makes two records the same (default: their message template; for
        records that carry their details in the message itself, such as asyncio's, a part
        of it)."""
        super().__init__()
        self.interval = interval
        self.prefix = prefix
        self._kind = kind
        self._clock = clock
        self.seen = 0
        """Records of this filter's concern so far, passed or not."""
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: Counter[tuple[str, str]] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.prefix and not str(record.msg).startswith(self.prefix):
            return True
        self.seen += 1
        key = (record.name, str(record.msg) if self._kind is None else self._kind(record))
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] += 1
            return False
        if last is not None:
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
            suppressed = self._suppressed.pop(key, 0)
            record.msg = f"{record.msg} (repeated; {suppressed} more in the last " \
                         f"{self.interval:.0f} s not logged)"
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = now
        return True


_ACCEPT_FILTER = RateLimitFilter(prefix="socket.accept() out of system resource")
log.addFilter(RateLimitFilter())  # one shed / refused line a minute, with the running totals


def quieten_accept_errors() -> None:
    """Rate-limit asyncio's accept-failure record (process-wide, idempotent)."""
    logger = logging.getLogger("asyncio")
    if _ACCEPT_FILTER not in logger.filters:
        logger.addFilter(_ACCEPT_FILTER)


async def listen(serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
                 bind: str, port: int) -> asyncio.Server:
    """A server listening on `bind:port` (0: any free port) whose connections go to `serve`,
    with the bounds above (backlog, stream limit), not yet accepting them: `start_serving()`
    does. Made apart from the HTTP that serves it, so a listener can wait for its first
    connection before that is imported (gateway.panel.front)."""
    quieten_accept_errors()
    server = await asyncio.start_server(serve, bind, port, limit=MAX_HEADER,
                                        backlog=LISTEN_BACKLOG, start_serving=False)
    for sock in server.sockets:  # listening now (asyncio would only once serving): the kernel
        with sock.dup() as same:  # holds new connections in its backlog until they are taken
            same.listen(LISTEN_BACKLOG)
    return server
