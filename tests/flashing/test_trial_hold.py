"""The trial hold (gateway.flashing.trial) against the real alarm manager: whatever a held
trouble alarm did during a trial, committing replays it exactly as the manager would have seen
it — same transitions, same times, same final state (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alarms.journal import MEMORY, Journal
from gateway.alarms.lifecycle import AlarmKey
from gateway.alarms.manager import AlarmManager
from gateway.alarms.types import Evaluation, Severity
from gateway.clock import ManualClock
from gateway.flashing.trial import MAX_CHANGES, TrialHold, releases_before
from tests import shipped

# The shipped packs: tests/shipped.py (loaded on first use, once per process).
KEYS = [AlarmKey("sensor_health.device_offline", "th-1"),
        AlarmKey("actions.output_failure", "siren-3f"),
        AlarmKey("sensor_health.stale", "meter-1")]

steps = st.lists(st.tuples(st.floats(0.05, 30.0), st.sampled_from(range(len(KEYS))),
                           st.booleans()), min_size=1, max_size=14)


def manager(clock: ManualClock) -> AlarmManager:
    return AlarmManager(Journal(MEMORY, clock=clock), clock)


def evaluation(key: AlarmKey, active: bool, clock: ManualClock) -> Evaluation:
    return Evaluation(rule=key.rule, subject=key.subject, active=active, value=active,
                      severity=Severity.MAJOR, ts=clock.now_ns(), title=str(key))


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(steps)
def test_a_commit_replays_what_was_held_as_it_happened(script: list[tuple[float, int, bool]]
                                                       ) -> None:
    direct_clock, held_clock = ManualClock(), ManualClock()
    direct, held = manager(direct_clock), manager(held_clock)
    hold = TrialHold(held_clock)
    expected = []
    changes: dict[AlarmKey, int] = {}
    last: dict[AlarmKey, bool] = {}
    for dt, index, active in script:
        key = KEYS[index]
        direct_clock.advance(dt)
        held_clock.advance(dt)
        # a running manager ends chattering at the hold time, not at the next evaluation
        expected += releases_before(direct, direct_clock.monotonic())
        expected += direct.observe([evaluation(key, active, direct_clock)])
        passed = hold.admit([evaluation(key, active, held_clock)], held,
                                tuple(shipped.packs().values()))
        assert held.observe(passed) == []  # nothing of it reaches the journal during the trial
        if last.get(key, False) != active:
            changes[key] = changes.get(key, 0) + 1
            last[key] = active
    held_clock.advance(5.0)
    direct_clock.advance(5.0)
    expected += releases_before(direct, direct_clock.monotonic())
    replayed = hold.release(held)
    if all(n <= MAX_CHANGES for n in changes.values()):
        assert [(e.key, e.state, e.previous_state, e.ts, e.kind) for e in replayed] == \
            [(e.key, e.state, e.previous_state, e.ts, e.kind) for e in expected]
    for key in KEYS:  # whatever was cut, the alarm ends where its condition ends
        if key in direct.known():
            d, h = direct.get(key), held.get(key)
            assert h.condition == d.condition
            if changes.get(key, 0) <= MAX_CHANGES:
                assert (h.state, h.activated_ns) == (d.state, d.activated_ns)
        else:
            assert key not in held.known()
