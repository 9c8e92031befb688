"""Simulated Modbus devices over TCP (loopback) and RTU (pty line), read by pymodbus clients."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from gateway.config.profile import ByteOrder, DataType
from gateway.field.codec import decode
from gateway.sim.faults import Fault, FaultMode
from gateway.sim.signals import Constant
from gateway.sim.site import SimulatedSite
from tests.sim.conftest import NUMERIC_TYPES, ORDERS, all_types_points

Client = AsyncModbusTcpClient | AsyncModbusSerialClient

VALUES: dict[str, float] = {
    "int16": -123.4, "uint16": 25.0, "int32": -100000.5, "uint32": 3_000_000_000,
    "int64": -1e12, "uint64": float(2**40 + 5), "float32": 3.25, "float64": 1234.5678,
}
POINTS = {p["name"]: p for p in all_types_points()}


async def _client(site: SimulatedSite, transport: str, timeout: float = 1.0) -> Client:
    client: Client
    if transport == "tcp":
        host, port = site.endpoint("tcp1").rsplit(":", 1)
        client = AsyncModbusTcpClient(host, port=int(port), timeout=timeout, retries=0)
    else:
        client = AsyncModbusSerialClient(site.endpoint("rtu1"), baudrate=19200,
                                         timeout=timeout, retries=0)
    assert await client.connect()
    return client


DEVICE = {"tcp": ("meter", 1), "rtu": ("rtu_dev", 3)}


@pytest.fixture(params=["tcp", "rtu"])
async def conn(request: pytest.FixtureRequest, site: SimulatedSite,
               ) -> AsyncIterator[tuple[SimulatedSite, Client, str, int]]:
    client = await _client(site, request.param)
    device, unit = DEVICE[request.param]
    try:
        yield site, client, device, unit
    finally:
        client.close()


async def test_every_type_and_order_reads_back(conn: tuple[SimulatedSite, Client, str, int],
                                               ) -> None:
    site, client, device, unit = conn
    for kind, order in itertools.product(NUMERIC_TYPES, ORDERS):
        site.set_signal(f"{device}.{kind}_{order.lower()}", Constant(value=VALUES[kind]))
    site.set_signal(f"{device}.label", Constant(value="AB12cd"))
    for kind, order in itertools.product(NUMERIC_TYPES, ORDERS):
        point: dict[str, Any] = POINTS[f"{kind}_{order.lower()}"]
        width = {"int16": 1, "uint16": 1}.get(kind, 4 if "64" in kind else 2)
        reply = await client.read_holding_registers(point["address"], count=width,
                                                    device_id=unit)
        assert not reply.isError(), (kind, order, reply)
        raw = decode(reply.registers, DataType(kind), ByteOrder(order))
        assert isinstance(raw, int | float)
        value = raw * point.get("scale", 1.0) + point.get("offset", 0.0)
        assert value == pytest.approx(VALUES[kind], rel=1e-6), (kind, order)
        assert site.read_point(f"{device}.{kind}_{order.lower()}") == pytest.approx(value)
    reply = await client.read_holding_registers(190, count=4, device_id=unit)
    assert decode(reply.registers, DataType.STRING) == "AB12cd"


async def test_bits_flags_and_contacts(conn: tuple[SimulatedSite, Client, str, int]) -> None:
    site, client, device, unit = conn
    reply = await client.read_input_registers(0, count=2, device_id=unit)
    assert reply.registers[0] == 0b1000  # default: healthy (active-low bit 3 set)
    assert 220 <= reply.registers[1] <= 240  # 22-24 °C at scale 0.1
    site.set_signal(f"{device}.status.on_battery", Constant(value=True))
    site.set_signal(f"{device}.status.healthy", Constant(value=True))  # active-low: bit 0
    reply = await client.read_input_registers(0, count=1, device_id=unit)
    assert reply.registers[0] == 0b0001
    assert site.read_point(f"{device}.status.on_battery") is True

    site.set_signal(f"{device}.alarm_bit", Constant(value=True))
    site.set_signal(f"{device}.fault_bit", Constant(value=True))
    reply = await client.read_holding_registers(195, count=1, device_id=unit)
    assert decode(reply.registers, DataType.BOOL, ByteOrder.ABCD, bit=3) is True
    assert decode(reply.registers, DataType.BOOL, ByteOrder.BADC, bit=12) is True

    site.set_signal(f"{device}.door", Constant(value=True))
    assert (await client.read_discrete_inputs(0, device_id=unit)).bits[0] is False
    assert (await client.read_discrete_inputs(5, device_id=unit)).bits[0] is True


async def test_writes_are_kept(conn: tuple[SimulatedSite, Client, str, int]) -> None:
    site, client, device, unit = conn
    assert site.read_point(f"{device}.relay2") is False
    reply = await client.write_coil(1, True, device_id=unit)
    assert not reply.isError()
    reply = await client.read_coils(0, count=2, device_id=unit)
    assert reply.bits[:2] == [False, True]
    assert site.read_point(f"{device}.relay2") is True
    reply = await client.write_coils(0, [True, False], device_id=unit)
    assert not reply.isError()
    assert site.read_point(f"{device}.relay1") is True
    assert site.read_point(f"{device}.relay2") is False
    reply = await client.write_register(210, 1234, device_id=unit)
    assert not reply.isError()
    assert (await client.read_holding_registers(210, count=1, device_id=unit)).registers == [1234]
    assert site.read_point(f"{device}.setpoint") == 1234
    # not writable: a read-only coil and a read-only holding register
    assert (await client.write_coil(3, True, device_id=unit)).exception_code == 2
    assert (await client.write_register(0, 1, device_id=unit)).exception_code == 2


async def test_unmapped_addresses_answer_exception_2(
        conn: tuple[SimulatedSite, Client, str, int]) -> None:
    _, client, _, unit = conn
    assert (await client.read_holding_registers(194, count=1, device_id=unit)).exception_code == 2
    assert (await client.read_holding_registers(193, count=3, device_id=unit)).exception_code == 2
    assert (await client.read_holding_registers(205, count=1, device_id=unit)).exception_code == 2
    assert (await client.read_input_registers(2, count=1, device_id=unit)).exception_code == 2
    assert (await client.read_coils(0, count=3, device_id=unit)).exception_code == 2  # coil 2
    assert (await client.read_coils(2, count=1, device_id=unit)).exception_code == 2
    assert not (await client.read_coils(3, count=1, device_id=unit)).isError()
    assert (await client.read_discrete_inputs(1, count=1, device_id=unit)).exception_code == 2
    assert not (await client.read_holding_registers(193, count=1, device_id=unit)).isError()


async def test_units_share_a_tcp_server_and_unknown_units(site: SimulatedSite) -> None:
    client = await _client(site, "tcp")
    try:
        site.set_signal("meter.setpoint", Constant(value=1))
        site.set_signal("meter2.setpoint", Constant(value=2))
        assert (await client.read_holding_registers(210, device_id=1)).registers == [1]
        assert (await client.read_holding_registers(210, device_id=7)).registers == [2]
        assert (await client.read_holding_registers(0, device_id=9)).exception_code == 0x0B
    finally:
        client.close()
    rtu = await _client(site, "rtu", timeout=0.3)
    try:
        with pytest.raises(ModbusException):
            await rtu.read_holding_registers(0, device_id=9)  # nobody there: silence
    finally:
        rtu.close()


SILENT = [
    Fault(mode=FaultMode.NO_REPLY),
    Fault(mode=FaultMode.CRC_ERROR),
    Fault(mode=FaultMode.GARBAGE),
    Fault(mode=FaultMode.TRUNCATED),
]


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["tcp", "rtu"])
async def test_faults_are_seen_by_the_client(site: SimulatedSite, transport: str) -> None:
    device, unit = DEVICE[transport]
    for fault in SILENT:
        site.set_fault(device, fault)
        client = await _client(site, transport, timeout=0.3)
        try:
            try:
                reply = await client.read_holding_registers(210, count=1, device_id=unit)
            except ModbusException:
                pass  # timeout or undecodable reply
            else:
                assert reply.isError(), (fault.mode, reply)
        finally:
            client.close()

    site.set_fault(device, Fault(mode=FaultMode.EXCEPTION, exception_code=6))
    client = await _client(site, transport, timeout=2.0)
    try:
        reply = await client.read_holding_registers(210, count=1, device_id=unit)
        assert reply.exception_code == 6

        site.set_fault(device, Fault(mode=FaultMode.SLOW_REPLY, delay=0.4))
        start = time.monotonic()
        reply = await client.read_holding_registers(210, count=1, device_id=unit)
        assert not reply.isError()
        assert time.monotonic() - start >= 0.38

        site.set_fault(device, Fault())
        start = time.monotonic()
        reply = await client.read_holding_registers(210, count=1, device_id=unit)
        assert not reply.isError()
        assert time.monotonic() - start < 0.3
    finally:
        client.close()


async def test_other_devices_unaffected_by_a_fault(site: SimulatedSite) -> None:
    site.set_fault("meter", Fault(mode=FaultMode.NO_REPLY))
    client = await _client(site, "tcp", timeout=0.3)
    try:
        assert not (await client.read_holding_registers(210, device_id=7)).isError()
    finally:
        client.close()


async def test_a_silent_unit_does_not_silence_the_others_on_its_connection(
        site: SimulatedSite) -> None:
    """A request to a unit that does not answer, then one to a unit that does, on the same
    connection: the second was answered only after the next reply cleared the server's buffer
    (the dropped frame stayed in front of it), so one silent unit silenced a whole simulated
    TCP bus — the bus loop took that for the bus's power gone."""
    site.set_fault("meter", Fault(mode=FaultMode.NO_REPLY))
    client = await _client(site, "tcp", timeout=0.3)
    try:
        for _ in range(3):
            with pytest.raises(ModbusException):
                await client.read_holding_registers(210, device_id=1)
            reply = await client.read_holding_registers(210, device_id=7)
            assert not reply.isError()
    finally:
        client.close()


async def test_intermittent_fault(site: SimulatedSite) -> None:
    site.set_fault("meter", Fault(mode=FaultMode.EXCEPTION, exception_code=4, probability=0.5))
    client = await _client(site, "tcp")
    try:
        codes = [(await client.read_holding_registers(210, device_id=1)).exception_code
                 for _ in range(40)]
    finally:
        client.close()
    assert 5 < codes.count(4) < 35
    assert 5 < codes.count(0) < 35


async def test_unpaced_start_stop_leaves_no_fds(loaded: Any) -> None:
    import os
    before = len(os.listdir("/proc/self/fd"))
    async with SimulatedSite(loaded, paced=False) as site:
        client = await _client(site, "rtu")
        assert not (await client.read_holding_registers(210, device_id=3)).isError()
        client.close()
    await asyncio.sleep(0.05)
    assert len(os.listdir("/proc/self/fd")) <= before
