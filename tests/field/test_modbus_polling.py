"""The Modbus poller and bus loop against a real pymodbus TCP server on loopback."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from gateway.clock import SystemClock
from gateway.config.profile import DataType
from gateway.config.site import Device, FailurePolicy, ModbusRtuBus, ModbusTcpBus
from gateway.field.bus_loop import BusLoop
from gateway.field.codec import encode
from gateway.field.modbus_link import CommFailure, ModbusLink
from gateway.field.modbus_poller import (
    MERGE_RETRY_MAX_POLLS,
    MERGE_RETRY_POLLS,
    ModbusDevicePoller,
)
from gateway.field.poll import DevicePoller
from gateway.field.sample import Quality, Sample
from gateway.localservices import free_port
from tests.helpers import modbus_profile, until


@dataclass
class Unit:
    """A device behind the test server; while `silent`, it does not answer."""

    answering: asyncio.Event = field(default_factory=asyncio.Event)
    reads: list[tuple[int, int, int]] = field(default_factory=list)
    refusing: dict[int, int] = field(default_factory=dict)
    """Function code → the exception code the device answers reads of it with."""

    def __post_init__(self) -> None:
        self.answering.set()

    @property
    def silent(self) -> bool:
        return not self.answering.is_set()

    @silent.setter
    def silent(self, value: bool) -> None:
        if value:
            self.answering.clear()
        else:
            self.answering.set()

    async def action(self, function_code: int, _start: int, address: int, count: int,
                     _registers: list[int], _values: object) -> ExcCodes | None:
        self.reads.append((function_code, address, count))
        await self.answering.wait()
        code = self.refusing.get(function_code)
        return None if code is None else ExcCodes(code)


def holding_blocks(spans: dict[int, list[int]]) -> list[SimData]:
    return [SimData(address, values=values, datatype=SimType.REGISTERS)
            for address, values in spans.items()]


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, dict[int, Unit]]]:
    units = {1: Unit(), 2: Unit()}
    port = free_port()
    srv = await serve(port, units)
    try:
        yield port, units
    finally:
        for unit in units.values():
            unit.silent = False
        await stop(srv)


async def stop(srv: ModbusTcpServer) -> None:
    """`srv.shutdown()`, in one place: pymodbus leaves it unannotated."""
    await srv.shutdown()  # type: ignore[no-untyped-call]


async def serve(port: int, units: dict[int, Unit]) -> ModbusTcpServer:
    """A Modbus TCP server of `units` on `port`, serving in the background."""
    temperature = encode(21.5, DataType.FLOAT32)
    registers = holding_blocks({0: [100, 101, 102, 103], 6: [106, 107, *temperature]})
    devices = [
        SimDevice(id=unit_id, simdata=([SimData(0, values=[True] * 16,
                                                datatype=SimType.BITS)],
                                       [SimData(0, values=[False] * 16,
                                                datatype=SimType.BITS)],
                                       list(registers), [SimData(0, values=[7],
                                                                 datatype=SimType.REGISTERS)]),
                  action=unit.action)
        for unit_id, unit in units.items()
    ]
    srv = ModbusTcpServer(devices, address=("127.0.0.1", port), ignore_missing_devices=True)
    await srv.serve_forever(background=True)
    return srv




PROFILE = modbus_profile([
    {"name": "a0", "register": "holding", "address": 0},
    {"name": "a1", "register": "holding", "address": 1},
    {"name": "a3", "register": "holding", "address": 3, "valid": {"max": 102}},
    # registers 4 and 5 are not mapped on the device: reading across them is refused
    {"name": "a6", "register": "holding", "address": 6, "scale": 0.5},
    {"name": "temp", "register": "holding", "address": 8, "type": "float32",
     "quantity": "temperature"},
    {"name": "status", "register": "input", "address": 0,
     "flags": [{"bit": 0, "name": "b0"}, {"bit": 1, "name": "b1"}, {"bit": 2, "name": "b2"}]},
    {"name": "relay", "register": "coil", "address": 3},
])


def make_poller(port: int, unit: int, timeout: float = 0.3,
                interval: float = 0.2) -> tuple[ModbusDevicePoller, ModbusLink]:
    bus = ModbusTcpBus(id="tcp1", type="modbus_tcp", host="127.0.0.1", port=port,
                       timeout=timeout, max_gap=8)
    link = ModbusLink(bus)
    device = Device(id=f"dev{unit}", bus="tcp1", unit=unit, profile=PROFILE.id, room="r",
                    poll_interval=interval)
    return ModbusDevicePoller(device, PROFILE, link, SystemClock(), max_gap=8), link


def by_point(samples: list[Sample]) -> dict[str, Sample]:
    return {s.point: s for s in samples}


async def test_reads_decode_and_split_around_an_unmapped_range(
        server: tuple[int, dict[int, Unit]]) -> None:
    port, units = server
    poller, link = make_poller(port, 1)
    await link.open()
    try:
        assert [(r.address, r.count) for r in poller.plan if r.function_code == 3] == [(0, 10)]
        first = await poller.poll()
        assert first.answered
        values = by_point(first.samples)
        assert values["dev1.a0"].value == 100 and values["dev1.a0"].good
        assert values["dev1.a1"].value == 101
        assert values["dev1.a3"].value == 103
        assert values["dev1.a3"].quality is Quality.INVALID  # outside valid: kept, not clamped
        assert values["dev1.a6"].value == 53.0
        assert values["dev1.temp"].value == pytest.approx(21.5)
        assert values["dev1.status"].value == 7
        assert [values[f"dev1.status.b{i}"].value for i in range(3)] == [True, True, True]
        assert values["dev1.relay"].value is True
        # the refused merged read was split at the hole and the split is remembered
        assert [(r.address, r.count) for r in poller.plan if r.function_code == 3] == [
            (0, 4), (6, 4)]
        units[1].reads.clear()
        second = await poller.poll()
        assert all(s.good for s in second.samples if s.point != "dev1.a3")
        assert [(a, c) for fc, a, c in units[1].reads if fc == 3] == [(0, 4), (6, 4)]
    finally:
        await link.close()


async def test_a_point_the_device_refuses_alone_is_invalid_and_others_stay_good(
        server: tuple[int, dict[int, Unit]]) -> None:
    port, _ = server
    profile = modbus_profile([
        {"name": "good", "register": "holding", "address": 0},
        {"name": "missing", "register": "holding", "address": 4},
    ])
    bus = ModbusTcpBus(id="tcp1", type="modbus_tcp", host="127.0.0.1", port=port, timeout=0.5)
    link = ModbusLink(bus)
    device = Device(id="d", bus="tcp1", unit=1, profile=profile.id, room="r")
    poller = ModbusDevicePoller(device, profile, link, SystemClock(), max_gap=8)
    await link.open()
    try:
        for _ in range(2):
            result = await poller.poll()
            values = by_point(result.samples)
            assert values["d.good"].good and values["d.good"].value == 100
            assert values["d.missing"].quality is Quality.INVALID
            assert values["d.missing"].value is None
        assert poller.unreadable == {"d.missing"}
    finally:
        await link.close()


def holding_poller(port: int, points: list[dict[str, object]]) -> tuple[ModbusDevicePoller,
                                                                       ModbusLink]:
    profile = modbus_profile(points)
    bus = ModbusTcpBus(id="tcp1", type="modbus_tcp", host="127.0.0.1", port=port, timeout=0.5)
    link = ModbusLink(bus)
    device = Device(id="d", bus="tcp1", unit=1, profile=profile.id, room="r")
    return ModbusDevicePoller(device, profile, link, SystemClock(), max_gap=8), link


async def test_splits_learned_in_a_refusing_window_are_forgotten_after_clean_polls(
        server: tuple[int, dict[int, Unit]]) -> None:
    """The field audit: one window of exception 2 (a device booting, a converter's firmware
    hiccup) split a device's one 4-register read into four 1-register reads for good. After
    MERGE_RETRY_POLLS clean polls the merged read is tried again and, read, kept."""
    port, units = server
    poller, link = holding_poller(port, [
        {"name": f"a{i}", "register": "holding", "address": i} for i in range(4)])
    await link.open()
    try:
        units[1].refusing = {3: 2}
        for _ in range(5):  # the window: split down to single reads, all refused
            window = await poller.poll()
            assert all(s.quality is Quality.INVALID for s in window.samples)
        assert [(r.address, r.count) for r in poller.plan] == [(0, 1), (1, 1), (2, 1), (3, 1)]
        units[1].refusing = {}
        for _ in range(MERGE_RETRY_POLLS):  # the splits hold while they are proved
            units[1].reads.clear()
            values = by_point((await poller.poll()).samples)
            assert [values[f"d.a{i}"].value for i in range(4)] == [100, 101, 102, 103]
            assert all(s.good for s in values.values())
            assert units[1].reads == [(3, 0, 1), (3, 1, 1), (3, 2, 1), (3, 3, 1)]
        for _ in range(3):  # then one merged read again, and it stays merged
            units[1].reads.clear()
            values = by_point((await poller.poll()).samples)
            assert [values[f"d.a{i}"].value for i in range(4)] == [100, 101, 102, 103]
            assert all(s.good for s in values.values())
            assert units[1].reads == [(3, 0, 4)]
        assert poller.barriers == set()
    finally:
        await link.close()


async def test_a_real_gap_stays_split_and_the_merged_read_is_retried_ever_more_rarely(
        server: tuple[int, dict[int, Unit]]) -> None:
    """Registers 4 and 5 are not mapped: the merged read 0..9 is refused every time it is
    tried. It is tried after 100, then 200, then 400 clean polls (each retry refused doubles the
    wait, up to MERGE_RETRY_MAX_POLLS), its refusal is followed in the same poll by the split
    reads, and every point reads good in every poll."""
    port, units = server
    poller, link = holding_poller(port, [
        {"name": "a0", "register": "holding", "address": 0},
        {"name": "a1", "register": "holding", "address": 1},
        {"name": "a3", "register": "holding", "address": 3},
        {"name": "a6", "register": "holding", "address": 6},
        {"name": "temp", "register": "holding", "address": 8, "type": "float32",
         "quantity": "temperature"},
    ])
    split = [(3, 0, 4), (3, 6, 4)]
    merged_in: list[int] = []
    await link.open()
    try:
        for number in range(1, 705):
            units[1].reads.clear()
            result = await poller.poll()
            values = by_point(result.samples)
            assert all(s.good for s in result.samples), (number, result.samples)
            assert [values[f"d.{p}"].value for p in ("a0", "a1", "a3", "a6")] == [
                100, 101, 103, 106], number
            assert values["d.temp"].value == pytest.approx(21.5)
            # the server refuses a read of unmapped registers before its action sees it: the
            # refused merged read shows as the one request more
            assert units[1].reads == split, number
            if result.requests == 3:
                merged_in.append(number)
            else:
                assert result.requests == 2, number
        assert merged_in == [1, 102, 303, 704]
        assert poller.merge_retry_polls == 8 * MERGE_RETRY_POLLS
        # the wait stops doubling at its cap
        poller.merge_retry_polls = poller.clean_polls = MERGE_RETRY_MAX_POLLS
        units[1].reads.clear()
        result = await poller.poll()
        assert all(s.good for s in result.samples)
        assert result.requests == 3 and units[1].reads == split
        assert poller.merge_retry_polls == MERGE_RETRY_MAX_POLLS
    finally:
        await link.close()


async def test_a_merged_retry_cut_short_by_a_silent_device_keeps_the_splits_and_retries(
        server: tuple[int, dict[int, Unit]]) -> None:
    """A merged retry that the link cut short proved nothing: the splits stay, and the next
    poll that gets through tries the merged read again."""
    port, units = server
    poller, link = holding_poller(port, [
        {"name": "a0", "register": "holding", "address": 0},
        {"name": "a1", "register": "holding", "address": 1},
    ])
    await link.open()
    try:
        units[1].refusing = {3: 2}
        await poller.poll()  # learn a split
        units[1].refusing = {}
        for _ in range(MERGE_RETRY_POLLS):  # prove it
            assert (await poller.poll()).requests == 2
        units[1].silent = True
        lost = await poller.poll()
        assert lost.requests == 1 and lost.error is not None
        assert all(s.quality is Quality.COMM_ERROR for s in lost.samples)
        assert [(r.address, r.count) for r in poller.plan] == [(0, 1), (1, 1)]
        units[1].silent = False
        result = await poller.poll()
        assert result.requests == 1 and all(s.good for s in result.samples), result
        assert [(r.address, r.count) for r in poller.plan] == [(0, 2)]
    finally:
        await link.close()


class Recorder:
    def __init__(self) -> None:
        self.samples: list[Sample] = []

    def __call__(self, batch: list[Sample]) -> None:
        self.samples.extend(batch)

    def times(self, point: str) -> list[float]:
        return [s.ts / 1e9 for s in self.samples if s.point == point]


@pytest.mark.slow
async def test_dead_device_is_backed_off_and_does_not_starve_a_healthy_one(
        server: tuple[int, dict[int, Unit]]) -> None:
    port, units = server
    units[2].silent = True
    timeout, interval = 0.3, 0.2
    healthy, link = make_poller(port, 1, timeout, interval)
    dead, _ = make_poller(port, 2, timeout, interval)
    dead.link = healthy.link = link
    recorder = Recorder()
    policy = FailurePolicy(offline_after=3, backoff_max=1.0, backoff_multiplier=2.0)
    pollers: list[DevicePoller] = [healthy, dead]
    loop = BusLoop("tcp1", link, pollers, recorder, policy)
    task = asyncio.create_task(loop.run())
    try:
        await asyncio.sleep(4.0)
        health = loop.stats.device_health
        assert health["dev2"].online is False
        assert health["dev1"].online is True
        # back-off: the dead device was tried far less often than every interval
        assert 3 <= health["dev2"].polls <= 10
        healthy_times = recorder.times("dev1.a0")
        gaps = [b - a for a, b in itertools.pairwise(healthy_times)]
        # the healthy device waits at most one timeout of the dead one (plus scheduling slack)
        assert max(gaps) <= interval + timeout + 0.15, gaps
        dead_samples = [s for s in recorder.samples if s.point.startswith("dev2.a")]
        assert dead_samples and all(s.quality is Quality.COMM_ERROR for s in dead_samples)
        assert [s.value for s in recorder.samples if s.point == "dev2.online"][-1] is False

        units[2].silent = False  # the device comes back: one good poll brings it online
        await until(lambda: health["dev2"].online is True, 5.0, "dev2 online again")
        assert [s.value for s in recorder.samples if s.point == "dev2.online"][-1] is True
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_rtu_port_that_is_not_there_gives_comm_errors(tmp_path: Path) -> None:
    bus = ModbusRtuBus(id="b", type="modbus_rtu", port=str(tmp_path / "ttyUSB9"), timeout=0.3)
    link = ModbusLink(bus)
    with pytest.raises(CommFailure, match="cannot connect"):
        await link.open()  # the bus loop notes it (link_open False) and polls on
    poller = ModbusDevicePoller(Device(id="d", bus="b", profile=PROFILE.id, room="r"), PROFILE,
                                link, SystemClock(), max_gap=8)
    try:
        result = await poller.poll()
        assert not result.answered and result.error and "not connected" in result.error
        assert result.samples and all(s.quality is Quality.COMM_ERROR for s in result.samples)
    finally:
        await link.close()


async def test_a_device_answering_every_read_with_an_exception_goes_offline(
        server: tuple[int, dict[int, Unit]]) -> None:
    """"Server device failure" to every read is no data: the device is as blind as a silent
    one, so it goes offline after `offline_after` polls (a gas detector's failure alarm rests
    on that), with the exception as its error; one good poll brings it back."""
    port, units = server
    units[1].refusing = {1: 4, 2: 4, 3: 4, 4: 4}
    poller, link = make_poller(port, 1, 0.3, 0.1)
    recorder = Recorder()
    loop = BusLoop("tcp1", link, [poller], recorder, FailurePolicy(offline_after=3,
                                                                 backoff_max=0.2))
    task = asyncio.create_task(loop.run())
    try:
        health = loop.stats.device_health["dev1"]
        await until(lambda: health.online is False, 5.0, "dev1 offline")
        assert health.last_error is not None and "4" in health.last_error
        assert loop.link_open is True  # the link works: it is the device that fails
        assert all(s.quality is Quality.COMM_ERROR for s in recorder.samples
                   if s.point.startswith("dev1.a"))
        units[1].refusing = {}
        await until(lambda: health.online is True, 5.0, "dev1 online again")
        assert health.last_error is None and not health.partial
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_tcp_peer_that_goes_away_shows_its_link_down_until_it_is_back() -> None:
    """The churn soak: a Modbus TCP device (or gateway) that disappeared while the bus ran
    left `link_open` true (and `roomwarden_bus_link_open` 1) — only a failed first open set it
    false — so health said "no device answers" and a link alert never fired."""
    units = {1: Unit()}
    port = free_port()
    srv = await serve(port, units)
    poller, link = make_poller(port, 1, 0.3, 0.1)
    loop = BusLoop("tcp1", link, [poller], Recorder(), FailurePolicy(offline_after=2,
                                                                   backoff_max=0.2))
    task = asyncio.create_task(loop.run())
    try:
        await until(lambda: loop.stats.device_health["dev1"].online is True, 5.0, "online")
        assert loop.link_open is True
        await stop(srv)
        await until(lambda: loop.link_open is False, 10.0, "the link seen down")
        assert loop.link_error is not None and "not connected" in loop.link_error
        srv = await serve(port, units)
        await until(lambda: loop.link_open is True, 10.0, "the link back")
        assert loop.link_error is None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await stop(srv)
        await link.close()


async def test_when_one_device_answers_again_the_others_of_the_bus_are_polled_at_once(
        server: tuple[int, dict[int, Unit]]) -> None:
    """The storm audit's power dip: every device of a bus silent, backed off, then all back
    at once — each waited out its own back-off (21 s for 15 devices). Now the first answer
    makes the bus's other failing devices due at once."""
    port, units = server
    timeout, interval = 0.2, 0.1
    first, link = make_poller(port, 1, timeout, interval)
    second, _ = make_poller(port, 2, timeout, interval)
    second.link = first.link = link
    loop = BusLoop("tcp1", link, [first, second], Recorder(), FailurePolicy(
        offline_after=2, backoff_max=30.0, backoff_multiplier=3.0))
    health = loop.stats.device_health
    task = asyncio.create_task(loop.run())
    try:
        await until(lambda: health["dev1"].online is True and health["dev2"].online is True,
                    5.0, "both online")
        units[2].silent = True  # the power dip (dev2 first: backed off further)
        await until(lambda: health["dev2"].consecutive_failures >= 5, 15.0, "dev2 backed off")
        units[1].silent = True  # (dev2's next poll is ≥ 8 s away: 0.1 s × 3⁴)
        await until(lambda: health["dev1"].consecutive_failures >= 2, 15.0, "dev1 backed off")
        units[1].silent = units[2].silent = False
        await until(lambda: health["dev1"].online is True, 15.0, "dev1 back")
        back = asyncio.get_running_loop().time()
        await until(lambda: health["dev2"].online is True, 15.0, "dev2 back")
        assert asyncio.get_running_loop().time() - back < 1.0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_whole_bus_gone_silent_is_offline_after_one_round_not_three() -> None:
    """The storm audit's power dip, as the offline rule sees it: every device of a bus stops
    answering at once. Each went offline only after its own `offline_after` failures — three
    rounds of timeouts, 31-55 s for 15 devices at a 1 s timeout, past the 10 s the rule's basis
    asks for. Now one round in which nothing answered takes every device offline, and the
    samples say so at once; the first answer ends it. One device silent among answering ones
    still needs its own `offline_after` failures."""
    units = {unit: Unit() for unit in range(1, 7)}
    port = free_port()
    srv = await serve(port, units)
    timeout, interval = 0.2, 0.3
    pollers: list[DevicePoller] = []
    link: ModbusLink | None = None
    for unit in units:
        poller, own = make_poller(port, unit, timeout, interval)
        link = link or own
        poller.link = link
        pollers.append(poller)
    assert link is not None
    recorder = Recorder()
    loop = BusLoop("tcp1", link, pollers, recorder, FailurePolicy(
        offline_after=3, backoff_max=5.0, backoff_multiplier=2.0))
    health = loop.stats.device_health
    task = asyncio.create_task(loop.run())
    try:
        await until(lambda: all(h.online for h in health.values()), 5.0, "all online")
        units[3].silent = True  # one device alone: its own offline_after
        await until(lambda: health["dev3"].online is False, 10.0, "dev3 offline")
        assert health["dev3"].consecutive_failures >= 3
        assert not loop.silent and all(health[f"dev{u}"].online for u in (1, 2, 4, 5, 6))
        units[3].silent = False
        await until(lambda: health["dev3"].online is True, 10.0, "dev3 back")

        for device in units.values():
            device.silent = True  # the bus's power gone
        await until(lambda: any(h.online is False for h in health.values()), 10.0,
                    "a device offline")
        assert loop.silent
        assert all(h.online is False for h in health.values())
        # the first to fail has failed once or twice, the last once: not three times each
        assert min(h.consecutive_failures for h in health.values()) == 1
        assert max(h.consecutive_failures for h in health.values()) < 3
        offline = {s.point for s in recorder.samples
                   if s.point.endswith(".online") and s.value is False}
        assert offline == {f"dev{u}.online" for u in units}

        for device in units.values():
            device.silent = False
        await until(lambda: all(h.online for h in health.values()), 10.0, "all back")
        assert not loop.silent
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await stop(srv)
        await link.close()


async def test_a_modbus_gateway_whose_serial_side_is_dead_makes_a_silent_bus(
        server: tuple[int, dict[int, Unit]]) -> None:
    """A Modbus TCP-to-RS-485 gateway whose serial side lost power answers every unit with
    exception 11 (target device failed to respond), or 10 (path unavailable): no device answered
    — counted as answered, the bus was never silent and each device went offline only after
    its own `offline_after` failures (the RTU audit). Now the bus is silent at once."""
    port, units = server
    first, link = make_poller(port, 1, 0.3, 0.1)
    second, _ = make_poller(port, 2, 0.3, 0.1)
    second.link = first.link = link
    loop = BusLoop("tcp1", link, [first, second], Recorder(), FailurePolicy(
        offline_after=3, backoff_max=0.2))
    health = loop.stats.device_health
    task = asyncio.create_task(loop.run())
    try:
        await until(lambda: all(h.online for h in health.values()), 5.0, "both online")
        for unit in units.values():
            unit.refusing = {1: 11, 2: 11, 3: 11, 4: 11}
        await until(lambda: loop.silent, 10.0, "the bus silent")
        assert all(h.online is False for h in health.values())
        assert min(h.consecutive_failures for h in health.values()) < 3
        assert all(h.last_error is not None and "11" in h.last_error for h in health.values())
        assert loop.link_open is True  # the gateway itself answers
        for unit in units.values():
            unit.refusing = {}
        await until(lambda: all(h.online for h in health.values()), 10.0, "both back")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_device_that_reads_only_in_part_stays_online_degraded_at_its_interval(
        server: tuple[int, dict[int, Unit]]) -> None:
    """Input registers failing (exception 4), the rest read: the device stays online and is
    polled at its interval (its good points keep coming), with the error kept, until a poll
    reads everything again."""
    port, units = server
    units[1].refusing = {4: 4}
    interval = 0.1
    poller, link = make_poller(port, 1, 0.3, interval)
    recorder = Recorder()
    loop = BusLoop("tcp1", link, [poller], recorder, FailurePolicy(offline_after=3,
                                                                 backoff_max=2.0))
    task = asyncio.create_task(loop.run())
    try:
        health = loop.stats.device_health["dev1"]
        await until(lambda: health.polls >= 8, 5.0, "eight polls")
        assert health.online is True and health.partial
        assert health.consecutive_failures == 0  # no back-off
        assert health.last_error is not None and "4" in health.last_error
        latest = by_point(recorder.samples)
        assert latest["dev1.a0"].quality is Quality.GOOD
        assert latest["dev1.status"].quality is Quality.COMM_ERROR
        times = recorder.times("dev1.a0")
        assert max(b - a for a, b in itertools.pairwise(times[-5:])) < 5 * interval
        units[1].refusing = {}
        await until(lambda: not health.partial, 5.0, "dev1 read whole again")
        assert health.last_error is None and health.online is True
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class Tagged(list[tuple[int, int, int]]):
    """A unit's read log that also notes, in a list shared by the units, whose read it was."""

    def __init__(self, tag: str, order: list[str]) -> None:
        super().__init__()
        self.tag, self.order = tag, order

    def append(self, item: tuple[int, int, int]) -> None:
        super().append(item)
        self.order.append(self.tag)


async def test_a_write_the_samples_ask_for_goes_before_the_next_poll_of_the_bus(
        server: tuple[int, dict[int, Unit]]) -> None:
    """Two devices due at once on one bus. The first one's samples wake an evaluator (a task
    on an event, as gateway.evaluator is) whose round queues an output write (as the output
    driver does): the write reaches the bus before the second device's poll, not after it —
    a siren is not held up by a poll of a T/H sensor (the alarm-latency bench's worst case)."""
    port, units = server
    order: list[str] = []
    units[1].reads, units[2].reads = Tagged("dev1", order), Tagged("dev2", order)
    first, link = make_poller(port, 1, interval=10.0)
    second, _ = make_poller(port, 2, interval=10.0)
    first.link = second.link = link
    woken = asyncio.Event()

    def on_samples(batch: list[Sample]) -> None:
        if any(s.point.startswith("dev1.") for s in batch):
            woken.set()

    loop = BusLoop("tcp1", link, [first, second], on_samples, FailurePolicy())

    async def write() -> None:
        order.append("write")

    async def evaluator() -> None:
        await woken.wait()
        loop.submit(write)

    tasks = [asyncio.create_task(evaluator()), asyncio.create_task(loop.run())]
    try:
        await until(lambda: "write" in order and order.count("dev2") == order.count("dev1"),
                    5.0, "both polls and the write")
        reads = order.count("dev1")
        assert reads >= 1 and order == ["dev1"] * reads + ["write"] + ["dev2"] * reads
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
