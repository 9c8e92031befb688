"""Output coils driven on a simulated relay module over an emulated RS-485 line: the write is
verified by reading back, survives a dead module and is repaired when the coil drifts; a stuck
relay is written once per back-off step (counted at the simulator), and logged once."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.actions.driver import OUTPUT_MODULE_BACKOFF, OutputDriver, backoff_delay
from gateway.clock import Clock, SystemClock
from gateway.config.loader import load_gateway_config
from gateway.field.bus_loop import BusLoop
from gateway.field.buses import build_bus_loops
from gateway.field.latest import LatestSamples
from gateway.sim.faults import Fault, FaultMode
from gateway.sim.signals import Constant
from gateway.sim.site import SimulatedSite
from tests.helpers import until

SITE: dict[str, Any] = {
    "gateway": {"id": "gw", "site": "test"},
    "rooms": [{"id": "batt", "type": "battery"}],
    "buses": [{"id": "rs485", "type": "modbus_rtu", "port": "/dev/ttyX", "baudrate": 38400,
               "timeout": "200ms", "failure": {"offline_after": 2, "backoff_max": "1s"}}],
    "devices": [
        {"id": "do1", "bus": "rs485", "unit": 5, "profile": "generic_relay_module",
         "room": "batt", "poll_interval": "300ms"},
        {"id": "th1", "bus": "rs485", "unit": 1, "profile": "generic_th_sensor",
         "room": "batt", "poll_interval": "300ms"}],
    "outputs": [
        {"id": "siren", "role": "siren", "device": "do1", "point": "do1",
         "backoff": {"initial": "500ms", "max": "2s"}},
        {"id": "fan", "role": "exhaust_fan", "device": "do1", "point": "do3",
         "on_value": False}],
}


@dataclass
class Rig:
    site: SimulatedSite
    driver: OutputDriver
    loop: BusLoop


@contextlib.asynccontextmanager
async def open_rig(tmp_path: Path, site_config: dict[str, Any] | None = None,
                   clock: Clock | None = None) -> AsyncIterator[Rig]:
    """The simulated site of `site_config` (default `SITE`), one bus loop polling it and an
    output driver, on `clock` (default the system's)."""
    clock = clock or SystemClock()
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(site_config or SITE))
    async with SimulatedSite(load_gateway_config(config)) as site:
        loaded = load_gateway_config(site.write_config(tmp_path / "sim.yaml"))
        latest = LatestSamples(clock)
        [loop] = build_bus_loops(loaded, latest.update, clock)
        driver = OutputDriver(loaded, [loop], latest, clock)
        task = asyncio.create_task(loop.run())
        try:
            yield Rig(site, driver, loop)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with open_rig(tmp_path) as opened:
        yield opened


async def settle(rig: Rig, output: str, seconds: float = 2.0, after: int = 0) -> None:
    """Wait until a write of `output` beyond the first `after` has finished."""
    state = rig.driver.state[output]
    await until(lambda: not state.pending and state.writes > after, seconds,
                f"a write of {output} beyond {after}: {state}")


async def test_outputs_are_written_and_verified(rig: Rig) -> None:
    rig.driver.apply({"siren": True, "fan": True})
    await settle(rig, "siren")
    await settle(rig, "fan")
    assert rig.site.read_point("do1.do1") is True
    assert rig.site.read_point("do1.do3") is False  # normally-closed wiring: off = energised
    assert rig.driver.state["siren"].confirmed is True
    writes = {name: rig.driver.state[name].writes for name in ("siren", "fan")}
    rig.driver.apply({"siren": False, "fan": False})
    await settle(rig, "siren", after=writes["siren"])
    await settle(rig, "fan", after=writes["fan"])
    assert rig.site.read_point("do1.do1") is False
    assert rig.site.read_point("do1.do3") is True


@pytest.mark.slow
async def test_a_dead_module_is_reported_and_retried_later(rig: Rig) -> None:
    rig.site.set_fault("do1", Fault(mode=FaultMode.NO_REPLY))
    rig.driver.apply({"siren": True})
    await settle(rig, "siren", 5.0)
    state = rig.driver.state["siren"]
    assert state.failed and state.confirmed is None and "timeout" in (state.last_error or "")
    rig.site.set_fault("do1", Fault(mode=FaultMode.NONE))
    clock = rig.driver.clock
    await until(lambda: clock.monotonic() >= state.retry_at, 5.0, "the retry's back-off over")
    writes = state.writes
    rig.driver.apply({"siren": True})  # the periodic re-apply retries the failed write
    assert state.pending  # retried at once, not left for later
    await settle(rig, "siren", 5.0, after=writes)
    assert not state.failed and state.confirmed is True
    assert rig.site.read_point("do1.do1") is True


async def test_a_dead_module_s_writes_do_not_keep_the_bus_from_its_detectors(rig: Rig) -> None:
    """The storm audit: a relay module without power during a fire — every output write
    waited out the timeout four times (with its retries), output after output, before any
    poll: the smoke detectors on that bus went unpolled for 25 s. Now a module that is not
    answering gets one attempt per write, and writes that held the bus half a second let a due
    poll go first. Measured: the gaps between the sensor's polls on the same bus while the
    daemon keeps asking for the siren and the fan (several times a second, as it does)."""
    rig.site.set_fault("do1", Fault(mode=FaultMode.NO_REPLY))
    health = rig.loop.stats.device_health["do1"]
    await until(lambda: health.consecutive_failures > 0, 5.0, "do1's poll failed")
    loop = asyncio.get_running_loop()
    polled: list[float] = []
    start = loop.time()
    while loop.time() - start < 6.0:
        rig.driver.apply({"siren": True, "fan": True})
        sample = rig.driver.latest.latest.get("th1.temperature")
        if sample is not None and (not polled or sample.ts != polled[-1]):
            polled.append(sample.ts)
        await asyncio.sleep(0.05)
    gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(polled)]
    assert rig.driver.state["siren"].failed and rig.driver.state["fan"].failed
    assert len(gaps) >= 6 and max(gaps) < 1.2, gaps  # polled every 300 ms; writes 200 ms each


async def test_a_module_back_from_a_power_cut_has_its_siren_rewritten_at_once(
        rig: Rig) -> None:
    """The storm audit: the relay module lost power while the siren was wanted. Status went on
    saying the siren sounded (confirmed, not failed: nothing had been written), and when the
    module came back with every relay dropped, the siren stayed silent until its backed-off
    poll showed the drift. Now an output whose module goes offline is failed and unconfirmed
    (`actions.output_failure`), and it is written at the first poll the module answers."""
    rig.driver.apply({"siren": True})
    await settle(rig, "siren")
    state = rig.driver.state["siren"]
    assert state.confirmed is True
    rig.site.set_fault("do1", Fault(mode=FaultMode.NO_REPLY))
    health = rig.loop.stats.device_health["do1"]
    await until(lambda: health.online is False, 5.0, "do1 offline")
    rig.driver.apply({"siren": True})
    assert state.failed and state.confirmed is None and "not answering" in (state.last_error or "")
    rig.site.set_signal("do1.do1", Constant(value=False))  # the power cut dropped the relay
    rig.site.set_fault("do1", Fault(mode=FaultMode.NONE))
    loop = asyncio.get_running_loop()
    back = loop.time()
    await until(lambda: health.online is True, 10.0, "do1 answering again")
    while not (state.confirmed is True and not state.failed):
        assert loop.time() - back < 10.0, state
        rig.driver.apply({"siren": True})  # the daemon re-applies several times a second
        await asyncio.sleep(0.05)
    assert rig.site.read_point("do1.do1") is True


async def test_a_module_carrying_outputs_is_polled_at_least_every_5_s_while_silent(
        rig: Rig) -> None:
    """What the README promises after a power cut: the relay module backs off its polls to 5 s
    at most (other devices to the bus's `backoff_max`), so its outputs are rewritten within
    about 5 s of its power coming back."""
    module, sensor = (rig.loop.stats.device_health[d] for d in ("do1", "th1"))
    assert module.backoff_cap == OUTPUT_MODULE_BACKOFF == 5.0 and sensor.backoff_cap is None
    policy = dataclasses.replace(module.policy, backoff_max=60.0)
    silent = dataclasses.replace(module, policy=policy, consecutive_failures=30)
    other = dataclasses.replace(sensor, policy=policy, consecutive_failures=30)
    assert silent.next_delay() == 5.0 and other.next_delay() == 60.0


async def test_a_coil_that_drifts_is_written_again(rig: Rig) -> None:
    rig.driver.apply({"siren": True})
    await settle(rig, "siren")
    writes = rig.driver.state["siren"].writes
    rig.site.set_signal("do1.do1", Constant(value=False))  # the module dropped the relay
    state = rig.driver.state["siren"]

    def polled_dropped() -> bool:  # the relay module's own poll sees it
        sample = rig.driver.latest.latest.get("do1.do1")
        return sample is not None and sample.value is False and sample.ts > state.last_write_ns

    await until(polled_dropped, 5.0, "a poll of do1.do1 showing the dropped relay")
    rig.driver.apply({"siren": True})
    await settle(rig, "siren", after=writes)
    assert rig.driver.state["siren"].writes == writes + 1
    assert rig.site.read_point("do1.do1") is True


STUCK_SECONDS = 60.0


@pytest.mark.slow
async def test_a_stuck_relay_costs_one_write_per_backoff_step(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The fan relay's contacts are welded (the coil stays energised whatever is written):
    the daemon re-applies what it wants several times a second and the module's polls show the
    coil wrong every second, yet over 60 s the simulator sees one write per back-off step.

    The bus timeout is 1 s here, not 200 ms: a write whose reply is lost is retried by design
    (`write_retries`), and on a test machine running four workers on two cores a scheduler
    stall of over 200 ms lost one once (five frames for four steps). The count this test is
    about, a step's one write, is the same at either timeout."""
    site: dict[str, Any] = copy.deepcopy(SITE)
    site["buses"] = [{**SITE["buses"][0], "timeout": "1s"}]
    async with open_rig(tmp_path, site) as rig:
        await _stuck_relay(rig, caplog)


async def _stuck_relay(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    output = rig.driver.outputs["fan"]
    rig.site.stick("do1.do3", True)  # energised = fan off (NC wiring): it never starts
    caplog.set_level(logging.INFO, logger="roomwarden.actions")
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < STUCK_SECONDS:
        rig.driver.apply({"fan": True})
        await asyncio.sleep(0.25)
    writes = [e for e in rig.site.log("do1") if e.point == "do1.do3" and e.kind == "write"]
    steps, elapsed = 1, 0.0  # attempts a back-off schedule allows within the 60 s
    while True:
        elapsed += backoff_delay(output, steps)
        if elapsed > STUCK_SECONDS:
            break
        steps += 1
    health = rig.loop.stats.device_health["do1"]
    assert 2 <= len(writes) <= steps, (len(writes), steps, health.failures, rig.driver.state)
    assert all(e.value is False for e in writes)  # "on" = coil released
    state = rig.driver.state["fan"]
    assert state.failed and state.failing_for == len(writes)
    assert "read back True after writing False" in (state.last_error or "")
    failed_lines = [r for r in caplog.records if "event=output_write_failed" in r.getMessage()]
    assert len(failed_lines) == 1, [r.getMessage() for r in caplog.records]

    rig.site.stick("do1.do3", None)  # repaired: the next back-off step writes it, once
    deadline = loop.time() + backoff_delay(output, state.failing_for) + 5.0
    while state.failed:
        assert loop.time() < deadline, state
        rig.driver.apply({"fan": True})
        await asyncio.sleep(0.1)
    assert rig.site.read_point("do1.do3") is False
    assert sum("event=output_restored" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.slow
async def test_a_coil_that_keeps_falling_back_is_repaired_on_the_backoff(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """A module that takes each write (it reads back right) and then drops the relay again
    before its next poll: repaired at once the first time, then on the back-off schedule
    (siren: 0.5 s, then x2, at most 2 s), and the drift is logged once per series."""
    caplog.set_level(logging.INFO, logger="roomwarden.actions")
    rig.driver.apply({"siren": True})
    await settle(rig, "siren")
    state = rig.driver.state["siren"]
    first = state.writes
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < 10.0:
        if not state.pending and rig.site.read_point("do1.do1") is True:
            rig.site.set_signal("do1.do1", Constant(value=False))  # the module drops it
        rig.driver.apply({"siren": True})
        await asyncio.sleep(0.05)
    repairs = state.writes - first
    # 0.5 + 1 + 2 + 2 + 2 … s apart: at most 7 in 10 s (once per poll, every 0.3 s: ~30)
    assert 3 <= repairs <= 7, repairs
    # logged once per series; a poll that catches the repaired coil before the module drops
    # it again (this loop reverts it within 50 ms) ends a series
    drifted = [r for r in caplog.records if "event=output_drifted" in r.getMessage()]
    assert 1 <= len(drifted) <= 3, len(drifted)
