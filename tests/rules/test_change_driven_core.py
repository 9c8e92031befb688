"""The safety core's deadlines (`SafetyCore.next_deadline`) drive an incident on the shipped
telecom site with a manual clock, as the evaluator does: rounds only when samples arrive or
the reported deadline comes. Hydrogen rises: the alarm comes at its on-delay, the battery
room's fan is commanded on; no airflow: the fan's own alarm at its 20 s feedback limit; the
hydrogen clears: the fan is held for its `min_on` of 5 minutes and released exactly then; a
shelve ends at its expiry."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.field.sample import Quality, Sample, Value
from gateway.safety import SafetyCore
from tests import shipped

REPO = Path(__file__).resolve().parents[2]
TELECOM = "telecom_equipment_room"
"""Loaded on first use, once per process (tests/shipped.py)."""
H2 = ("explosion.h2_alarm", "h2-batt-01.h2")
NO_AIRFLOW = ("actions.output_no_feedback", "fan-batt-3f")


@pytest.fixture
def core(tmp_path: Path) -> Iterator[SafetyCore]:
    clock = ManualClock()
    safety = SafetyCore(shipped.site(TELECOM), clock, tmp_path / "journal.sqlite")
    yield safety
    safety.close()


def feed(core: SafetyCore, values: Mapping[str, Value]) -> None:
    now = core.clock.now_ns()
    core.ingest([Sample(p, v, now, Quality.GOOD) for p, v in values.items()])


def active(core: SafetyCore) -> set[tuple[str, str]]:
    return {(v.key.rule, v.key.subject) for v in core.alarms.active() if v.condition}


def to_deadline(core: SafetyCore) -> float:
    """Move the clock to the core's next deadline and run a round there."""
    clock = core.clock
    assert isinstance(clock, ManualClock)
    due = core.next_deadline()
    assert due is not None and due > clock.monotonic()
    clock.advance(due - clock.monotonic())
    core.step()
    return due


def test_deadlines_drive_delays_feedback_min_on_and_shelves(core: SafetyCore) -> None:
    quiet: dict[str, Value] = {"h2-batt-01.online": True, "h2-batt-01.h2": 0.0,
                               "di-tx-01.online": True, "di-tx-01.di7": False}
    feed(core, quiet)
    core.step()
    assert H2 not in active(core) and not core.wanted["fan-batt-3f"]

    feed(core, {"h2-batt-01.h2": 30.0})  # above 25 %LEL, on-delay 2 s
    start = core.clock.monotonic()
    core.step()
    assert H2 not in active(core)
    assert to_deadline(core) == pytest.approx(start + 2.0)  # the on-delay, not a tick later
    assert H2 in active(core) and core.wanted["fan-batt-3f"]

    fan_on = core.clock.monotonic()
    feed(core, {"di-tx-01.di7": False})  # the airflow switch keeps saying no
    core.step()
    while NO_AIRFLOW not in active(core):
        assert to_deadline(core) <= fan_on + 20.0 + 1e-6
    assert core.clock.monotonic() == pytest.approx(fan_on + 20.0)

    feed(core, {"h2-batt-01.h2": 0.0, "di-tx-01.di7": True})  # gas gone, airflow back
    core.step()
    while H2 in active(core):
        to_deadline(core)  # the rule's off-delay, if it has one
    assert core.wanted["fan-batt-3f"]  # held by min_on 5 min from when it went on
    while core.wanted["fan-batt-3f"]:
        to_deadline(core)
    assert core.clock.monotonic() == pytest.approx(fan_on + 300.0)

    # a shelve ends at its expiry: the core's next deadline is that moment
    feed(core, {"h2-batt-01.h2": 30.0})
    core.step()
    while H2 not in active(core):
        to_deadline(core)
    until = core.clock.now_ns() + 60 * 1_000_000_000
    core.alarms.acknowledge(H2, "tester")  # (a critical alarm is seen before it is shelved)
    core.alarms.shelve(H2, "tester", until, "calibration")
    shelved_at = core.clock.monotonic()
    due = core.next_deadline()
    assert due is not None and due <= shelved_at + 60.0 + 1e-6
    while core.alarms.get(H2).shelf is not None:
        to_deadline(core)
    assert core.clock.monotonic() == pytest.approx(shelved_at + 60.0)
