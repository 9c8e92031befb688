"""Two exhaust fans on one airflow switch (one duct, or a copy-paste slip), through the whole
daemon against the simulated site: both are supervised by the switch. The output chain audit
(F3): the supervisor mapped each feedback point to one output, so only the last fan raised
`actions.output_no_feedback`; the other fan (and its critical escalation) stayed silent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from gateway.actions.supervision import NO_FEEDBACK_RULE
from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.config.loader import load_gateway_config
from gateway.daemon import Gateway
from gateway.sim.signals import Constant
from gateway.sim.site import SimulatedSite
from tests.helpers import until

AIRFLOW = {"device": "di1", "point": "di7", "within": "1s"}
SITE = {
    "gateway": {"id": "gw", "site": "test"},
    "rooms": [{"id": "batt", "type": "battery"}],
    "buses": [{"id": "rs485", "type": "modbus_rtu", "port": "/dev/ttyX", "baudrate": 38400,
               "timeout": "200ms", "failure": {"offline_after": 2, "backoff_max": "1s"}}],
    "devices": [
        {"id": "h2", "bus": "rs485", "unit": 1, "profile": "generic_h2_detector",
         "room": "batt", "poll_interval": "300ms"},
        {"id": "do1", "bus": "rs485", "unit": 2, "profile": "generic_relay_module",
         "room": "batt", "poll_interval": "300ms"},
        {"id": "di1", "bus": "rs485", "unit": 3, "profile": "generic_di_module",
         "room": "batt", "poll_interval": "300ms"}],
    "outputs": [
        {"id": "fan-a", "role": "exhaust_fan", "device": "do1", "point": "do3",
         "feedback": AIRFLOW},
        {"id": "fan-b", "role": "exhaust_fan", "device": "do1", "point": "do4",
         "feedback": AIRFLOW}],
    "panel": {"enabled": False},
    "rules": {"parameters": [{"rule": "explosion.h2_alarm", "set": {"delay": 0}},
                             {"rule": "explosion.h2_warning", "set": {"delay": 0}}]},
}


@pytest.mark.slow
async def test_both_fans_on_one_airflow_switch_are_supervised(tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(SITE))
    async with SimulatedSite(load_gateway_config(config)) as site:
        gateway = Gateway(load_gateway_config(site.write_config(tmp_path / "sim.yaml")),
                          state_dir=tmp_path / "state")
        task = asyncio.create_task(gateway.run())
        keys = [AlarmKey(NO_FEEDBACK_RULE, fan) for fan in ("fan-a", "fan-b")]

        def states() -> list[AlarmState | None]:
            known = gateway.core.alarms.known()
            return [gateway.core.alarms.get(k).state if k in known else None for k in keys]

        try:
            await asyncio.wait_for(gateway.started.wait(), 10)
            site.set_signal("di1.di7", Constant(value=False))  # the duct's air does not move
            site.set_signal("h2.h2", Constant(value=40.0))     # 40 % LEL: both fans wanted
            await until(lambda: gateway.core.wanted.get("fan-a") and
                        gateway.core.wanted.get("fan-b"), what="both fans wanted")
            await until(lambda: site.read_point("do1.do3") is True and
                        site.read_point("do1.do4") is True, what="both fan coils on")
            # neither fan moves air: each raises its own alarm, escalated under hydrogen
            await until(lambda: states() == [AlarmState.ACTIVE_UNACKNOWLEDGED] * 2,
                        what=f"both fans' no-feedback alarms (have {states()})")
            for key in keys:
                assert gateway.core.alarms.get(key).severity == "critical", key
            # the air moves: the one switch answers for both fans
            site.set_signal("di1.di7", Constant(value=True))
            await until(lambda: states() == [AlarmState.RETURNED_UNACKNOWLEDGED] * 2,
                        what=f"both fans' alarms returned (have {states()})")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
