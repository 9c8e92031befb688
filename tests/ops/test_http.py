"""The shared HTTP server (gateway/ops/http.py) over real loopback sockets: every input bounded —
headers, body size (announced and chunked), body time, malformed requests — each refused with a
JSON reason and the server still serving; routing (404, 405 + Allow, HEAD); cookies; keep-alive
and pipelining; a handler's bug is a 500 without its details; the ingest's endpoint has its own
connection cap."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.ingest.opshttp import MAX_CONNECTIONS as INGEST_CONNECTIONS
from gateway.ingest.opshttp import OpsEndpoint
from gateway.ops import http
from gateway.ops.http import HttpServer
from gateway.ops.httptypes import HttpError, Request, Response, Router, json_response
from tests.helpers import until


async def echo(request: Request) -> Response:
    return json_response({"method": request.method, "path": request.path,
                          "query": request.query, "pairs": request.query_pairs,
                          "body": request.body.decode("latin-1"),
                          "cookies": request.cookies, "remote": request.remote})


async def refuse(request: Request) -> Response:
    raise HttpError(409, "refused", "not now")


async def broken(request: Request) -> Response:
    raise RuntimeError("secret detail")


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    router = Router()
    router.add_get("/echo", echo)
    router.add_post("/echo", echo)
    router.add_get("/refuse", refuse)
    router.add_get("/broken", broken)
    srv = HttpServer(router, name="test", max_body=1024, headers={"X-Test": "yes"})
    await srv.start("127.0.0.1", 0)
    try:
        yield srv
    finally:
        await srv.stop()


async def exchange(port: int, data: bytes, *, timeout: float = 5.0, eof: bool = False) -> bytes:
    """Send raw bytes (`eof`: and half-close), read until the server closes (or `timeout`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    if eof:
        writer.write_eof()
    await writer.drain()
    chunks: list[bytes] = []
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
    except (ConnectionError, TimeoutError):
        pass
    writer.close()
    return b"".join(chunks)


def parse(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    is_json = body and headers.get("content-type") == "application/json"
    data = json.loads(body) if is_json else body
    return int(lines[0].split()[1]), headers, data


CRLF = "\r\n"


def port_of(srv: HttpServer) -> int:
    assert srv.port is not None
    return srv.port


async def test_a_request_reaches_its_handler_whole(server: HttpServer) -> None:
    body = b'{"x": 1}'
    raw = await exchange(port_of(server), b"POST /echo?a=1&b=two&a=3 HTTP/1.1\r\nHost: x\r\n"
                         b"Cookie: s=abc; t=1\r\nContent-Length: 8\r\nConnection: close\r\n\r\n"
                         + body)
    status, headers, data = parse(raw)
    assert status == 200 and headers["x-test"] == "yes"
    assert headers["cache-control"] == "no-store"
    assert data == {"method": "POST", "path": "/echo", "query": {"a": "3", "b": "two"},
                    "pairs": [["a", "1"], ["b", "two"], ["a", "3"]],
                    "body": body.decode(), "cookies": {"s": "abc", "t": "1"},
                    "remote": "127.0.0.1"}


async def test_a_large_json_answer_is_gzipped_for_a_client_that_takes_it(
        server: HttpServer) -> None:
    """The storm audit: the panel's state was 0.2-0.5 MiB, uncompressed, every 1.5 s per
    open panel. A large JSON answer goes gzip-compressed to a client that accepts gzip (every
    browser), as it was to one that does not; a small one as it is."""
    big = "x" * 20_000
    request = (f"GET /echo?pad={big} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               "Accept-Encoding: gzip, deflate, br\r\n\r\n").encode()
    raw = await exchange(port_of(server), request)
    status, headers, _ = parse(raw.partition(b"\r\n\r\n")[0] + b"\r\n\r\n")
    body = raw.partition(b"\r\n\r\n")[2]
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert headers["vary"] == "Accept-Encoding" and int(headers["content-length"]) == len(body)
    assert len(body) < 2_000 and json.loads(gzip.decompress(body))["query"]["pad"] == big
    plain = request.replace(b"Accept-Encoding: gzip, deflate, br\r\n", b"")
    status, headers, data = parse(await exchange(port_of(server), plain))
    assert "content-encoding" not in headers and data["query"]["pad"] == big
    refused = request.replace(b"gzip, deflate, br", b"gzip;q=0, br")
    assert "content-encoding" not in parse(await exchange(port_of(server), refused))[1]
    weighted = request.replace(b"gzip, deflate, br", b"br;q=1.0, gzip; q=0.5")
    raw = await exchange(port_of(server), weighted)
    assert b"\r\ncontent-encoding: gzip\r\n" in raw.partition(b"\r\n\r\n")[0].lower()
    small = b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAccept-Encoding: gzip\r\n\r\n"
    assert "content-encoding" not in parse(await exchange(port_of(server), small))[1]


async def test_keep_alive_serves_several_requests_on_one_connection(server: HttpServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
    for i in range(3):
        writer.write(f"GET /echo?i={i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        data = json.loads(await reader.readexactly(length))
        assert data["query"] == {"i": str(i)}
    assert server.connections is not None and len(server.connections) == 1
    writer.close()


async def test_routing_errors_say_why(server: HttpServer) -> None:
    port = port_of(server)
    status, _, data = parse(await exchange(port, b"GET /nothing HTTP/1.1\r\nHost: x\r\n"
                                           b"Connection: close\r\n\r\n"))
    assert (status, data["error"]) == (404, "not_found")
    assert data["message"] == "no such page or API: GET /nothing"
    status, headers, data = parse(await exchange(port, b"DELETE /echo HTTP/1.1\r\nHost: x\r\n"
                                                 b"Connection: close\r\n\r\n"))
    assert (status, data["error"], headers["allow"]) == (405, "method_not_allowed", "GET, POST")
    status, headers, body = parse(await exchange(port, b"HEAD /echo HTTP/1.1\r\nHost: x\r\n"
                                                 b"Connection: close\r\n\r\n"))
    assert status == 200 and int(headers["content-length"]) > 0 and body == b""


async def test_handler_refusals_and_bugs(server: HttpServer, caplog: pytest.LogCaptureFixture,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http.log, "filters", [])  # its rate limit is process-wide state
    port = port_of(server)
    status, _, data = parse(await exchange(port, b"GET /refuse HTTP/1.1\r\nHost: x\r\n"
                                           b"Connection: close\r\n\r\n"))
    assert (status, data) == (409, {"error": "refused", "message": "not now"})
    status, headers, data = parse(await exchange(port, b"GET /broken HTTP/1.1\r\nHost: x\r\n"
                                                 b"Connection: close\r\n\r\n"))
    assert (status, data["error"]) == (500, "internal_error")
    assert "secret" not in json.dumps(data) and headers["x-test"] == "yes"
    assert "event=http_handler_error" in caplog.text


@pytest.mark.parametrize("request_bytes, status, error", [
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000,
     413, "body_too_large"),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     + b"".join(b"200\r\n" + b"y" * 512 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n",
     413, "body_too_large"),
    (b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"z" * (20 * 1024) + b"\r\n\r\n",
     431, "headers_too_large"),
    (b"GARBAGE\r\n\r\n", 400, "bad_request"),
    (b"GET /echo?" + b"&".join(b"p%d=1" % i for i in range(40)) + b" HTTP/1.1\r\nHost: x\r\n"
     b"Connection: close\r\n\r\n", 400, "bad_request"),
    (b"GET http://[oops/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400,
     "bad_request"),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
     400, "bad_request"),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabcd", 400,
     "bad_request"),
])
async def test_bad_input_is_refused_with_a_reason_and_closed(
        server: HttpServer, request_bytes: bytes, status: int, error: str) -> None:
    raw = await exchange(port_of(server), request_bytes)
    got, headers, data = parse(raw)
    assert (got, data["error"]) == (status, error), data
    assert headers.get("connection") == "close"
    # and the server goes on serving
    ok, _, _ = parse(await exchange(port_of(server), b"GET /echo HTTP/1.1\r\nHost: x\r\n"
                                    b"Connection: close\r\n\r\n"))
    assert ok == 200


async def test_a_body_that_never_finishes_times_out(
        server: HttpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "BODY_TIMEOUT", 0.5)
    raw = await exchange(port_of(server), b"POST /echo HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: 100\r\n\r\nonly a part")
    status, _, data = parse(raw)
    assert (status, data["error"]) == (408, "request_timeout")
    guard = server.connections
    assert guard is not None
    await until(lambda: len(guard) == 0)  # closed after the bounded linger


async def test_pipelined_requests_are_answered_in_turn(server: HttpServer) -> None:
    raw = await exchange(port_of(server), b"".join(
        f"GET /echo?i={i} HTTP/1.1\r\nHost: x\r\n{'Connection: close' + CRLF if i == 2 else ''}"
        f"\r\n".encode() for i in range(3)))
    assert raw.count(b"HTTP/1.1 200") == 3
    assert raw.index(b'"i":"0"') < raw.index(b'"i":"1"') < raw.index(b'"i":"2"')


async def test_stop_closes_open_connections_and_the_port(server: HttpServer) -> None:
    port = port_of(server)
    idle = socket.create_connection(("127.0.0.1", port))
    guard = server.connections
    assert guard is not None
    await until(lambda: len(guard) == 1)
    await server.stop()
    idle.settimeout(5)
    assert await asyncio.to_thread(idle.recv, 10) == b""
    idle.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


@pytest.mark.slow
@given(data=st.binary(max_size=600) | st.builds(
    lambda method, path, tail: method + b" " + path + b" HTTP/1.1\r\n" + tail,
    st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"G\x00T"]),
    st.sampled_from([b"/echo", b"/", b"/echo?%zz=%", b"*", b"/\xff"]),
    st.binary(max_size=300)))
@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_garbage_never_crashes_the_server(server: HttpServer, data: bytes) -> None:
    raw = await exchange(port_of(server), data, timeout=2.0, eof=True)
    if raw:
        assert raw.startswith(b"HTTP/1.1 ")
        assert int(raw.split()[1]) < 500
    ok, _, _ = parse(await exchange(port_of(server), b"GET /echo HTTP/1.1\r\nHost: x\r\n"
                                    b"Connection: close\r\n\r\n"))
    assert ok == 200


def test_the_ingest_endpoint_has_a_connection_cap() -> None:
    calls = {"health": 0}

    def health() -> tuple[bool, dict[str, Any]]:
        calls["health"] += 1
        return False, {"connected": False}

    endpoint = OpsEndpoint("127.0.0.1", 0, health=health, metrics=lambda: b"m_total 1\n",
                           content_type="text/plain; version=0.0.4")
    port = endpoint.start()
    socks: list[socket.socket] = []
    try:
        socks = [socket.create_connection(("127.0.0.1", port), timeout=5)
                 for _ in range(INGEST_CONNECTIONS + 20)]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
            probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := probe.recv(4096):
                answer += chunk
        status, _, data = parse(answer)
        assert (status, data) == (503, {"ok": False, "connected": False})
        guard = endpoint._server.connections
        assert guard is not None and len(guard) <= INGEST_CONNECTIONS
        assert guard.shed >= 20
    finally:
        for sock in socks:
            sock.close()
        endpoint.stop()
