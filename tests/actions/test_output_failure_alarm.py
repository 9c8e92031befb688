"""Through the whole daemon: a relay module that stops answering while an alarm demands its
siren raises the output's own alarm, which clears once the module answers and the siren is on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.config.loader import load_gateway_config
from gateway.daemon import Gateway
from gateway.safety import OUTPUT_FAILURE_RULE
from gateway.sim.faults import Fault, FaultMode
from gateway.sim.signals import Constant
from gateway.sim.site import SimulatedSite
from tests.helpers import until

SITE = {
    "gateway": {"id": "gw", "site": "test"},
    "rooms": [{"id": "batt", "type": "battery"}],
    "buses": [{"id": "rs485", "type": "modbus_rtu", "port": "/dev/ttyX", "baudrate": 38400,
               "timeout": "200ms", "failure": {"offline_after": 2, "backoff_max": "1s"}}],
    "devices": [
        {"id": "h2", "bus": "rs485", "unit": 1, "profile": "generic_h2_detector",
         "room": "batt", "poll_interval": "300ms"},
        {"id": "do1", "bus": "rs485", "unit": 2, "profile": "generic_relay_module",
         "room": "batt", "poll_interval": "300ms"}],
    "outputs": [{"id": "siren", "role": "siren", "device": "do1", "point": "do1",
                 "backoff": {"initial": "500ms"}}],
    "panel": {"enabled": False},
    "rules": {"parameters": [{"rule": "explosion.h2_alarm", "set": {"delay": 0}}]},
}


@pytest.mark.slow
async def test_a_dead_relay_module_raises_the_output_alarm(tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(SITE))
    async with SimulatedSite(load_gateway_config(config)) as site:
        gateway = Gateway(load_gateway_config(site.write_config(tmp_path / "sim.yaml")),
                          state_dir=tmp_path / "state")
        task = asyncio.create_task(gateway.run())
        key = AlarmKey(OUTPUT_FAILURE_RULE, "siren")
        try:
            await until(lambda: gateway.driver.state["siren"].writes > 0)
            site.set_fault("do1", Fault(mode=FaultMode.NO_REPLY))
            site.set_signal("h2.h2", Constant(value=40.0))  # the siren is wanted now
            await until(lambda: key in gateway.core.alarms.known()
                        and gateway.core.alarms.get(key).state
                        is AlarmState.ACTIVE_UNACKNOWLEDGED)
            assert gateway.core.wanted["siren"] is True
            # (the simulated fault drops replies, not writes: the coil may even be set, but
            # without a reply and a read-back the gateway cannot know; hence the alarm)
            assert gateway.driver.state["siren"].failed

            site.set_fault("do1", Fault(mode=FaultMode.NONE))
            await until(lambda: site.read_point("do1.do1") is True)
            await until(lambda: gateway.core.alarms.get(key).state
                        is AlarmState.RETURNED_UNACKNOWLEDGED)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
