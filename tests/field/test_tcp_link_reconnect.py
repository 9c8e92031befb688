"""A Modbus TCP link against a device that takes one connection at a time (an RS-485-to-
Ethernet converter: one connection per bus link, the old one closed before a new one is
opened), restarted again and again; and a reply whose byte count runs past its frame.

The field audit: pymodbus's own reconnect task (`reconnect_delay`) and the link's connect on
the next poll both connected after a restart, both set the client's transport, and the one
overwritten was never closed — it held the converter's only slot while every new connection
was refused, the device offline for minutes (with a multi-client server: two connections to
one device, one idle). And a byte count past the end of its frame made pymodbus raise inside
`data_received`: an asyncio traceback and the connection dropped."""

from __future__ import annotations

import asyncio
import logging
import random
import struct

import pytest

from gateway.clock import SystemClock
from gateway.config.profile import RegisterType
from gateway.config.site import Device, FailurePolicy, ModbusTcpBus
from gateway.field.bus_loop import BusLoop
from gateway.field.modbus_link import CommFailure, ModbusLink
from gateway.field.modbus_poller import ModbusDevicePoller
from gateway.field.planner import ReadRequest
from gateway.localservices import free_port
from tests.field.test_modbus_polling import Recorder
from tests.helpers import modbus_profile, until

PROFILE = modbus_profile([{"name": "a0", "register": "holding", "address": 0},
                          {"name": "a1", "register": "holding", "address": 1}])


class OneClientDevice:
    """A Modbus TCP server on loopback that serves one connection at a time and closes any
    other at once (as t3/srv1.py of the audit); `stop()` is the device restarting: the
    listener and every connection it holds go away. It counts what it saw."""

    def __init__(self, port: int, bad_byte_counts: int = 0) -> None:
        self.port = port
        self.server: asyncio.Server | None = None
        self.open: set[asyncio.StreamWriter] = set()
        self.handlers: set[asyncio.Task[None]] = set()
        self.accepted = 0
        self.refused = 0
        self.most_open = 0
        """The most connections open at once (the refused ones included, while open)."""
        self.bad_byte_counts = bad_byte_counts
        """So many register reads are answered with a byte count one past their data."""
        self.answered = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.open):
            writer.close()
        await asyncio.gather(*self.handlers)  # each sees its connection closed and ends
        await self.server.wait_closed()
        self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        task.add_done_callback(self.handlers.discard)
        busy = bool(self.open)
        self.open.add(writer)
        self.most_open = max(self.most_open, len(self.open))
        try:
            if busy:
                self.refused += 1
                return
            self.accepted += 1
            while True:
                tid, _, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                pdu = await reader.readexactly(length - 1)
                count = struct.unpack(">H", pdu[3:5])[0]
                data = struct.pack(f">{count}H", *range(220, 220 + count))
                size = len(data)
                if self.bad_byte_counts:
                    self.bad_byte_counts -= 1
                    size += 1  # byte count 2n + 1 with 2n data bytes: past the frame's end
                body = bytes([unit, pdu[0], size]) + data
                writer.write(struct.pack(">HHH", tid, 0, len(body)) + body)
                await writer.drain()
                self.answered += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open.discard(writer)
            writer.close()


def tcp_bus(port: int, timeout: float = 0.3) -> ModbusTcpBus:
    return ModbusTcpBus(id="tcp1", type="modbus_tcp", host="127.0.0.1", port=port,
                        timeout=timeout)


@pytest.mark.slow
async def test_a_one_connection_device_restarted_again_and_again_is_read_again() -> None:
    device = OneClientDevice(free_port())
    await device.start()
    link = ModbusLink(tcp_bus(device.port))
    poller = ModbusDevicePoller(Device(id="dev1", bus="tcp1", unit=1, profile=PROFILE.id,
                                       room="r", poll_interval=0.1),
                                PROFILE, link, SystemClock(), max_gap=8)
    recorder = Recorder()
    loop = BusLoop("tcp1", link, [poller], recorder,
                   FailurePolicy(offline_after=2, backoff_max=0.5, backoff_multiplier=2.0))
    task = asyncio.create_task(loop.run())
    health = loop.stats.device_health["dev1"]
    rng = random.Random(7)
    try:
        await until(lambda: health.online is True, 10.0, "dev1 online")
        for restart in range(8):
            await device.stop()
            await until(lambda: health.online is False, 10.0, f"dev1 offline ({restart})")
            await asyncio.sleep(rng.uniform(0.0, 1.5))  # each restart at another phase
            device.answered = 0
            await device.start()
            await until(lambda: health.online is True and device.answered > 3,
                        15.0, f"dev1 read again after restart {restart}")
        await asyncio.sleep(1.5)  # a connection opened late would show here
        assert device.refused == 0, f"{device.refused} connections refused: a second was opened"
        assert device.most_open == 1, f"{device.most_open} connections open at once"
        assert health.online is True and loop.link_open is True
        assert recorder.samples[-1].good
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await link.close()
        if device.server is not None:
            await device.stop()


async def test_a_byte_count_past_its_frame_fails_that_read_alone_without_a_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    """The MBAP header gives a TCP frame's length, so the stream stays in step: that read
    fails as a comm error, the connection is kept, and the next read succeeds."""
    device = OneClientDevice(free_port(), bad_byte_counts=1)
    await device.start()
    link = ModbusLink(tcp_bus(device.port))
    request = ReadRequest(register=RegisterType.HOLDING, address=0, count=2, points=())
    caplog.set_level(logging.WARNING)
    try:
        await link.open()
        with pytest.raises(CommFailure, match="byte_count 5"):
            await link.read(request, 1)
        assert list(await link.read(request, 1)) == [220, 221]
        assert await link.read_words(request, 1) == struct.pack(">2H", 220, 221)
        assert not [r for r in caplog.records if r.name == "asyncio" or r.exc_info], \
            [r.getMessage()[:200] for r in caplog.records]
        assert device.accepted == 1 and link.connected  # one connection, still in use
    finally:
        await link.close()
        await device.stop()
