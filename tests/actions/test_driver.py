"""Output coils driven on a simulated relay module over an emulated RS-485 line: the write is
verified by reading back, survives a dead module and is repaired when the coil drifts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from gateway.actions.driver import OutputDriver
from gateway.clock import SystemClock
from gateway.config.loader import load_gateway_config
from gateway.field.bus_loop import BusLoop
from gateway.field.buses import build_bus_loops
from gateway.field.latest import LatestSamples
from gateway.sim.faults import Fault, FaultMode
from gateway.sim.signals import Constant
from gateway.sim.site import SimulatedSite

SITE = {
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
        {"id": "siren", "role": "siren", "device": "do1", "point": "do1"},
        {"id": "fan", "role": "exhaust_fan", "device": "do1", "point": "do3",
         "on_value": False}],
}


@dataclass
class Rig:
    site: SimulatedSite
    driver: OutputDriver
    loop: BusLoop


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(SITE))
    async with SimulatedSite(load_gateway_config(config)) as site:
        loaded = load_gateway_config(site.write_config(tmp_path / "sim.yaml"))
        latest = LatestSamples()
        [loop] = build_bus_loops(loaded, latest.update, SystemClock())
        driver = OutputDriver(loaded, [loop], latest, SystemClock())
        task = asyncio.create_task(loop.run())
        try:
            yield Rig(site, driver, loop)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def settle(rig: Rig, output: str, seconds: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while rig.driver.state[output].pending or rig.driver.state[output].writes == 0:
        assert asyncio.get_running_loop().time() < deadline, rig.driver.state[output]
        await asyncio.sleep(0.02)


async def test_outputs_are_written_and_verified(rig: Rig) -> None:
    rig.driver.apply({"siren": True, "fan": True})
    await settle(rig, "siren")
    await settle(rig, "fan")
    assert rig.site.read_point("do1.do1") is True
    assert rig.site.read_point("do1.do3") is False  # normally-closed wiring: off = energised
    assert rig.driver.state["siren"].confirmed is True
    rig.driver.apply({"siren": False, "fan": False})
    await asyncio.sleep(0.3)
    await settle(rig, "siren")
    assert rig.site.read_point("do1.do1") is False
    assert rig.site.read_point("do1.do3") is True


async def test_a_dead_module_is_reported_and_retried_later(rig: Rig) -> None:
    rig.driver.failed_retry_interval = 0.5
    rig.site.set_fault("do1", Fault(mode=FaultMode.NO_REPLY))
    rig.driver.apply({"siren": True})
    await settle(rig, "siren", 5.0)
    state = rig.driver.state["siren"]
    assert state.failed and state.confirmed is None and "timeout" in (state.last_error or "")
    rig.site.set_fault("do1", Fault(mode=FaultMode.NONE))
    await asyncio.sleep(0.6)
    rig.driver.apply({"siren": True})  # the periodic re-apply retries the failed write
    await asyncio.sleep(0.05)
    await settle(rig, "siren", 5.0)
    assert not state.failed and state.confirmed is True
    assert rig.site.read_point("do1.do1") is True


async def test_a_coil_that_drifts_is_written_again(rig: Rig) -> None:
    rig.driver.apply({"siren": True})
    await settle(rig, "siren")
    writes = rig.driver.state["siren"].writes
    rig.site.set_signal("do1.do1", Constant(value=False))  # the module dropped the relay
    await asyncio.sleep(0.8)  # the relay module's own poll sees it
    rig.driver.apply({"siren": True})
    await asyncio.sleep(0.05)
    await settle(rig, "siren")
    assert rig.driver.state["siren"].writes == writes + 1
    assert rig.site.read_point("do1.do1") is True
