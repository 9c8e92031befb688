"""Shelves and suppressions end on time whatever the wall clock does (the clock audit): NTP
stepping a Pi's clock back a year kept a 1-minute shelf of the hydrogen alarm — and a 1-minute
suppression of a heat detector — for the year, also across a restart. They now end by the
monotonic clock too, whichever comes first; a start grants at most the length the operator
asked for. A forward step ends them early (the safe side: the alarm comes back)."""

from __future__ import annotations

import pytest

from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.alarms.manager import AlarmManager
from gateway.clock import ManualClock
from tests.alarms.conftest import MakeManager, ev

K = AlarmKey("explosion.h2_alarm", "h2-1.h2")
MINUTE = 60 * 10**9
YEAR_S = 365 * 86400.0


def hydrogen() -> list:  # type: ignore[type-arg]
    return [ev(K.rule, K.subject, value=30.0)]


def shelved_for(manager: AlarmManager, clock: ManualClock, minutes: int) -> None:
    manager.observe(hydrogen())
    manager.shelve(K, "op", clock.now_ns() + minutes * MINUTE, "nuisance")
    assert manager.get(K).state is AlarmState.SHELVED


@pytest.mark.parametrize("how", ["observe", "tick"])
def test_a_shelf_ends_on_time_after_the_clock_steps_back(
        manager: AlarmManager, clock: ManualClock, how: str) -> None:
    shelved_for(manager, clock, 1)
    clock.step_wall(-YEAR_S)
    clock.advance(59)
    manager.tick()
    assert manager.get(K).state is AlarmState.SHELVED
    deadline = manager.next_overlay_expiry()
    assert deadline is not None and deadline == pytest.approx(clock.monotonic() + 1)
    clock.advance(2)
    events = manager.observe(hydrogen()) if how == "observe" else manager.tick()
    assert [e.note for e in events if e.key == K] == ["shelve expired"]
    assert manager.get(K).state is AlarmState.ACTIVE_UNACKNOWLEDGED


def test_a_suppression_ends_on_time_after_the_clock_steps_back(
        manager: AlarmManager, clock: ManualClock) -> None:
    manager.observe(hydrogen())
    manager.suppress("h2-1", "op", "hot work", clock.now_ns() + MINUTE)
    assert manager.get(K).state is AlarmState.SUPPRESSED
    clock.step_wall(-YEAR_S)
    clock.advance(61)
    manager.tick()
    assert manager.suppressions() == [] and manager.get(K).state is \
        AlarmState.ACTIVE_UNACKNOWLEDGED


def test_a_forward_step_ends_a_shelf_early(manager: AlarmManager, clock: ManualClock) -> None:
    shelved_for(manager, clock, 30)
    clock.step_wall(86400)
    manager.tick()
    assert manager.get(K).state is AlarmState.ACTIVE_UNACKNOWLEDGED


def test_a_start_after_the_clock_stepped_back_grants_no_more_than_the_shelf_asked(
        make_manager: MakeManager, clock: ManualClock) -> None:
    first = make_manager()
    shelved_for(first, clock, 10)
    first.close()
    clock.step_wall(-YEAR_S)  # while the gateway was down (or at its boot)
    again = make_manager()
    assert again.get(K).state is AlarmState.SHELVED
    clock.advance(599)
    again.tick()
    assert again.get(K).state is AlarmState.SHELVED
    clock.advance(2)
    again.tick()
    assert again.get(K).state is AlarmState.ACTIVE_UNACKNOWLEDGED


def test_a_start_keeps_what_is_left_of_a_shelf(make_manager: MakeManager,
                                               clock: ManualClock) -> None:
    first = make_manager()
    shelved_for(first, clock, 10)
    clock.advance(240)
    first.close()
    again = make_manager()  # the clock right: 6 of 10 minutes left
    clock.advance(359)
    again.tick()
    assert again.get(K).state is AlarmState.SHELVED
    clock.advance(2)
    again.tick()
    assert again.get(K).state is AlarmState.ACTIVE_UNACKNOWLEDGED
