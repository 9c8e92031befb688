"""An interlock judges its blocker by the field, not only by the plan (gateway.actions.field):
the exhaust fan must not run while the clean-agent discharge (an `hvac_stop` relay) is on. A
discharge relay welded on while commanded off — the driver reads it back on after writing it
off, the module's polls show it on — keeps the fan off when hydrogen asks for it, and the panel
and status say why; once the contact is released the fan runs. Unknown is not on: a module
that is offline shows nothing. Supervision feedback counts the same way."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.alarms.lifecycle import AlarmKey
from gateway.config.loader import load_gateway_config
from gateway.daemon import Gateway
from gateway.field.sample import Quality
from gateway.ops.status_report import build_status_report
from gateway.ops.status_text import render_status
from gateway.sim.faults import Fault, FaultMode
from gateway.sim.signals import Constant
from gateway.sim.site import SimulatedSite
from gateway.status import health_view
from tests.actions.test_driver import Rig, open_rig, settle
from tests.fixtures.core_rig import CoreRig
from tests.helpers import until

FAN, AGENT = "fan", "agent-release"
FAN_COIL, AGENT_COIL, AGENT_SWITCH = "do1.do3", "do1.do5", "di1.di7"
REASON = "no exhaust while the agent holds the room"
SITE: dict[str, Any] = {
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
        {"id": FAN, "role": "exhaust_fan", "device": "do1", "point": "do3"},
        {"id": AGENT, "role": "hvac_stop", "device": "do1", "point": "do5",
         "backoff": {"initial": "500ms", "max": "1s"}}],
    "interlocks": [{"output": FAN, "while_on": AGENT, "reason": REASON}],
    "panel": {"enabled": False},
    "rules": {"parameters": [{"rule": "explosion.h2_alarm", "set": {"delay": 0}}]},
}
H2_ALARM = AlarmKey("explosion.h2_alarm", "h2.h2")


def field_lines(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.getMessage().startswith(f"event={event} output={FAN} ")]


@pytest.mark.slow
async def test_a_discharge_relay_stuck_on_keeps_the_fan_off_until_released(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Through the whole daemon against the simulated site: the discharge relay's contact is
    welded on before the gateway starts, so the gateway's off write reads back on. Hydrogen
    then asks for the fan: the fan stays off (never written on) as long as the contact holds,
    blocked by the discharge `running in the field`, logged once; released, the next back-off
    step writes the discharge off, it reads back off, and the fan runs (the end logged once).
    A config apply in between changes nothing. Before the field counted, the fan ran at once:
    the plan had the discharge off."""
    caplog.set_level(logging.INFO, logger="roomwarden.actions")
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(SITE))
    async with SimulatedSite(load_gateway_config(config)) as site:
        site.stick(AGENT_COIL, True)
        gateway = Gateway(load_gateway_config(site.write_config(tmp_path / "sim.yaml")),
                          state_dir=tmp_path / "state")
        task = asyncio.create_task(gateway.run())
        try:
            agent = gateway.driver.state[AGENT]
            await until(lambda: "read back True after writing False" in (agent.last_error
                                                                        or ""),
                        what="the discharge's off write read back on")
            assert agent.commanded is False and not gateway.core.wanted[AGENT]

            site.set_signal("h2.h2", Constant(value=40.0))  # hydrogen: the fan is wanted
            plan = gateway.core.planner.state[FAN]
            await until(lambda: H2_ALARM in gateway.core.alarms.known()
                        and plan.demanded_by == [str(H2_ALARM)], what="the h2 alarm")
            loop = asyncio.get_running_loop()
            held_until = loop.time() + 2.0
            while loop.time() < held_until:  # rounds go on, the contact holds: the fan waits
                assert not gateway.core.wanted[FAN] and plan.blocker == AGENT, plan
                assert site.read_point(FAN_COIL) is False
                await asyncio.sleep(0.05)
            assert plan.blocked_by in [f"{AGENT} (running in the field: {why})"
                                       for why in ("read back on", "polled on")]
            assert not any(e.value for e in site.log("do1")
                           if e.point == FAN_COIL and e.kind == "write"), "never written on"
            [line] = [o for o in build_status_report(gateway).outputs if o.id == FAN]
            assert line.blocked_by == plan.blocked_by and not line.wanted
            assert line.block_reason == REASON  # the interlock's `reason`, as documented
            text = render_status(build_status_report(gateway), color=False, width=200)
            assert f"blocked by {AGENT} (running in the field: " in text, text
            assert f") — {REASON}" in text, text
            [panel] = [o for o in health_view(gateway.loaded, gateway.bus_loops,
                                              gateway.core.planner, gateway.driver,
                                              0.0).outputs if o.id == FAN]
            assert panel.blocked_by == plan.blocked_by and panel.block_reason == REASON
            [began] = field_lines(caplog, "interlock_field_block")
            assert f"blocker={AGENT}" in began
            assert field_lines(caplog, "interlock_field_block_ended") == []

            # a config apply (the same config again): the new core still sees the field
            await gateway.reconfigure(load_gateway_config(tmp_path / "sim.yaml"), version=2,
                                      sha256="0" * 64)
            plan = gateway.core.planner.state[FAN]
            agent = gateway.driver.state[AGENT]
            for _ in range(20):
                await asyncio.sleep(0.05)
                assert not gateway.core.wanted[FAN] and plan.blocker == AGENT, plan
                assert site.read_point(FAN_COIL) is False
            assert len(field_lines(caplog, "interlock_field_block")) == 1, "logged once"

            site.stick(AGENT_COIL, None)  # the contact released
            await until(lambda: site.read_point(FAN_COIL) is True, 10.0,
                        "the fan running once the discharge reads back off")
            assert not agent.failed and agent.confirmed is False
            assert gateway.core.wanted[FAN] and plan.blocked_by is None
            assert len(field_lines(caplog, "interlock_field_block")) == 1
            [ended] = field_lines(caplog, "interlock_field_block_ended")
            assert f"blocker={AGENT}" in ended
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@pytest.mark.slow
async def test_the_driver_shows_a_welded_relay_on_and_an_offline_module_as_unknown(
        tmp_path: Path) -> None:
    """`OutputDriver.seen_on` against the simulated relay module (tests/actions/test_driver's
    rig: siren on do1, NC fan on do3): a relay stuck on after an off write is `read back on`,
    then `polled on` by the module's next poll; a failed poll tells nothing (the read-back
    stands); its module offline, it is unknown and not shown; back, polled on again; mended
    and written off, shown off."""
    async with open_rig(tmp_path) as rig:
        await _welded(rig)


async def _welded(rig: Rig) -> None:
    driver, health = rig.driver, rig.loop.stats.device_health["do1"]
    rig.driver.apply({"siren": False, "fan": False})
    await settle(rig, "siren")
    await settle(rig, "fan")
    assert driver.seen_on(["siren", "fan"]) == {}  # both off, read back so
    writes = driver.state["siren"].writes
    rig.site.stick("do1.do1", True)
    rig.driver.apply({"siren": True})
    await settle(rig, "siren", after=writes)
    rig.driver.apply({"siren": False})  # the siren's contact welded: it does not drop
    await settle(rig, "siren", after=writes + 1)
    state = driver.state["siren"]
    assert state.failed and state.seen is True and state.commanded is False
    assert driver.seen_on(["siren"])["siren"] in ("read back on", "polled on")
    await until(lambda: driver.seen_on(["siren"]) == {"siren": "polled on"}, 5.0,
                "the module's poll of the welded coil")

    rig.site.set_fault("do1", Fault(mode=FaultMode.NO_REPLY))
    await until(lambda: health.consecutive_failures >= 1, 5.0, "a failed poll of do1")
    assert health.online is True
    assert rig.driver.latest.latest["do1.do1"].quality is not Quality.GOOD
    assert driver.seen_on(["siren"]) == {"siren": "read back on"}, "a failed poll: no news"
    await until(lambda: health.online is False, 5.0, "do1 offline")
    assert driver.seen_on(["siren", "fan"]) == {}, "unknown is not on"
    rig.site.set_fault("do1", Fault(mode=FaultMode.NONE))
    await until(lambda: driver.seen_on(["siren"]) == {"siren": "polled on"}, 10.0,
                "do1 answering again, the coil still on")

    rig.site.stick("do1.do1", None)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while driver.seen_on(["siren"]):  # the back-off's next step writes it off
        assert loop.time() < deadline, state
        rig.driver.apply({"siren": False})
        await asyncio.sleep(0.05)
    assert rig.site.read_point("do1.do1") is False


class FeedbackRig(CoreRig):
    """The safety core on a manual clock over the simulated site (no output driver: what the
    field shows comes from supervision alone); the discharge has a pressure switch."""

    def __init__(self, tmp: Path) -> None:
        site: dict[str, Any] = yaml.safe_load(yaml.safe_dump(SITE))
        site["outputs"][1]["feedback"] = {"device": "di1", "point": "di7", "within": "5s"}
        path = tmp / "site.yaml"
        path.write_text(yaml.safe_dump(site))
        super().__init__(path, tmp / "alarms.sqlite")


def test_a_discharge_whose_pressure_switch_shows_it_acting_keeps_the_fan_off(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The discharge is commanded off but its pressure switch shows it acting (released by
    hand at the panel): the fan that hydrogen asks for stays off, blocked by the feedback, from
    the first round — not only once `within` has raised the unexpected-feedback alarm —; the
    switch back to normal, the fan runs."""
    caplog.set_level(logging.INFO, logger="roomwarden.actions")
    rig = FeedbackRig(tmp_path)
    try:
        rig.run(3)
        rig.site.signals.set(AGENT_SWITCH, Constant(value=True))
        rig.site.signals.set("h2.h2", Constant(value=40.0))
        rig.run(2)
        plan = rig.core.planner.state[FAN]
        assert plan.demanded_by == [str(H2_ALARM)] and not rig.core.wanted[AGENT]
        assert not rig.core.wanted[FAN]
        assert plan.blocked_by == (f"{AGENT} (running in the field: feedback {AGENT_SWITCH} "
                                   "shows it acting)")
        rig.run(10)
        assert not rig.core.wanted[FAN] and len(field_lines(caplog,
                                                            "interlock_field_block")) == 1
        rig.site.signals.set(AGENT_SWITCH, Constant(value=False))
        rig.run(2)
        assert rig.core.wanted[FAN] and plan.blocked_by is None
        assert len(field_lines(caplog, "interlock_field_block_ended")) == 1
    finally:
        rig.core.close()
