"""The watchdog feeder with real bus loops polling real Modbus TCP servers (the simulator on
loopback), reporting to a NOTIFY_SOCKET the test owns: pings flow while every loop makes
progress and stop — for good — once one hangs."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import gateway.field.bus_loop as bus_loop_module
from gateway.clock import ManualClock, SystemClock
from gateway.config.loader import LoadedConfig, load_gateway_config
from gateway.field.bus_loop import BusLoop
from gateway.field.buses import build_bus_loops
from gateway.field.modbus_link import ModbusLink
from gateway.field.modbus_poller import ModbusDevicePoller
from gateway.field.poll import PollResult, worst_poll_seconds
from gateway.field.sample import Sample
from gateway.service.notify import Notifier
from gateway.service.watchdog import (
    configure_stall_limits,
    feed_watchdog,
    feed_watchdog_blocking,
    loop_problems,
)
from gateway.sim.faults import Fault, FaultMode
from gateway.sim.site import SimulatedSite
from tests.service.conftest import NotifySocket

TIMEOUT = 0.2
MARGIN = 1.0
PERIOD = 0.2


def write_site(tmp: Path, *, interval: str = "300ms", outputs: bool = False) -> Path:
    profiles = tmp / "profiles"
    profiles.mkdir(exist_ok=True)
    th = {"kind": "modbus", "id": "th", "manufacturer": "test", "model": "th", "generic": True,
          "points": [{"name": "temperature", "register": "holding", "address": 0,
                      "type": "int16", "scale": 0.1, "quantity": "temperature"},
                     {"name": "humidity", "register": "input", "address": 1,
                      "scale": 0.1, "quantity": "relative_humidity"},
                     {"name": "relay", "register": "coil", "address": 0, "writable": True},
                     {"name": "relay2", "register": "coil", "address": 1, "writable": True}]}
    (profiles / "th.yaml").write_text(yaml.safe_dump(th))
    config: dict[str, Any] = {
        "gateway": {"id": "gw", "site": "test"}, "profiles_dir": str(profiles),
        "rooms": [{"id": "room", "type": "equipment"}],
        "buses": [{"id": bus, "type": "modbus_tcp", "host": "192.0.2.1", "timeout": "200ms"}
                  for bus in ("tcp-a", "tcp-b")],
        "devices": [{"id": f"th-{x}", "bus": f"tcp-{x}", "unit": 1, "profile": "th",
                     "room": "room", "poll_interval": interval} for x in ("a", "b")]}
    if outputs:
        config["outputs"] = [{"id": "siren-1", "role": "siren", "device": "th-b",
                              "point": "relay"},
                             {"id": "fan-1", "role": "exhaust_fan", "device": "th-b",
                              "point": "relay2", "verify": False, "write_retries": 0}]
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Rig:
    site: SimulatedSite
    loaded: LoadedConfig
    loops: list[BusLoop]
    tasks: list[asyncio.Task[None]]

    def loop(self, bus_id: str) -> BusLoop:
        return next(loop for loop in self.loops if loop.bus_id == bus_id)


@pytest.fixture
def small_margin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The computed stall limit, with a 1 s margin instead of 10 s to keep the tests short."""
    monkeypatch.setattr(bus_loop_module, "STALL_MARGIN", MARGIN)


@contextlib.asynccontextmanager
async def start_rig(tmp: Path, **site: Any) -> AsyncIterator[Rig]:
    config = write_site(tmp, **site)
    sim = SimulatedSite(load_gateway_config(config))
    await sim.start()
    loaded = load_gateway_config(sim.write_config(tmp / "sim.yaml"))
    samples: list[Sample] = []
    loops = build_bus_loops(loaded, samples.extend, SystemClock())
    tasks = [asyncio.create_task(loop.run(), name=loop.bus_id) for loop in loops]
    try:
        yield Rig(sim, loaded, loops, tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sim.stop()


async def until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def hang_with_real_modbus(rig: Rig) -> None:
    """The device stops answering and the client waits for ever: a driver that ignores the
    timeout its config gives (the stall limit is computed from that config: 200 ms)."""
    link = rig.loop("tcp-b").link
    assert isinstance(link, ModbusLink)
    link.client.ctx.comm_params.timeout_connect = 3600.0  # what the transaction waits on
    rig.site.set_fault("th-b", Fault(mode=FaultMode.NO_REPLY))


class Forever:
    """A poll that awaits something that never comes (a bug, a lost future)."""

    def __init__(self, inner: ModbusDevicePoller) -> None:
        self.inner = inner
        self.device_id = inner.device_id
        self.interval = inner.interval
        self.hung = False

    @property
    def worst_poll_seconds(self) -> float:
        return worst_poll_seconds(self.inner)

    async def poll(self) -> PollResult:
        if self.hung:
            await asyncio.Event().wait()
        return await self.inner.poll()


def hang_with_a_poll_that_never_returns(rig: Rig) -> None:
    loop = rig.loop("tcp-b")
    [poller] = loop.pollers
    assert isinstance(poller, Forever)
    poller.hung = True


@pytest.mark.parametrize("hang", [hang_with_real_modbus, hang_with_a_poll_that_never_returns],
                         ids=["modbus-client-ignores-timeout", "poll-never-returns"])
async def test_pings_flow_while_loops_poll_and_stop_for_good_when_one_hangs(
        tmp_path: Path, small_margin: None, notify_socket: NotifySocket,
        caplog: pytest.LogCaptureFixture,
        hang: Callable[[Rig], None]) -> None:
    async with start_rig(tmp_path) as rig:
        loop_b = rig.loop("tcp-b")
        if hang is hang_with_a_poll_that_never_returns:
            [inner] = loop_b.pollers
            assert isinstance(inner, ModbusDevicePoller)
            loop_b.pollers = [Forever(inner)]
        notify_socket.start_async()
        notifier = Notifier.from_env({"NOTIFY_SOCKET": notify_socket.address,
                                      "WATCHDOG_USEC": str(int(PERIOD * 2e6))})
        assert notifier.watchdog_interval() == pytest.approx(2 * PERIOD)
        feeder = asyncio.create_task(feed_watchdog(notifier, lambda: rig.loops))
        try:
            # both loops poll the simulator and the pings flow, every half interval
            assert await until(lambda: all(
                loop.stats.cycles >= 4 and loop.link_open is True for loop in rig.loops)
                and len(notify_socket.pings()) >= 6, 10.0), (
                [(loop.stats.cycles, loop.link_open) for loop in rig.loops],
                notify_socket.pings())
            pings = notify_socket.pings()
            assert max(b.at - a.at for a, b in itertools.pairwise(pings)) < 1.5

            # the limit comes from the config: one reconnect + 2 requests (holding, input;
            # the coil is a third) each within 200 ms, + the margin
            limit = loop_b.stall_limit
            assert limit == pytest.approx(TIMEOUT + 3 * TIMEOUT + MARGIN)
            with caplog.at_level(logging.WARNING, logger="roomwarden.service"):
                hung_at = time.monotonic()
                hang(rig)
                cycles_a = rig.loop("tcp-a").stats.cycles
                assert await until(lambda: any(
                    "hung" in s for s in notify_socket.statuses()), limit + 5.0)
                stopped = notify_socket.pings()[-1].at
                # the last ping left before the loop had been stuck for its limit (+ the
                # poll in progress when it hung, + a check period, + scheduling slack)
                assert stopped - hung_at <= limit + TIMEOUT * 4 + 1.0 + 0.5
                await asyncio.sleep(3.0)  # and never again while it is hung
                assert notify_socket.pings(since=stopped + 0.001) == []
            hung = [s for s in notify_socket.statuses() if "hung" in s]
            assert hung[0].startswith("watchdog withheld: bus tcp-b hung for")
            # repeated at every check (another status writer cannot hide it), logged once
            assert len(hung) >= 5
            withheld = [r.message for r in caplog.records if "event=watchdog_withheld" in
                        r.message]
            assert len(withheld) == 1 and "bus=tcp-b stalled_for=" in withheld[0]
            # the healthy loop kept polling all along: only the hung one stopped the pings
            assert rig.loop("tcp-a").stats.cycles >= cycles_a + 5
            assert loop_problems(rig.loops, time.monotonic())[0][0] == "tcp-b"
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)


async def test_a_rarely_polled_loop_stays_alive_between_polls(
        tmp_path: Path, small_margin: None, notify_socket: NotifySocket) -> None:
    """Devices polled once a minute: a loop asleep until its next poll counts as alive up to
    that poll's due time, so it is not taken for hung while it waits (its stall limit here is
    1.8 s) — and needs no wake-up to show it."""
    async with start_rig(tmp_path, interval="60s") as rig:
        notify_socket.start_async()
        notifier = Notifier(notify_socket.address)
        feeder = asyncio.create_task(feed_watchdog(notifier, lambda: rig.loops,
                                                   period=PERIOD))
        try:
            await asyncio.sleep(4.0)
            assert all(loop.stats.cycles == 1 for loop in rig.loops)  # one poll each
            assert all(loop.stall_limit < 2.0 for loop in rig.loops)
            pings = notify_socket.pings()
            assert len(pings) >= 12
            assert pings[-1].at > time.monotonic() - 1.0
            assert not [s for s in notify_socket.statuses() if "withheld" in s]
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)


async def test_swapped_loops_are_followed_and_a_manual_clock_decides(
        tmp_path: Path, notify_socket: NotifySocket, caplog: pytest.LogCaptureFixture) -> None:
    """`loops` is asked each time (a reload swaps them); with a manual clock the decision is
    exact: alive up to the limit, withheld past it, resumed when the loop moves again."""
    loaded = load_gateway_config(write_site(tmp_path))
    clock = ManualClock()
    first = build_bus_loops(loaded, lambda batch: None, clock)
    current = [first]
    notify_socket.start_async()
    notifier = Notifier(notify_socket.address)
    feeder = asyncio.create_task(feed_watchdog(notifier, lambda: current[0], clock,
                                               period=0.05))
    try:
        limit = first[0].stall_limit
        assert limit == pytest.approx(TIMEOUT + 3 * TIMEOUT + 10.0)  # the default margin

        async def pings_flow() -> bool:
            before = len(notify_socket.pings())
            clock.advance(0.1)
            return await until(lambda: len(notify_socket.pings()) > before, 3.0)

        assert await pings_flow()
        clock.advance(limit - 0.5)  # just inside the limit
        assert await pings_flow()
        with caplog.at_level(logging.WARNING, logger="roomwarden.service"):
            clock.advance(0.5)  # past it
            assert await until(lambda: any("withheld" in s for s in notify_socket.statuses()),
                               3.0)
            assert not await pings_flow()
            # a reload: new loops, made now, are alive
            current[0] = build_bus_loops(loaded, lambda batch: None, clock)
            assert await pings_flow()
        assert any("event=watchdog_resumed" in r.message for r in caplog.records)
        assert notify_socket.statuses()[-1] == "running (watchdog resumed)"
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)


async def test_extra_checks_withhold_the_pings(tmp_path: Path,
                                               notify_socket: NotifySocket) -> None:
    loaded = load_gateway_config(write_site(tmp_path))
    loops = build_bus_loops(loaded, lambda batch: None, SystemClock())
    trouble: list[str | None] = [None]

    def uplink() -> str | None:
        return trouble[0]

    def broken() -> str | None:
        raise RuntimeError("bug in a check")

    notify_socket.start_async()
    notifier = Notifier(notify_socket.address)
    feeder = asyncio.create_task(feed_watchdog(notifier, lambda: loops, None, [uplink],
                                               period=0.05))
    try:
        assert await until(lambda: len(notify_socket.pings()) >= 3, 3.0)
        trouble[0] = "uplink task died"
        assert await until(lambda: "watchdog withheld: uplink task died" in
                           notify_socket.statuses(), 3.0)
        last = notify_socket.pings()[-1].at
        await asyncio.sleep(0.5)
        assert notify_socket.pings(since=last + 0.001) == []
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
    notify_socket.messages.clear()
    feeder = asyncio.create_task(feed_watchdog(notifier, lambda: loops, None, [broken],
                                               period=0.05))
    try:
        assert await until(lambda: any("bug in a check" in s for s in
                                       notify_socket.statuses()), 3.0)
        assert notify_socket.pings() == []
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)


async def test_output_writes_extend_the_stall_limit_of_their_bus(tmp_path: Path) -> None:
    loaded = load_gateway_config(write_site(tmp_path, outputs=True))
    loops = build_bus_loops(loaded, lambda batch: None, SystemClock())
    before = {loop.bus_id: loop.stall_limit for loop in loops}
    configure_stall_limits(loaded, loops)
    after = {loop.bus_id: loop.stall_limit for loop in loops}
    assert after["tcp-a"] == before["tcp-a"]
    # siren: (3 retries + 1) × (write + read-back); fan: 1 × write — each up to 200 ms
    assert after["tcp-b"] - before["tcp-b"] == pytest.approx((4 * 2 + 1) * TIMEOUT)
    loops[0].stall_limit = 99.0  # an explicit limit wins
    assert loops[0].stall_limit == 99.0


def test_the_blocking_feeder_for_a_threaded_service(notify_socket: NotifySocket) -> None:
    """The ingest's shape: a worker thread with a heartbeat; pings while it beats."""
    stop, hang = threading.Event(), threading.Event()
    beat = [time.monotonic()]

    def worker() -> None:
        while not stop.is_set():
            if hang.is_set():
                stop.wait()  # stuck (until the test ends)
            beat[0] = time.monotonic()
            time.sleep(0.02)

    def writer_alive() -> str | None:
        age = time.monotonic() - beat[0]
        return None if age < 0.5 else f"writer stalled for {age:.1f}s"

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    notifier = Notifier(notify_socket.address)
    feeder = threading.Thread(target=feed_watchdog_blocking,
                              args=(notifier, stop, [writer_alive]),
                              kwargs={"period": 0.05}, daemon=True)
    feeder.start()
    try:
        assert notify_socket.wait(lambda m: sum("WATCHDOG" in x.fields for x in m) >= 5)
        hang.set()
        assert notify_socket.wait(lambda m: any(
            x.fields.get("STATUS", "").startswith("watchdog withheld: writer stalled")
            for x in m))
        last = notify_socket.pings()[-1].at
        time.sleep(0.5)
        assert notify_socket.pings(since=last + 0.001) == []
    finally:
        stop.set()
    feeder.join(5)
    thread.join(5)
    assert not feeder.is_alive()
