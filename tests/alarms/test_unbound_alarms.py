"""An alarm the config no longer has returns to normal (the alarm lifecycle audit, F4), on the
real safety core and its SQLite journal with a manual clock.

A config apply or a restart on a config that disables a rule, removes a device or renames it
left that rule's held alarm active for ever: no binding judges it again, its outputs stayed on
(a critical hydrogen alarm's charge inhibit and siren) and its Reset was refused while its
condition was held. Now it returns to normal with one system event — at a start at once, after
an apply once the config is no longer on trial — while an alarm the config still binds is held
as ever, and a rollback finds the alarm as it was (DESIGN principle 7)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.actions.supervision import NO_FEEDBACK_RULE
from gateway.alarms.events import SYSTEM_ACTOR, AlarmEvent, EventKind
from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.clock import ManualClock
from gateway.config.loader import LoadedConfig, load_gateway_config
from gateway.field.sample import Quality, Sample, Value
from gateway.flashing.trial import TrialHold
from gateway.safety import OUTPUT_FAILURE_RULE, SafetyCore

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"
H2 = AlarmKey("explosion.h2_alarm", "h2-batt-01.h2")
H2_RENAMED = AlarmKey("explosion.h2_alarm", "h2-batt-01b.h2")
WARNING = AlarmKey("explosion.h2_warning", "h2-batt-01.h2")
ONLY_H2 = ("charge-inhibit-batt", "siren-3f")
"""Outputs only the hydrogen alarm asks for here (the fan: the warning too, and `min_on`)."""
AU, N = AlarmState.ACTIVE_UNACKNOWLEDGED, AlarmState.NORMAL
Change = Callable[[dict[str, Any]], None]


def site(tmp: Path, name: str, change: Change | None = None) -> LoadedConfig:
    """The telecom site, changed by `change`, written to `tmp` and loaded as a gateway would."""
    data = yaml.safe_load(SITE.read_text(encoding="utf-8"))
    if change is not None:
        change(data)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_gateway_config(path)


def disable_h2_alarm(data: dict[str, Any]) -> None:
    data.setdefault("rules", {})["disabled"] = ["explosion.h2_alarm"]


def remove_detector(data: dict[str, Any]) -> None:
    data["devices"] = [d for d in data["devices"] if d["id"] != "h2-batt-01"]


def rename_detector(data: dict[str, Any]) -> None:
    next(d for d in data["devices"] if d["id"] == "h2-batt-01")["id"] = "h2-batt-01b"


def slower_th(data: dict[str, Any]) -> None:
    next(d for d in data["devices"] if d["id"] == "th-tx-b06")["poll_interval"] = "7s"


def feed(core: SafetyCore, clock: ManualClock, values: dict[str, Value], seconds: int,
         trial: TrialHold | None = None) -> list[AlarmEvent]:
    """Feed good samples and run a round once a second; the events."""
    seen: list[AlarmEvent] = []
    for _ in range(seconds):
        core.ingest([Sample(p, v, clock.now_ns(), Quality.GOOD) for p, v in values.items()])
        seen += core.step(trial=trial)
        clock.advance(1.0)
    return seen


def about(events: list[AlarmEvent], key: AlarmKey) -> list[tuple[object, ...]]:
    return [(e.kind, e.previous_state, e.state, e.actor, e.note) for e in events
            if (e.rule, e.subject) == key]


def retired(key: AlarmKey, was: AlarmState, why: str) -> list[tuple[object, ...]]:
    """The one event of an alarm that returned because the config no longer has it."""
    return [(EventKind.ALARM, was, N, SYSTEM_ACTOR, f"returned: no longer in the config ({why})")]


def raise_h2(tmp: Path, clock: ManualClock, loaded: LoadedConfig | None = None) -> SafetyCore:
    core = SafetyCore(loaded or site(tmp, "running"), clock, tmp / "alarms.sqlite",
                      config_version=1)
    feed(core, clock, {"h2-batt-01.h2": 30.0}, 8)  # past both on-delays (warning: 5 s)
    assert core.alarms.get(H2).state is AU and core.alarms.get(WARNING).state is AU
    assert all(core.wanted[o] for o in (*ONLY_H2, "fan-batt-3f"))
    return core


def apply(tmp: Path, previous: SafetyCore, loaded: LoadedConfig, version: int,
          earlier: SafetyCore | None = None) -> SafetyCore:
    """What `Gateway.reconfigure` does with the safety core."""
    core = SafetyCore(loaded, previous.clock, tmp / "alarms.sqlite", open_alarms=False,
                      config_version=version)
    core.take_over(previous, earlier)
    previous.close()
    return core


def active(core: SafetyCore) -> set[AlarmKey]:
    return {v.key for v in core.alarms.active()}


@pytest.mark.parametrize("change", [disable_h2_alarm, remove_detector],
                         ids=["rule disabled", "detector removed"])
def test_an_apply_that_drops_the_rule_or_the_detector_returns_the_alarm_to_normal(
        tmp_path: Path, change: Change) -> None:
    clock = ManualClock()
    core = raise_h2(tmp_path, clock)
    warning_since = core.alarms.get(WARNING).activated_ns
    seq = core.alarms.last_seq
    new = apply(tmp_path, core, site(tmp_path, "new", change), version=2)
    feed(new, clock, {}, 2)  # the new config's first rounds, before its loops read anything
    journalled = new.alarms.events_since(seq)
    assert about(journalled, H2) == retired(H2, AU, "v2")
    assert H2 not in active(new) and H2 not in new.alarms.known()
    assert not any(new.wanted[o] for o in ONLY_H2), new.wanted
    if change is disable_h2_alarm:  # the warning is still bound: held as it was, no event
        assert about(journalled, WARNING) == []
        view = new.alarms.get(WARNING)
        assert view.state is AU and view.activated_ns == warning_since
        assert new.wanted["fan-batt-3f"]
    else:  # the detector is gone: its warning goes the same way
        assert about(journalled, WARNING) == retired(WARNING, AU, "v2")
    # hydrogen there or not, nothing judges the old alarm again; the Reset is not needed
    feed(new, clock, {"h2-batt-01.h2": 0.0}, 5)
    assert H2 not in active(new)
    new.close()

    # a restart on the same config: gone for good, no second event
    seq = new.alarms.last_seq
    again = SafetyCore(site(tmp_path, "new", change), ManualClock(clock.now_ns(), 5.0),
                       tmp_path / "alarms.sqlite", config_version=2)
    assert isinstance(again.clock, ManualClock)
    feed(again, again.clock, {}, 3)
    assert H2 not in again.alarms.known()
    assert about(again.alarms.events_since(seq), H2) == []
    assert not any(again.wanted[o] for o in ONLY_H2)
    again.close()


def test_a_restart_on_a_config_without_the_rule_returns_its_alarm_to_normal(
        tmp_path: Path) -> None:
    """The installed config changed while the gateway was down (or its last-known-good
    differs): the journal restores the alarm, the config has no binding for it."""
    clock = ManualClock()
    core = raise_h2(tmp_path, clock)
    seq = core.alarms.last_seq
    core.close()
    again = SafetyCore(site(tmp_path, "new", disable_h2_alarm), ManualClock(clock.now_ns(), 5.0),
                       tmp_path / "alarms.sqlite", config_version=3)
    assert about(again.alarms.events_since(seq), H2) == retired(H2, AU, "v3, at start")
    assert H2 not in again.alarms.known()
    assert isinstance(again.clock, ManualClock)
    feed(again, again.clock, {}, 2)
    assert not any(again.wanted[o] for o in ONLY_H2)
    assert again.alarms.get(WARNING).state is AU  # still bound: restored and held
    again.close()


def test_a_renamed_detector_retires_the_old_subjects_alarm_and_judges_the_new_one_afresh(
        tmp_path: Path) -> None:
    clock = ManualClock()
    core = raise_h2(tmp_path, clock)
    old_since = core.alarms.get(H2).activated_ns
    assert old_since is not None
    seq = core.alarms.last_seq
    new = apply(tmp_path, core, site(tmp_path, "renamed", rename_detector), version=2)
    began = clock.now_ns()
    feed(new, clock, {"h2-batt-01b.h2": 30.0}, 1)
    assert about(new.alarms.events_since(seq), H2) == retired(H2, AU, "v2")
    assert H2_RENAMED not in active(new)  # its own on-delay (2 s) runs first
    feed(new, clock, {"h2-batt-01b.h2": 30.0}, 3)
    view = new.alarms.get(H2_RENAMED)
    assert view.state is AU and view.activated_ns is not None
    assert view.activated_ns >= began + 2_000_000_000 > old_since
    assert H2 not in active(new)  # one detector, one hydrogen alarm
    assert all(new.wanted[o] for o in ONLY_H2)  # the new subject's own demands
    events = feed(new, clock, {"h2-batt-01b.h2": 0.0}, 2)
    assert about(events, H2_RENAMED)[0][1:3] == (AU, AlarmState.RETURNED_UNACKNOWLEDGED)
    new.close()


def test_a_rolled_back_apply_keeps_the_alarm_and_retires_what_only_the_candidate_had(
        tmp_path: Path) -> None:
    """An apply is on trial until committed (gateway.flashing.apply): the candidate renames the
    detector, the trial fails and the config that ran before comes back. The old subject's
    alarm is not retired while the candidate is on trial, so after the rollback it is exactly
    as it was (state, activation time, outputs, no event) and its rule judges it again; the
    alarm only the candidate raised (the new subject's) has no binding after the rollback and
    returns to normal once the trial is over."""
    clock = ManualClock()
    running = site(tmp_path, "running")
    before = raise_h2(tmp_path, clock, running)
    since = before.alarms.get(H2).activated_ns
    seq = before.alarms.last_seq
    trial = TrialHold(clock)
    candidate = SafetyCore(site(tmp_path, "candidate", rename_detector), clock,
                           tmp_path / "alarms.sqlite", open_alarms=False, config_version=2)
    candidate.take_over(before)  # `before` stays open: the rollback looks back to it
    feed(candidate, clock, {"h2-batt-01b.h2": 30.0}, 4, trial)
    assert candidate.alarms.get(H2).state is AU  # on trial: the old alarm is not retired
    assert candidate.alarms.get(H2_RENAMED).state is AU  # a hazard alarm is never held
    assert all(candidate.wanted[o] for o in ONLY_H2)

    back = SafetyCore(running, clock, tmp_path / "alarms.sqlite", open_alarms=False,
                      config_version=1)
    back.take_over(candidate, before)  # the rollback
    candidate.close()
    before.close()
    feed(back, clock, {"h2-batt-01.h2": 30.0}, 2, trial)
    trial.discard()  # the trial is over (Gateway.end_trial)
    events = feed(back, clock, {"h2-batt-01.h2": 30.0}, 3)
    assert about(back.alarms.events_since(seq), H2) == []
    view = back.alarms.get(H2)
    assert view.state is AU and view.activated_ns == since
    assert about(events, H2_RENAMED) == retired(H2_RENAMED, AU, "v1")
    assert H2_RENAMED not in back.alarms.known()
    assert all(back.wanted[o] for o in ONLY_H2)
    # the rule that runs again judges it as before: good data below the limit returns it
    returned = feed(back, clock, {"h2-batt-01.h2": 0.0}, 2)
    assert about(returned, H2)[0][1:3] == (AU, AlarmState.RETURNED_UNACKNOWLEDGED)
    back.close()


def test_an_apply_that_keeps_the_alarms_bindings_retires_nothing(tmp_path: Path) -> None:
    """Still bound: the hazard alarms and an output alarm of an output still there are held
    as before — same state, same activation time, no event, the same outputs."""
    clock = ManualClock()
    core = raise_h2(tmp_path, clock)
    core.step(core.output_failures({"strobe-3f": "no reply"}, clock.now_ns()))
    failure = AlarmKey(OUTPUT_FAILURE_RULE, "strobe-3f")
    kept = {k: core.alarms.get(k).activated_ns for k in (H2, WARNING, failure)}
    wanted = dict(core.wanted)
    seq = core.alarms.last_seq
    new = apply(tmp_path, core, site(tmp_path, "new", slower_th), version=2)
    assert feed(new, clock, {"h2-batt-01.h2": 30.0}, 3) == []
    assert {k: new.alarms.get(k).activated_ns for k in kept} == kept
    assert all(new.alarms.get(k).state is AU for k in kept)
    assert new.alarms.events_since(seq) == [] and new.wanted == wanted
    new.close()


def test_an_output_alarm_goes_with_its_output_or_its_feedback(tmp_path: Path) -> None:
    """The core's own alarms on an output (`actions.*`, raised outside the rule packs) are
    judged by what the config has: the output, its feedback."""
    clock = ManualClock()
    core = SafetyCore(site(tmp_path, "running"), clock, tmp_path / "alarms.sqlite")
    feed(core, clock, {"h2-batt-01.h2": 12.0, "di-tx-01.di7": False}, 30)  # fan on, no air
    core.step(core.output_failures({"strobe-3f": "no reply"}, clock.now_ns()))
    no_air = AlarmKey(NO_FEEDBACK_RULE, "fan-batt-3f")
    failure = AlarmKey(OUTPUT_FAILURE_RULE, "strobe-3f")
    assert {no_air, failure} <= active(core)
    seq = core.alarms.last_seq

    def no_feedback_no_strobe(data: dict[str, Any]) -> None:
        data["outputs"] = [o for o in data["outputs"] if o["id"] != "strobe-3f"]
        next(o for o in data["outputs"] if o["id"] == "fan-batt-3f").pop("feedback")

    new = apply(tmp_path, core, site(tmp_path, "new", no_feedback_no_strobe), version=2)
    events = feed(new, clock, {"h2-batt-01.h2": 12.0}, 1)
    assert about(events, no_air) == retired(no_air, AU, "v2")
    assert about(events, failure) == retired(failure, AU, "v2")
    assert about(new.alarms.events_since(seq), WARNING) == []  # still bound
    new.close()
