"""A Modbus TCP device whose replies' byte count disagrees with their data makes pymodbus
raise in `data_received`, outside any call of ours: asyncio's handler logged a traceback at
every poll. With the gateway's filter on that log (gateway.loop_errors, installed by
`roomwarden run`), the first is logged with its traceback and repeats are counted, while the
device's polls fail as comm errors."""

from __future__ import annotations

import asyncio
import logging
import struct

import pytest

from gateway.config.site import FailurePolicy
from gateway.field.bus_loop import BusLoop
from gateway.field.sample import Quality
from gateway.loop_errors import install, kind_of
from gateway.ops.connections import RateLimitFilter
from tests.field.test_modbus_polling import Recorder, make_poller


async def bad_byte_count_server() -> tuple[asyncio.Server, int]:
    """Answers every register read with a byte count two larger than the registers it
    carries."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(7)
                tid, _, length, unit = struct.unpack(">HHHB", head)
                pdu = await reader.readexactly(length - 1)
                count = struct.unpack(">H", pdu[3:5])[0]
                if pdu[0] in (1, 2):  # bit reads are answered right: the registers' are not
                    data = bytes(-(-count // 8))
                    body = bytes([unit, pdu[0], len(data)]) + data
                else:
                    data = b"\x00\x01" * count
                    body = bytes([unit, pdu[0], len(data) + 2]) + data
                writer.write(struct.pack(">HHH", tid, 0, len(body)) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_a_protocol_error_in_a_callback_is_logged_once_with_its_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    handler = install()
    server, port = await bad_byte_count_server()
    poller, link = make_poller(port, 1, timeout=0.3, interval=0.1)
    loop = BusLoop("tcp1", link, [poller], Recorder(), FailurePolicy(offline_after=3,
                                                                   backoff_max=0.2))
    caplog.set_level(logging.ERROR)
    task = asyncio.create_task(loop.run())
    try:
        health = loop.stats.device_health["dev1"]
        await asyncio.sleep(3.0)
        assert health.failures >= 5 and health.last_error is not None
        fatal = [r for r in caplog.records if r.name == "asyncio"]
        assert handler.seen >= 5
        assert len(fatal) == 1 and fatal[0].exc_info is not None
        assert all(s.quality is not Quality.GOOD for s in loop.sink.samples  # type: ignore
                   if s.point.startswith("dev1.a"))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
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
