"""A small HTTP/1.1 server: asyncio streams and h11 (a sans-IO HTTP/1.1 state machine), with
every input bounded. The panel (`gateway.panel.server`) and the ingest's ops endpoint
(`gateway.ingest.opshttp`) serve their routes with it; `gateway.ops.routes` adds /healthz and
/metrics to either.

A request is parsed at the boundary and reaches its handler whole — method, path, query,
headers, cookies, peer address and the complete body — or is answered with a JSON error
(`{"error": <code>, "message": <reason>}`) and never reaches a handler:

- request line and headers: at most `MAX_HEADER` (16 KiB) and one read (4 KiB) more (h11's
  incomplete-event limit: 431);
  malformed HTTP, conflicting framing or an unknown transfer coding: 400, then closed;
- query: at most `MAX_QUERY` (32) parameters (400);
- body: at most `max_body` bytes, announced or chunked (413, then closed), complete within
  `BODY_TIMEOUT` of the headers (408, then closed);
- a response the client does not take within `WRITE_TIMEOUT`: the connection is aborted (reset,
  its descriptor freed at once: a plain close would keep the socket until the unsent rest was
  taken); so is any connection that ends in an error;
- `Content-Length` together with `Transfer-Encoding`: 400, then closed, the body unread (h11
  would let chunked win; a proxy in front might not: request smuggling);
- connections: at most `MAX_CONNECTIONS`, idle ones closed after `IDLE_TIMEOUT` and shed first
  at the cap (`gateway.ops.connections.ConnectionGuard`); slow headers and slow bodies count as
  idle (a connection is busy only while its complete request is handled);
- a handler that raises `HttpError` answers its status and reason; any other exception is
  logged (rate-limited) and answered 500 `internal_error`;
- time: the handlers take at most a quarter of the event loop's time, requests waiting their
  turn first come, first served (`gateway.ops.pacing.LoopShare`), and the loop's other work
  runs between two pipelined requests — the safety core shares this loop.

Requests, responses, errors and the router (exact paths: 404, 405 with `Allow`, HEAD answered
by GET routes) are `gateway.ops.httptypes`. One task per connection, no
threads, no timers while nothing is connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
import time
from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

import h11

from gateway.ops.connections import (
    IDLE_TIMEOUT,
    MAX_CONNECTIONS,
    MAX_HEADER,
    ConnectionGuard,
    RateLimitFilter,
    listen,
)
from gateway.ops.httptypes import (
    Handler,
    HttpError,
    Request,
    Response,
    Router,
    compressed,
    error_response,
)
from gateway.ops.pacing import LoopShare

log = logging.getLogger(__name__)
log.addFilter(RateLimitFilter(prefix="event=http_handler_error"))  # one line a minute
log.addFilter(RateLimitFilter(prefix="event=http_protocol_error"))

MAX_BODY = 64 * 1024
MAX_QUERY = 32
"""Query parameters of one request (more: 400)."""
BODY_TIMEOUT = 10.0
WRITE_TIMEOUT = 10.0
LINGER_BYTES = 256 * 1024
"""After an error that leaves a body unread, up to this much of it is read and dropped (for at
most a second) before closing, so the client reads the answer instead of a reset."""
_CHUNK = 4 * 1024
"""One read: h11 refuses headers once more than MAX_HEADER bytes are incomplete, so headers of at
most MAX_HEADER + _CHUNK bytes pass."""

ERROR_CODES = {400: "bad_request", 401: "not_logged_in", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 408: "request_timeout", 413: "body_too_large",
               415: "unsupported_media_type", 431: "headers_too_large"}


class _Connection:
    """One accepted connection, as the guard sees it."""

    __slots__ = ("transport",)

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def close(self) -> None:
        """Close; abort if an answer is still unsent (a client that does not read would keep
        the socket open until it did)."""
        _release(self.transport)


class _Close(Exception):
    """Answer this and close the connection (the rest of the request is not read)."""

    def __init__(self, error: HttpError) -> None:
        self.error = error


class HttpServer:
    """Serves `router` on `bind:port` (0: any free port); `start()` returns the port."""

    def __init__(self, router: Router, *, name: str, max_body: int = MAX_BODY,
                 headers: dict[str, str] | None = None,
                 limit: int = MAX_CONNECTIONS, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.router = router
        self.name = name
        self.max_body = max_body
        self.headers = dict(headers or {})
        """Added to every response that does not set them itself."""
        self._limit = limit
        self._idle_timeout = idle_timeout
        self.connections: ConnectionGuard | None = None
        """The connection bounds, made by `start()`."""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port: int | None = None
        self.share = LoopShare()
        """The loop time its handlers may take (gateway.ops.pacing)."""

    async def start(self, bind: str, port: int) -> int:
        if self._server is not None:
            raise RuntimeError(f"{self.name} server already started")
        return await self.adopt(await listen(self.serve, bind, port))

    async def adopt(self, server: asyncio.Server) -> int:
        """Serve from now on the connections `server` (`listen(self.serve, …)`) takes."""
        if self._server is not None:
            raise RuntimeError(f"{self.name} server already started")
        self.connections = ConnectionGuard(limit=self._limit, idle_timeout=self._idle_timeout,
                                           name=self.name)
        self._server = server
        self.port = int(server.sockets[0].getsockname()[1])
        await server.start_serving()
        return self.port

    async def stop(self, grace: float = 2.0) -> None:
        """Stop listening, give requests in progress `grace` seconds, then close everything."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        if self.connections is not None:
            self.connections.close_idle()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace)
        if self.connections is not None:
            self.connections.close_all()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()

    # ------------------------------------------------------------------------------------------

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One accepted connection, to its end."""
        task = asyncio.current_task()
        assert task is not None and self.connections is not None
        guard = self.connections
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # asyncio sets it only on sockets it made itself: without it, Nagle's algorithm
            # holds a response back until the client's delayed ACK of the previous one
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(writer.transport)
        if self._server is None or not guard.made(conn, client):
            writer.close()
            return
        self._tasks.add(task)
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER)
        clean = False
        try:
            while True:
                event = await _next_event(h, reader)
                if not isinstance(event, h11.Request):
                    break  # ConnectionClosed (EOF, or closed by the guard)
                guard.reading(conn)  # busy only once the body is in (a slow body is shed)
                try:
                    closing = await self._exchange(h, reader, writer, event, client,
                                                   lambda: guard.begin(conn))
                finally:
                    guard.end(conn)
                if closing or self._server is None or h.our_state is not h11.DONE \
                        or h.their_state is not h11.DONE:
                    break  # (None: the server is stopping)
                h.start_next_cycle()
                await asyncio.sleep(0)  # a pipelined request next: the loop's other work first
            clean = True
        except h11.RemoteProtocolError as exc:
            log.info("event=http_protocol_error server=%s client=%s reason=%s", self.name,
                     client, json.dumps(str(exc)[:200]))
            status = exc.error_status_hint if exc.error_status_hint in ERROR_CODES else 400
            error = HttpError(status, ERROR_CODES[status], f"malformed request: {exc}"[:300])
            clean = await self._answer_and_close(h, reader, writer, error, linger=False)
        except (OSError, h11.LocalProtocolError):  # (ConnectionError, TimeoutError, ENOTCONN)
            pass
        finally:
            guard.lost(conn)
            try:
                if clean:
                    await _close(writer)
                else:
                    # an error or a timeout: drop what is unsent and free the descriptor now
                    # (transport.close() would keep the socket until a client that does not
                    # read took the rest)
                    _abort(writer.transport)
            finally:
                self._tasks.discard(task)

    async def _exchange(self, h: h11.Connection, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter, event: h11.Request, client: str,
                        begin: Callable[[], None]) -> bool:
        """Read the body, call `begin`, run the handler, send its answer; True: close the
        connection."""
        method = event.method.decode("ascii", "replace")
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key = name.decode("ascii", "replace")
            text = value.decode("latin-1")
            joiner = "; " if key == "cookie" else ", "
            headers[key] = f"{headers[key]}{joiner}{text}" if key in headers else text
        try:
            body = await self._body(h, reader, headers)
            await self.share.turn()  # waiting here, the connection is idle: it may be shed
            begin()
            started = time.perf_counter()
            try:
                request = _request(method, event.target, headers, client, body)
                handler = self.router.resolve(method, request.path)
                response = compressed(await self._call(handler, request), request)
            finally:
                self.share.spent(time.perf_counter() - started)
        except HttpError as exc:
            response = error_response(exc)
        except _Close as close:
            if not await self._answer_and_close(h, reader, writer, close.error, linger=True):
                raise ConnectionAbortedError("the refusal could not be delivered") from None
            return True
        await self._send(h, writer, response, head=method == "HEAD")
        return False

    async def _call(self, handler: Handler, request: Request) -> Response:
        try:
            return await handler(request)
        except HttpError:
            raise
        except Exception:
            log.exception("event=http_handler_error server=%s method=%s path=%s", self.name,
                          request.method[:20], json.dumps(request.path[:200]))
            raise HttpError(500, "internal_error", "internal server error") from None

    async def _body(self, h: h11.Connection, reader: asyncio.StreamReader,
                    headers: dict[str, str]) -> bytes:
        if "transfer-encoding" in headers and "content-length" in headers:
            # h11 would let chunked win; a proxy in front might not (request smuggling)
            raise _Close(HttpError(400, "bad_request", "a request with both Content-Length "
                                   "and Transfer-Encoding is refused (ambiguous framing)"))
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            raise _Close(self._too_large())
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                while True:
                    event = await _next_event(h, reader)
                    if isinstance(event, h11.Data):
                        size += len(event.data)
                        if size > self.max_body:
                            raise _Close(self._too_large())
                        chunks.append(bytes(event.data))
                    elif isinstance(event, h11.EndOfMessage):
                        return b"".join(chunks)
                    else:  # ConnectionClosed: the client went away mid-body
                        raise ConnectionResetError("closed while sending the body")
        except TimeoutError:
            raise _Close(HttpError(408, "request_timeout", f"the request body did not "
                                   f"arrive within {BODY_TIMEOUT:g} s")) from None

    def _too_large(self) -> HttpError:
        return HttpError(413, "body_too_large", f"request body is larger than {self.max_body}"
                                                " bytes")

    async def _send(self, h: h11.Connection, writer: asyncio.StreamWriter,
                    response: Response, *, head: bool = False) -> None:
        headers = {**self.headers, **response.headers}
        fields: list[tuple[str, str]] = [("Content-Type", response.content_type),
                                         ("Content-Length", str(len(response.body)))]
        fields += [(k, v) for k, v in headers.items() if k.lower() != "content-type"]
        fields += [("Set-Cookie", cookie) for cookie in response.cookies]
        reason = HTTPStatus(response.status).phrase.encode()
        data = h.send(h11.Response(status_code=response.status, headers=fields, reason=reason))
        if not head and response.body:
            data = (data or b"") + (h.send(h11.Data(data=response.body)) or b"")
        data = (data or b"") + (h.send(h11.EndOfMessage()) or b"")
        writer.write(data)
        async with asyncio.timeout(WRITE_TIMEOUT):
            await writer.drain()

    async def _answer_and_close(self, h: h11.Connection, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter, error: HttpError, *,
                                linger: bool) -> bool:
        """Send `error` (if it can still be) and close; with `linger`, read and drop what the
        client still sends first, within bounds. False: not sent (abort the connection)."""
        response = error_response(error)
        response.headers["Connection"] = "close"
        if h.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            try:
                await self._send(h, writer, response)
            except (OSError, h11.LocalProtocolError):
                return False
        if not linger or not writer.can_write_eof():
            return True
        try:  # (a peer that reset the connection meanwhile: ENOTCONN, no ConnectionError)
            writer.write_eof()
        except OSError:
            return False
        dropped = 0
        with contextlib.suppress(OSError):  # (TimeoutError and ConnectionError among them)
            async with asyncio.timeout(1.0):
                while dropped < LINGER_BYTES and (chunk := await reader.read(_CHUNK)):
                    dropped += len(chunk)
        return True


def _abort(transport: asyncio.BaseTransport) -> None:
    """Drop the connection now: the descriptor is freed at once and the peer gets a reset
    (SO_LINGER 0: the kernel does not keep the unsent rest for a client that does not read)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
    else:
        transport.close()


def _release(transport: asyncio.BaseTransport) -> None:
    """Close `transport`, or abort it if data is still waiting to be sent: close() would keep
    the socket (and its descriptor) until the peer took that data, which a client that never
    reads never does."""
    if isinstance(transport, asyncio.WriteTransport) and transport.get_write_buffer_size():
        _abort(transport)
    else:
        transport.close()


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close after the last answer: what is still unsent gets `WRITE_TIMEOUT` to leave, then
    the connection is aborted."""
    writer.close()
    try:
        async with asyncio.timeout(WRITE_TIMEOUT):
            await writer.wait_closed()
    except (TimeoutError, ConnectionError, OSError):
        _abort(writer.transport)
    except asyncio.CancelledError:
        _abort(writer.transport)
        raise


def _request(method: str, target: bytes, headers: dict[str, str], client: str,
             body: bytes) -> Request:
    """The request's path and query parsed (at most MAX_QUERY parameters), or a 400."""
    try:
        url = urlsplit(target.decode("ascii", "replace"))
        pairs = parse_qsl(url.query, max_num_fields=MAX_QUERY)
    except ValueError as exc:
        raise HttpError(400, "bad_request", f"unusable request target: {exc}"[:200]) from None
    return Request(method, url.path or "/", dict(pairs), headers, client, body, pairs)


async def _next_event(h: h11.Connection, reader: asyncio.StreamReader) -> h11.Event:
    """The next h11 event, reading as needed (EOF is ConnectionClosed or a protocol error)."""
    while True:
        event = h.next_event()
        if event is h11.NEED_DATA:
            h.receive_data(await reader.read(_CHUNK))
            continue
        if event is h11.PAUSED:  # pipelined request before this one's answer: not expected
            raise h11.RemoteProtocolError("pipelined request", error_status_hint=400)
        assert isinstance(event, h11.Event)
        return event

