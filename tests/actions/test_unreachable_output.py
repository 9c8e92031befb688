"""An output the gateway cannot reach (its relay module disabled and alone on its RS-485 line,
so no bus loop carries its writes) is failed from the start: `actions.output_failure` is raised
and status shows why. The output chain audit (F5): the siren was wanted, never written, and the
only trace was one `output_unreachable` log line. `roomwarden check` refuses such a config
(tests/config/test_output_targets.py); this is the run-time side, for a config that reaches the
gateway some other way, through the whole daemon against the simulated site."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.clock import ManualClock
from gateway.config.loader import LoadedConfig, load_gateway_config
from gateway.config.section import replaced
from gateway.daemon import Gateway
from gateway.ops.status_report import build_status_report
from gateway.ops.status_text import render_status
from gateway.safety import OUTPUT_FAILURE_RULE
from gateway.sim.signals import Constant
from gateway.sim.site import SimulatedSite
from gateway.status import health_view
from gateway.stopping import leave_outputs_safe
from tests.helpers import until

SITE = {
    "gateway": {"id": "gw", "site": "test"},
    "rooms": [{"id": "batt", "type": "battery"}],
    "buses": [
        {"id": "rs485", "type": "modbus_rtu", "port": "/dev/ttyX", "baudrate": 38400,
         "timeout": "200ms"},
        {"id": "rs485-2", "type": "modbus_rtu", "port": "/dev/ttyY", "baudrate": 38400,
         "timeout": "200ms"}],
    "devices": [
        {"id": "h2", "bus": "rs485", "unit": 1, "profile": "generic_h2_detector",
         "room": "batt", "poll_interval": "300ms"},
        {"id": "do1", "bus": "rs485-2", "unit": 2, "profile": "generic_relay_module",
         "room": "batt", "poll_interval": "300ms"}],
    "outputs": [{"id": "siren", "role": "siren", "device": "do1", "point": "do1"}],
    "panel": {"enabled": False},
    "rules": {"parameters": [{"rule": "explosion.h2_alarm", "set": {"delay": 0}}]},
}


def _with_do1_disabled(loaded: LoadedConfig) -> LoadedConfig:
    """The checked config with the relay module switched off afterwards: what `check` would
    refuse, as it could reach a running gateway past the check."""
    devices = [replaced(d, enabled=False) if d.id == "do1" else d
               for d in loaded.config.devices]
    return dataclasses.replace(loaded, config=replaced(loaded.config, devices=devices))


@contextlib.asynccontextmanager
async def running_without_do1(tmp_path: Path) -> AsyncIterator[tuple[SimulatedSite, Gateway]]:
    """The site simulated, a gateway running on it with the relay module disabled (started)."""
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(SITE))
    async with SimulatedSite(load_gateway_config(config)) as site:
        loaded = _with_do1_disabled(load_gateway_config(site.write_config(tmp_path / "sim.yaml")))
        gateway = Gateway(loaded, state_dir=tmp_path / "state")
        task = asyncio.create_task(gateway.run())
        try:
            await asyncio.wait_for(gateway.started.wait(), 10)
            yield site, gateway
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@pytest.mark.slow
async def test_an_output_without_a_bus_loop_raises_the_output_alarm(tmp_path: Path) -> None:
    key = AlarmKey(OUTPUT_FAILURE_RULE, "siren")
    async with running_without_do1(tmp_path) as (site, gateway):
        assert [loop.bus_id for loop in gateway.bus_loops] == ["rs485"]  # no loop for do1
        await until(lambda: key in gateway.core.alarms.known()
                    and gateway.core.alarms.get(key).state
                    is AlarmState.ACTIVE_UNACKNOWLEDGED, what="the siren's output alarm")
        site.set_signal("h2.h2", Constant(value=40.0))  # the siren is wanted
        await until(lambda: gateway.core.wanted.get("siren") is True, what="siren wanted")
        state = gateway.driver.state["siren"]
        assert state.failed and state.writes == 0
        assert state.last_error == "output unreachable: device do1 is disabled"
        assert gateway.core.alarms.get(key).value == state.last_error
        [line] = [o for o in build_status_report(gateway).outputs if o.id == "siren"]
        assert line.failed and line.wanted and line.last_error == state.last_error
        text = render_status(build_status_report(gateway), color=False, width=200)
        assert "output unreachable: device do1 is disabled" in text, text
        [panel] = health_view(gateway.loaded, gateway.bus_loops, gateway.core.planner,
                              gateway.driver, 0.0).outputs  # the panel's outputs table
        assert panel.failed and panel.error == state.last_error


@pytest.mark.slow
async def test_a_clean_stop_does_not_wait_for_an_unreachable_output(tmp_path: Path) -> None:
    """A stop writes every output its stop state and waits, bounded, for the confirmations;
    an output no bus loop carries is never written, so there is nothing to wait for (the stop
    used to wait out its whole bound for it). On a clock that does not move, the old wait
    never ended."""
    async with running_without_do1(tmp_path) as (_site, gateway):
        assert not gateway.driver.reachable("siren")
        await asyncio.wait_for(leave_outputs_safe(
            gateway.loaded, gateway.core, gateway.driver, ManualClock(),
            lambda events: None), 5)
