"""A dead exhaust fan's alarm, acknowledged, then escalated by hydrogen (the alarm lifecycle
audit, F2), on the real safety core of the shipped telecom site fed by its simulated devices
(tests/fixtures/core_rig.py): the battery room's airflow switch never closes, a battery block
heats (explosion.cell_temperature_rise asks for the fan), `actions.output_no_feedback` goes
active (major, alarm panel only) and the operator acknowledges it; then hydrogen reaches the
warning level and the pack's escalation makes the same alarm critical, asking for the siren and
the charge inhibit. Before, nothing was journalled, the siren stayed off and the central side
still saw `major, acknowledged`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.sim.signals import Constant, Ramp
from tests.fixtures.core_rig import CoreRig

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"
FAN = ("actions.output_no_feedback", "fan-batt-3f")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[CoreRig]:
    r = CoreRig(SITE, tmp_path / "alarms.sqlite")
    r.run(10)
    yield r
    r.core.close()


def test_an_acknowledged_dead_fan_alarm_escalated_by_hydrogen_sounds_again(
        rig: CoreRig) -> None:
    rig.site.signals.set("di-tx-01.di7", Constant(value=False))  # the airflow switch
    rig.site.signals.set("bm-batt-01.block2_temperature",
                         Ramp(start=25.0, end=45.0, duration=600.0))
    rig.run(240)
    alarms = rig.core.alarms
    view = alarms.get(FAN)
    assert view.state is AlarmState.ACTIVE_UNACKNOWLEDGED and view.severity is Severity.MAJOR
    alarms.acknowledge(FAN, "op-zhang", "fan technician called")
    rig.core.plan_outputs()
    assert not rig.core.wanted["siren-3f"]
    seen = len(rig.events)

    rig.site.signals.set("h2-batt-01.h2", Constant(value=12.0))  # above the warning level
    rig.run(30)
    view = alarms.get(FAN)
    assert view.severity is Severity.CRITICAL
    assert view.state is AlarmState.ACTIVE_UNACKNOWLEDGED, "annunciated afresh"
    assert rig.core.wanted["siren-3f"] and rig.core.wanted["charge-inhibit-batt"]
    escalated = [e for e in rig.events[seen:] if (e.rule, e.subject) == FAN]
    assert [(e.previous_state, e.state, e.severity) for e in escalated] == [
        (AlarmState.ACTIVE_ACKNOWLEDGED, AlarmState.ACTIVE_UNACKNOWLEDGED, Severity.CRITICAL)]
    assert escalated[0].note == "escalated: major -> critical"
