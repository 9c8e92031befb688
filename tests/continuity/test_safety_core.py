"""The safety core across a restart and a config apply, with the real alarm journal and a manual
clock: an alarm restored from the journal stays active (same activation time, no event, its
outputs still wanted) through a restart with no data yet, whether the process stopped cleanly
or died; `take_over` (a config apply) produces no event and no output change."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from gateway.alarms.lifecycle import AlarmKey, AlarmRecord, AlarmState
from gateway.clock import ManualClock
from gateway.config.loader import LoadedConfig
from gateway.config.section import replaced
from gateway.field.sample import Quality, Sample, Value
from gateway.safety import SafetyCore
from tests import shipped

REPO = Path(__file__).resolve().parents[2]
TELECOM = "telecom_equipment_room"
"""Loaded on first use, once per process (tests/shipped.py)."""
H2 = AlarmKey("explosion.h2_alarm", "h2-batt-01.h2")
FIRE = AlarmKey("fire.smoke_coincidence", "tx-3f")
HAZARD: dict[str, Value] = {"h2-batt-01.h2": 30.0, "smoke-tx-01.alarm": True,
                            "smoke-tx-02.alarm": True}


def feed(core: SafetyCore, clock: ManualClock, values: dict[str, Value], seconds: int,
         quality: Quality = Quality.GOOD) -> list[str]:
    """Feed and step once a second; the events' `rule@subject state` lines."""
    seen = []
    for _ in range(seconds):
        core.ingest([Sample(p, v, clock.now_ns(), quality) for p, v in values.items()])
        seen += [f"{e.rule}@{e.subject} {e.state}" for e in core.step()]
        clock.advance(1.0)
    return seen


def raised(tmp_path: Path, clock: ManualClock) -> SafetyCore:
    core = SafetyCore(shipped.site(TELECOM), clock, tmp_path / "alarms.sqlite")
    events = feed(core, clock, HAZARD, 8)  # past every on-delay (h2_warning: 5 s)
    assert f"{H2.rule}@{H2.subject} active_unacknowledged" in events
    assert core.alarms.get(FIRE).state is AlarmState.ACTIVE_UNACKNOWLEDGED
    assert core.wanted["siren-3f"] and core.wanted["fan-batt-3f"]
    return core


def test_a_restart_keeps_restored_alarms_active_without_data(tmp_path: Path) -> None:
    for clean in (True, False):
        clock = ManualClock()
        directory = tmp_path / ("clean" if clean else "crash")
        directory.mkdir()
        core = raised(directory, clock)
        activated = {k: core.alarms.get(k).activated_ns for k in (H2, FIRE)}
        if clean:
            core.close()  # else: the process died, the journal was committed as it went
        clock.advance(20.0)
        again = SafetyCore(shipped.site(TELECOM), ManualClock(clock.now_ns(), 5.0),
                           directory / "alarms.sqlite")
        restarted = again.clock
        assert isinstance(restarted, ManualClock)
        quiet = feed(again, restarted, {}, 10)  # no data yet: the buses are starting
        quiet += feed(again, restarted, {"h2-batt-01.h2": None}, 3, Quality.COMM_ERROR)
        quiet += feed(again, restarted, HAZARD, 5)  # the hazard is still there
        assert quiet == [], clean
        for key in (H2, FIRE):
            view = again.alarms.get(key)
            assert view.state is AlarmState.ACTIVE_UNACKNOWLEDGED
            assert view.activated_ns == activated[key]
        assert again.wanted["siren-3f"] and again.wanted["fan-batt-3f"]
        # good data below limit − deadband returns it, as ever
        assert f"{H2.rule}@{H2.subject} returned_unacknowledged" in feed(
            again, restarted, {"h2-batt-01.h2": 20.0}, 2)
        again.close()


def with_device(loaded: LoadedConfig, device_id: str, **change: object) -> LoadedConfig:
    devices = [replaced(d, **change) if d.id == device_id else d
               for d in loaded.config.devices]
    return dataclasses.replace(loaded, config=replaced(loaded.config, devices=devices))


def test_take_over_changes_no_alarm_and_no_output(tmp_path: Path) -> None:
    clock = ManualClock()
    core = raised(tmp_path, clock)
    wanted = dict(core.wanted)
    activated = {k: core.alarms.get(k).activated_ns for k in (H2, FIRE)}
    site = shipped.site(TELECOM)
    for loaded in (with_device(site, "th-tx-b06", poll_interval=7.0), site):
        new = SafetyCore(loaded, clock, tmp_path / "alarms.sqlite", open_alarms=False)
        carried, _held = new.take_over(core)
        core.close()
        assert carried == len(new.engine.bindings())
        assert feed(new, clock, {}, 3) == []  # before the new loops deliver anything
        assert feed(new, clock, HAZARD, 3) == []
        assert new.wanted == wanted
        assert {k: new.alarms.get(k).activated_ns for k in (H2, FIRE)} == activated
        core = new
    core.close()


def test_a_round_that_raises_after_the_rules_loses_no_alarm(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule engine reports a change once. A round that raises after it (a bug in the alarm
    manager, here its first `observe` of the hazard) must not lose that change: the next
    round hands it on (the evaluator runs one within a second)."""
    clock = ManualClock()
    core = SafetyCore(shipped.site(TELECOM), clock, tmp_path / "alarms.sqlite")
    assert feed(core, clock, {"smoke-tx-01.alarm": False, "smoke-tx-02.alarm": False}, 3) == []
    real = core.alarms.observe
    calls: list[int] = []

    def fails_once(evaluations: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in the alarm manager")
        return real(evaluations, **kwargs)

    monkeypatch.setattr(core.alarms, "observe", fails_once)
    core.ingest([Sample("smoke-tx-01.alarm", True, clock.now_ns(), Quality.GOOD)])
    with pytest.raises(RuntimeError):
        core.step()
    clock.advance(1.0)
    events = [f"{e.rule}@{e.subject} {e.state}" for e in core.step()]  # no new sample
    assert events == ["fire.smoke_detector@smoke-tx-01.alarm active_unacknowledged"]
    assert core.step() == []  # handed on once
    core.close()


def test_one_evaluation_the_alarm_manager_cannot_apply_costs_no_other_alarm(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the alarm manager for one alarm (here its record's set_condition raising for
    one subject) is logged and skipped: the other alarms of the same round rise, the round
    completes, and nothing is handed on again and again."""
    clock = ManualClock()
    core = SafetyCore(shipped.site(TELECOM), clock, tmp_path / "alarms.sqlite")
    assert feed(core, clock, {"smoke-tx-01.alarm": False, "smoke-tx-02.alarm": False}, 3) == []
    real = AlarmRecord.set_condition

    def broken_for_one(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.key.subject == "smoke-tx-01.alarm":
            raise RuntimeError("a bug for one alarm")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(AlarmRecord, "set_condition", broken_for_one)
    core.ingest([Sample(p, True, clock.now_ns(), Quality.GOOD)
                 for p in ("smoke-tx-01.alarm", "smoke-tx-02.alarm")])
    events = [f"{e.rule}@{e.subject} {e.state}" for e in core.step()]
    assert "fire.smoke_detector@smoke-tx-02.alarm active_unacknowledged" in events
    assert core.alarms.apply_failures == 1
    clock.advance(1.0)
    core.step()
    assert core.alarms.apply_failures == 1  # not handed on again
    core.close()
