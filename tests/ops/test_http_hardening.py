"""The shared HTTP server (gateway/ops/http.py) against clients that misbehave, over real
loopback sockets: a client that never reads its answers gets its connection aborted (the
descriptor freed at once, not kept while unsent data waits), a request with both
Content-Length and Transfer-Encoding is refused before its body is read (no smuggling), and
cookies that another application set do not hide ours."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator

import pytest

from gateway.ops import http
from gateway.ops.http import HttpServer
from gateway.ops.httptypes import Request, Response, Router, json_response
from tests.helpers import until
from tests.ops.test_http import exchange, parse

BIG = 4 * 1024 * 1024
"""One answer larger than any socket buffer loopback autotunes to in one go."""


async def big(request: Request) -> Response:
    return Response(b"b" * BIG, content_type="application/octet-stream")


async def echo(request: Request) -> Response:
    return json_response({"path": request.path, "body": request.body.decode("latin-1"),
                          "cookies": request.cookies})


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    router = Router()
    router.add_get("/big", big)
    router.add_get("/echo", echo)
    router.add_post("/echo", echo)
    srv = HttpServer(router, name="test", max_body=1024)
    await srv.start("127.0.0.1", 0)
    try:
        yield srv
    finally:
        await srv.stop()


def _port(srv: HttpServer) -> int:
    assert srv.port is not None
    return srv.port


def _sockets() -> set[str]:
    """The socket inodes this process holds open."""
    found: set[str] = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


async def test_a_client_that_never_reads_loses_its_descriptor_at_the_write_timeout(
        server: HttpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "WRITE_TIMEOUT", 0.5)
    before = _sockets()
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", _port(server)))
    try:
        client.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 20)  # and never read
        guard = server.connections
        assert guard is not None
        await until(lambda: len(guard) == 1, what="the connection accepted")
        opened = _sockets() - before
        assert len(opened) == 2  # the client's socket and the server's
        await until(lambda: len(guard) == 0, what="the write timeout")
        # the server's socket is released at once, though its answer is still unsent
        await until(lambda: len(_sockets() - before) == 1, 3.0, "the server's socket released")
        # and the client sees the connection reset, not the rest of an answer
        client.settimeout(5)
        with pytest.raises(ConnectionResetError):
            while client.recv(1 << 20):
                pass
    finally:
        client.close()
    # the server still serves
    ok, _, _ = parse(await exchange(_port(server), b"GET /echo HTTP/1.1\r\nHost: x\r\n"
                                    b"Connection: close\r\n\r\n"))
    assert ok == 200


SMUGGLED = b"GET /echo?smuggled=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize("framing", [
    b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n",
    b"content-length: %d\r\ntransfer-encoding: Chunked\r\n",
])
async def test_content_length_with_transfer_encoding_is_refused_not_smuggled(
        server: HttpServer, framing: bytes) -> None:
    body = b"2\r\n{}\r\n0\r\n\r\n"
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\n" + framing % (len(body) + len(SMUGGLED))
    raw = await exchange(_port(server), head + b"\r\n" + body + SMUGGLED)
    status, headers, data = parse(raw)
    assert (status, data["error"]) == (400, "bad_request"), data
    assert "Transfer-Encoding" in data["message"] and "Content-Length" in data["message"]
    assert headers.get("connection") == "close"
    assert raw.count(b"HTTP/1.1 ") == 1 and b"smuggled" not in raw


@pytest.mark.parametrize("foreign", [
    'x=a b', 'pref={"a":1}', 'x="', 'theme="dark mode"', 'x=a,b', 'x=[1]', 'x=\\"',
    'lang=zh-CN; _ga=GA1.1.123', 'nameless', '=nothing', 'a=b; expires=x; c', 'é=1',
    'x=1;;; ;y', '"quoted name"=1',
])
async def test_a_foreign_cookie_never_hides_ours(server: HttpServer, foreign: str) -> None:
    for header in (f"{foreign}; rw_session=tok-123", f"rw_session=tok-123; {foreign}"):
        raw = await exchange(_port(server), b"GET /echo HTTP/1.1\r\nHost: x\r\nCookie: "
                             + header.encode() + b"\r\nConnection: close\r\n\r\n")
        status, _, data = parse(raw)
        assert status == 200 and data["cookies"]["rw_session"] == "tok-123", (header, data)


async def test_cookies_are_read_as_browsers_send_them(server: HttpServer) -> None:
    raw = await exchange(_port(server), b'GET /echo HTTP/1.1\r\nHost: x\r\nCookie: a=1; '
                         b'b="two words"; c=; d=x=y\r\nCookie: e=5\r\nConnection: close\r\n\r\n')
    _, _, data = parse(raw)
    assert data["cookies"] == {"a": "1", "b": "two words", "c": "", "d": "x=y", "e": "5"}


async def test_connections_waiting_for_a_body_never_lock_out_a_new_request() -> None:
    """Slow bodies (headers sent, the body never) fill every place: they are shed like idle
    connections, and a health probe or an operator still gets in and is served."""
    router = Router()
    router.add_get("/echo", echo)
    router.add_post("/echo", echo)
    srv = HttpServer(router, name="test", max_body=1024, limit=8)
    port = await srv.start("127.0.0.1", 0)
    slow: list[socket.socket] = []
    try:
        guard = srv.connections
        assert guard is not None
        for _ in range(8):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            slow.append(sock)
        await until(lambda: len(guard) == 8, 5.0, "eight slow bodies accepted")
        await asyncio.sleep(0.2)  # every one of them waits for its body now
        for i in range(3):  # well within BODY_TIMEOUT
            raw = await exchange(port, f"GET /echo?probe={i} HTTP/1.1\r\nHost: x\r\n"
                                 "Connection: close\r\n\r\n".encode(), timeout=3.0)
            assert raw.startswith(b"HTTP/1.1 200 "), raw
        assert guard.shed >= 1 and guard.refused == 0 and len(guard) <= 8
    finally:
        for sock in slow:
            sock.close()
        await srv.stop()


async def test_a_slow_body_is_not_closed_as_idle_before_its_own_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "BODY_TIMEOUT", 1.0)
    router = Router()
    router.add_post("/echo", echo)
    srv = HttpServer(router, name="test", max_body=1024, idle_timeout=0.3)
    port = await srv.start("127.0.0.1", 0)
    try:
        raw = await exchange(port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                             b"\r\nonly a part", timeout=5.0)
        status, _, data = parse(raw)
        assert (status, data["error"]) == (408, "request_timeout")
    finally:
        await srv.stop()


async def test_a_client_gone_before_its_413_costs_no_unhandled_exception(
        server: HttpServer) -> None:
    """A too-large request whose client closes at once: the 413 goes out to a socket the peer
    has closed, loopback answers it with a reset before the server half-closes, and
    `write_eof` fails with ENOTCONN (an OSError, not a ConnectionError). That failure is the
    connection's own: nothing reaches the event loop's exception handler, and the server
    answers the next client."""
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, object]] = []
    before = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    try:
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", _port(server)))
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n")
            sock.close()  # a FIN: the 413 that follows is answered with a reset
            await asyncio.sleep(0.05)
        await until(lambda: server.connections is not None and len(server.connections) == 0,
                    5.0, "the five connections closed")
        raw = await exchange(_port(server), b"GET /echo HTTP/1.1\r\nHost: x\r\n"
                             b"Connection: close\r\n\r\n", timeout=3.0)
        assert raw.startswith(b"HTTP/1.1 200 "), raw
    finally:
        loop.set_exception_handler(before)
    assert unhandled == []
