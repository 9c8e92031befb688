"""Exceptions raised in a protocol callback, outside any call of ours: asyncio's handler
logged a traceback each time (the field audit: a Modbus TCP device whose replies' byte count
disagreed with their data made pymodbus raise in `data_received` at every poll — now answered
as a comm error, tests/field/test_tcp_link_reconnect.py). With the gateway's filter on that
log (gateway.loop_errors, installed by `roomwarden run`), the first is logged with its
traceback and repeats are counted."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.loop_errors import install, kind_of
from gateway.ops.connections import RateLimitFilter


class UnreadableBytes(asyncio.Protocol):
    """A client protocol that cannot read what it receives (as pymodbus's could not)."""

    def data_received(self, data: bytes) -> None:
        raise ValueError(f"cannot read {data!r}")


async def test_a_protocol_error_in_a_callback_is_logged_once_with_its_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    handler = install()

    async def greet(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x00\x01")
        await writer.drain()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    caplog.set_level(logging.ERROR)
    seen = handler.seen
    loop = asyncio.get_running_loop()
    try:
        for _ in range(6):
            transport, _ = await loop.create_connection(UnreadableBytes, "127.0.0.1", port)
            for _ in range(100):  # asyncio closes the transport after logging the error
                if transport.is_closing():
                    break
                await asyncio.sleep(0.01)
        fatal = [r for r in caplog.records if r.name == "asyncio"]
        assert handler.seen - seen >= 5
        assert len(fatal) <= 1 and all(r.exc_info is not None for r in fatal)
        assert fatal or seen > 0  # (the first of this kind logged here, or by an earlier test)
    finally:
        server.close()
        await server.wait_closed()
        logging.getLogger("asyncio").removeFilter(handler)


def test_repeats_are_one_line_a_minute_with_their_count(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limiter = RateLimitFilter(kind=kind_of, clock=lambda: now[0])
    logger = logging.getLogger("asyncio.test-repeats")
    logger.addFilter(limiter)
    try:
        caplog.set_level(logging.ERROR)
        for i in range(100):  # the details after the first line differ every time
            logger.error("Fatal error: protocol.data_received() call failed.\nprotocol: <%d>",
                         i, exc_info=ValueError("Unable to decode request"))
            now[0] += 1.0
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1 + 1  # the first (with its traceback), then at 60 s
        assert caplog.records[0].exc_info is not None and caplog.records[1].exc_info is None
        assert "59 more" in lines[1]
    finally:
        logger.removeFilter(limiter)
