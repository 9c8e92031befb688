"""A binding whose evaluation raises fails alone (gateway.rules.faults).

The fault is the one `make test` found on 4 Dec (a90a773): the dew point of a humidity of
5e-324 took `math.log(0)`, and the ValueError failed every rule's round for as long as the
reading lasted. `buggy_dew_point` is that code as it was, put back for these tests; with it,
every other rule must still be evaluated in the same round, the failing binding must keep its
last good evaluation, and the failure must be an alarm of its own that returns to normal when
the binding evaluates again — across a restart too."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest

from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.clock import ManualClock
from gateway.field.sample import Quality, Sample
from gateway.rules import conditions
from gateway.rules.faults import EVALUATION_FAILED_RULE, FAILED_BINDING_RETRY
from gateway.safety import SafetyCore
from tests import shipped
from tests.rules.test_engine import Site, quiet_telecom

DEW = ("environment.dew_point_allowable", "th-tx-a03")
OTHER_DEW = ("environment.dew_point_allowable", "th-tx-b06")
H2 = ("explosion.h2_alarm", "h2-batt-01.h2")
FAULT = (EVALUATION_FAILED_RULE, f"{DEW[0]}@{DEW[1]}")
POISON = {"th-tx-a03.humidity": 5e-324}


def buggy_dew_point(temperature: float, relative_humidity: float) -> float | None:
    """`conditions.dew_point` before a90a773 (ValueError for a humidity of 5e-324)."""
    if relative_humidity <= 0 or relative_humidity > 100.5 or temperature <= -conditions.MAGNUS_B:
        return None
    gamma = math.log(min(relative_humidity, 100.0) / 100.0) + \
        conditions.MAGNUS_A * temperature / (conditions.MAGNUS_B + temperature)
    return conditions.MAGNUS_B * gamma / (conditions.MAGNUS_A - gamma)


@pytest.fixture
def buggy(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError):
        buggy_dew_point(25.0, 5e-324)
    monkeypatch.setattr(conditions, "dew_point", buggy_dew_point)


@pytest.mark.usefixtures("buggy")
def test_the_other_rules_are_evaluated_in_the_round_a_binding_fails(
        caplog: pytest.LogCaptureFixture) -> None:
    site = Site()
    site.run(10, quiet_telecom())
    before = site.evaluate()[DEW]
    assert not before.active
    caplog.set_level(logging.WARNING, logger="roomwarden.rules")
    site.feed(POISON | {"h2-batt-01.h2": 30.0, "smoke-tx-01.alarm": True,
                        "smoke-tx-02.alarm": True})
    changed = {(e.rule, e.subject): e for e in site.engine.evaluate_changed()}
    fault = changed[FAULT]
    assert fault.active and str(fault.value).startswith("ValueError: math domain error")
    assert fault.room == before.room == "tx-3f"
    assert DEW not in changed  # it keeps its last good evaluation
    assert site.evaluate()[DEW] is before
    # everything else was evaluated in that round: the smoke detectors (no delay) alert
    assert changed[("fire.smoke_detector", "smoke-tx-01.alarm")].active
    assert changed[("fire.smoke_detector", "smoke-tx-02.alarm")].active
    # and while it keeps failing, the rest go on: the h2 alarm after its on-delay, the other
    # device's dew point on its own humidity
    result = site.run(8, POISON | {"h2-batt-01.h2": 30.0, "th-tx-b06.humidity": 95.0,
                                   "th-tx-b06.temperature": 30.0})
    assert result[H2].active and result[("fire.smoke_coincidence", "tx-3f")].active
    assert result[OTHER_DEW].active is False and site.engine.faults.failing
    # one log line with the traceback for the episode, however often it was tried
    # (both dew-point rules of th-tx-a03 fail: one log line each, with the traceback)
    failures = [r for r in caplog.records if "rule_evaluation_failed" in r.getMessage()]
    assert sorted(str(r.args[0]) for r in failures if isinstance(r.args, tuple)) == [
        DEW[0], "environment.dew_point_recommended"]
    assert all(r.exc_info is not None for r in failures)
    reported = {str(f["rule"]): f for f in site.engine.faults.report()}
    assert set(reported) == {DEW[0], "environment.dew_point_recommended"}
    assert int(str(reported[DEW[0]]["failures"])) >= 9
    # good data: the binding is evaluated and its failure alarm returns to normal, once
    site.feed({"th-tx-a03.humidity": 45.0})
    changed = {(e.rule, e.subject): e for e in site.engine.evaluate_changed()}
    assert changed[FAULT].active is False
    assert changed[(EVALUATION_FAILED_RULE, f"environment.dew_point_recommended@{DEW[1]}")
                   ].active is False
    assert not site.engine.faults.failing and site.evaluate()[DEW] is before  # still normal
    assert FAULT not in {(e.rule, e.subject) for e in site.engine.evaluate_changed()}
    assert any("rule_evaluation_recovered" in r.getMessage() for r in caplog.records)


@pytest.mark.usefixtures("buggy")
def test_an_active_binding_that_fails_stays_active() -> None:
    site = Site()
    hot = {"th-tx-a03.temperature": 25.0, "th-tx-a03.humidity": 80.0}
    assert site.run(70, hot)[DEW].active  # past its delay
    site.feed(POISON)
    assert FAULT in {(e.rule, e.subject) for e in site.engine.evaluate_changed()}
    result = site.run(30, POISON)
    assert result[DEW].active and len(site.engine.faults.failing) == 2


@pytest.mark.usefixtures("buggy")
def test_a_failing_binding_is_tried_again_without_a_new_sample() -> None:
    site = Site()
    site.run(3, quiet_telecom())
    site.feed(POISON)
    site.engine.evaluate_changed()
    deadline = site.engine.next_deadline()
    assert deadline is not None
    assert deadline <= site.clock.monotonic() + FAILED_BINDING_RETRY
    tried = site.engine.evaluated
    site.clock.advance(FAILED_BINDING_RETRY)
    site.engine.evaluate_changed()
    assert site.engine.evaluated > tried
    assert [f["failures"] for f in site.engine.faults.report()] == [2, 2]


@pytest.mark.usefixtures("buggy")
def test_the_failure_is_an_alarm_that_survives_a_restart_and_returns(tmp_path: Path) -> None:
    clock = ManualClock()
    core = SafetyCore(shipped.site("telecom_equipment_room"), clock, tmp_path / "alarms.sqlite")
    events: list[str] = []

    def feed(c: SafetyCore, values: dict[str, object], seconds: int) -> None:
        for _ in range(seconds):
            c.ingest([Sample(p, v, c.clock.now_ns(), Quality.GOOD)  # type: ignore[arg-type]
                      for p, v in values.items()])
            events.extend(f"{e.rule}@{e.subject} {e.state}" for e in c.step())
            assert isinstance(c.clock, ManualClock)
            c.clock.advance(1.0)

    feed(core, dict(quiet_telecom()), 5)
    feed(core, {**POISON, "h2-batt-01.h2": 30.0, "smoke-tx-01.alarm": True,
                "smoke-tx-02.alarm": True}, 8)
    key = AlarmKey(*FAULT)
    recommended = AlarmKey(EVALUATION_FAILED_RULE, f"environment.dew_point_recommended@{DEW[1]}")
    assert f"{key} active_unacknowledged" in events
    assert f"{recommended} active_unacknowledged" in events
    view = core.alarms.get(key)
    assert view.severity.value == "major" and view.room == "tx-3f" and not view.actions
    # the hazards of the same rounds sounded as ever
    assert core.alarms.get(AlarmKey(*H2)).state is AlarmState.ACTIVE_UNACKNOWLEDGED
    assert core.wanted["siren-3f"] and core.wanted["fan-batt-3f"]
    core.close()
    # a restart: the journal restores the failure alarm; the first good evaluation returns it
    clock.advance(10.0)
    again = SafetyCore(shipped.site("telecom_equipment_room"), ManualClock(clock.now_ns(), 5.0),
                       tmp_path / "alarms.sqlite")
    assert again.alarms.get(key).state is AlarmState.ACTIVE_UNACKNOWLEDGED
    events.clear()
    feed(again, {"th-tx-a03.humidity": 45.0, "th-tx-a03.temperature": 23.0}, 2)
    assert sorted(events) == [f"{key} returned_unacknowledged",
                              f"{recommended} returned_unacknowledged"]
    again.close()


def test_a_failure_alarm_of_a_binding_the_config_no_longer_has_returns_at_once() -> None:
    site = Site()
    site.run(2, quiet_telecom())
    gone = (EVALUATION_FAILED_RULE, "environment.dew_point_allowable@a-removed-device")
    assert site.engine.hold({gone: "ValueError: math domain error"}) == []
    assert site.engine.next_deadline() == site.clock.monotonic()
    [normal] = [e for e in site.engine.evaluate_changed() if e.rule == EVALUATION_FAILED_RULE]
    assert (normal.rule, normal.subject, normal.active) == (*gone, False)
    assert not site.engine.faults.orphans
