"""A hold until reset that an interlock suspends (the output chain audit, F6), on the real
safety core of the shipped datacenter site fed by its simulated devices on a manual clock: the
ESS exhaust fan purges off-gas and is held on until an operator resets it
(`restore_on_clear: false`); it is interlocked off while the HVAC stop (fire damper) is on,
which the rack BMS's fire input switches on. The fire holds the fan off without ending its
hold — journalled as a suspension —, the suspension survives a restart without being
journalled again, and once the fire alarm is reset the fan runs again, journalled as resumed;
only the operator's reset of the fan ends its hold."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.alarms.events import OUTPUT_RULE, AlarmEvent
from gateway.contract.commands import AlarmRef
from gateway.operator.commands import OperatorCommands
from gateway.safety import SafetyCore
from gateway.sim.signals import Constant
from tests.fixtures.core_rig import CoreRig

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "datacenter_lithium_room.yaml"
FAN, HVAC = "fan-ess-1", "hvac-stop-ess"
OFFGAS, BMS_ALARMS = "offgas-ess-01.co", "bms-rack-1.alarms"
FIRE = AlarmRef(rule="explosion.bms_fire_input", subject="bms-rack-1")
FIRE_INPUT = 1 << 16  # the alarm word's fire_input bit


def site_with_interlock(tmp: Path) -> Path:
    data: dict[str, Any] = yaml.safe_load(SITE.read_text(encoding="utf-8"))
    for output in data["outputs"]:
        if output["id"] == FAN:
            output.update(restore_on_clear=False, min_on="0s")
    data["outputs"].append({"id": HVAC, "role": "hvac_stop", "device": "do-ess-01",
                            "point": "do6", "rooms": ["ess-a1"]})
    data["interlocks"] = [{"output": FAN, "while_on": HVAC,
                           "reason": "no exhaust during a clean-agent discharge"}]
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


class Rig(CoreRig):
    def __init__(self, tmp: Path) -> None:
        super().__init__(site_with_interlock(tmp), tmp / "alarms.sqlite")
        self.commands = self._commands()

    def _commands(self) -> OperatorCommands:
        def after(events: list[AlarmEvent]) -> None:
            self.core.plan_outputs()
            self.site.drive(self.core.wanted)
            self.events += [*events, *self.core.take_output_events()]

        return OperatorCommands(lambda: self.core.alarms, self.clock, after,
                                planner=lambda: self.core.planner)

    def restart(self) -> None:
        self.core.close()
        self.core = SafetyCore(self.loaded, self.clock, self.journal)
        self.commands = self._commands()

    def notes(self) -> list[str]:
        return [e.note or "" for e in self.core.alarms.events_since(0)
                if e.rule == OUTPUT_RULE and e.subject == FAN]

    def fan(self) -> bool:
        return self.core.wanted[FAN]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    r.run(5)
    yield r
    r.core.close()


def test_an_interlock_suspends_the_hold_and_the_fan_runs_again_after_the_fire(
        rig: Rig) -> None:
    rig.site.signals.set(OFFGAS, Constant(value=120.0))
    rig.run(15)
    rig.site.signals.set(OFFGAS, Constant(value=0.0))
    rig.run(15)
    assert rig.fan() and FAN in rig.core.planner.held(), "held until reset"
    assert len(rig.notes()) == 1 and rig.notes()[0].startswith("held until reset")

    rig.site.signals.set(BMS_ALARMS, Constant(value=FIRE_INPUT))
    rig.run(5)
    assert rig.core.wanted[HVAC] and not rig.fan(), "interlocked off during the discharge"
    assert FAN in rig.core.planner.held(), "the hold is suspended, not ended"
    assert FAN in rig.core.alarms.output_holds()
    assert rig.core.planner.state[FAN].blocked_by == HVAC
    assert rig.notes()[1:] == [f"suspended: interlocked off while {HVAC} is on (no exhaust "
                               "during a clean-agent discharge); still held until reset"]

    rig.restart()  # a power cut during the discharge
    rig.run(3)
    assert FAN in rig.core.planner.held() and not rig.fan()
    assert len(rig.notes()) == 2, "the restart journals neither the hold nor its suspension"

    rig.site.signals.set(BMS_ALARMS, Constant(value=0))
    rig.run(5)
    assert not rig.fan(), "the fire alarm latches: the HVAC stays stopped until it is reset"
    rig.commands.reset(FIRE, "Li Na", "fire service: room safe")
    rig.run(2)
    assert not rig.core.wanted[HVAC]
    assert rig.fan(), "the fan runs again: nobody reset it"
    assert rig.notes()[2:] == ["resumed: no interlock holds it off; on again until reset"]

    rig.commands.reset_output(FAN, "Li Na", "room vented")
    rig.run(2)
    assert not rig.fan() and FAN not in rig.core.planner.held()
    assert rig.notes()[3:] == ["reset: room vented"]
