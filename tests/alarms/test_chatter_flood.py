"""Chattering protection and flood detection with first-out."""

from __future__ import annotations

from gateway.alarms.events import AlarmEvent, EventKind
from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.alarms.manager import AlarmManager
from gateway.clock import ManualClock
from tests.alarms.conftest import MakeManager, ev

N = AlarmState.NORMAL
AU = AlarmState.ACTIVE_UNACKNOWLEDGED
AA = AlarmState.ACTIVE_ACKNOWLEDGED
RU = AlarmState.RETURNED_UNACKNOWLEDGED
K = AlarmKey("env.temp_high", "th-1.temp")


def toggle(manager: AlarmManager, clock: ManualClock, times: int,
           step: float = 5.0) -> list[AlarmEvent]:
    events: list[AlarmEvent] = []
    for _ in range(times):
        events += manager.observe([ev()])
        clock.advance(step)
        events += manager.observe([ev(active=False)])
        clock.advance(step)
    return events


def test_chattering_is_held_active(manager: AlarmManager, clock: ManualClock) -> None:
    events = toggle(manager, clock, 2)
    assert [e.state for e in events] == [AU, RU, AU, RU]
    (e,) = manager.observe([ev()])  # third activation within 60 s
    assert (e.state, e.chattering, e.note) == (AU, True, "chattering")
    assert manager.get(K).chattering
    clock.advance(5)
    assert toggle(manager, clock, 5) == []  # held: no re-annunciation, no events
    view = manager.get(K)
    assert view.state is AU and view.demands_actions and not view.condition
    clock.advance(59)  # clear for 59 + 5 s by now: the hold of 60 s is over
    (e,) = manager.tick()
    assert (e.previous_state, e.state, e.note, e.chattering) == (
        AU, RU, "chattering ended", False)


def test_chattering_hold_restarts_when_condition_returns(manager: AlarmManager,
                                                         clock: ManualClock) -> None:
    toggle(manager, clock, 3)
    assert manager.get(K).chattering
    manager.acknowledge(K, "op")  # held active: acknowledged, not reset
    assert manager.get(K).state is AA
    clock.advance(50)
    manager.observe([ev()])
    clock.advance(30)
    assert manager.observe([ev(active=False)]) == []
    clock.advance(59)
    assert manager.tick() == []
    clock.advance(1)
    (e,) = manager.tick()
    assert (e.previous_state, e.state) == (AA, N)
    assert not manager.get(K).chattering


def test_slow_toggles_are_not_chattering(manager: AlarmManager, clock: ManualClock) -> None:
    events = toggle(manager, clock, 4, step=16.0)  # activations 32 s apart: 3 span 64 s
    assert len(events) == 8 and not any(e.chattering for e in events)


def test_flood_with_first_out(make_manager: MakeManager, clock: ManualClock) -> None:
    manager = make_manager()
    rooms = ["r1", "r2"]
    events: list[AlarmEvent] = []
    for i in range(11):
        events += manager.observe([ev(subject=f"p{i}", room=rooms[i % 2], ts=i)])
        clock.advance(50)
    assert manager.flood.active is False or events[-1].kind is EventKind.FLOOD_START
    kinds = [e.kind for e in events]
    assert kinds.count(EventKind.FLOOD_START) == 1 and kinds[-1] is EventKind.FLOOD_START
    start = events[-1]
    assert (start.subject, start.first_out, start.actor) == ("p0", True, "system")
    status = manager.flood
    assert status.active and status.first_out == ("env.temp_high", "p0")
    assert status.activations == 11
    marked = [v.key.subject for v in manager.active() if v.flood_first_out]
    assert marked == ["p0"]
    # room first-outs are tracked independently
    assert manager.first_outs() == {"r1": ("env.temp_high", "p0"),
                                    "r2": ("env.temp_high", "p1")}
    # the flood ends when activations in the window drop to half the count
    clock.advance(600 - 50 * 10 + 1)  # p0 leaves the window: 10 left
    assert manager.tick() == []
    clock.advance(50 * 5)
    (end,) = manager.tick()
    assert (end.kind, end.subject) == (EventKind.FLOOD_END, "p0")
    assert not manager.flood.active and manager.flood.first_out is None


def test_no_flood_when_spread_out(manager: AlarmManager, clock: ManualClock) -> None:
    for i in range(30):
        events = manager.observe([ev(subject=f"p{i}")])
        assert all(e.kind is EventKind.ALARM for e in events)
        clock.advance(61)
    assert not manager.flood.active


def test_flood_state_survives_restart(make_manager: MakeManager, clock: ManualClock) -> None:
    manager = make_manager()
    manager.observe([ev(subject=f"p{i}") for i in range(11)])
    assert manager.flood.active
    manager.close()
    again = make_manager()
    assert again.flood.active and again.flood.first_out == ("env.temp_high", "p0")
    assert again.observe([ev(subject=f"p{i}") for i in range(11)]) == []
    clock.advance(601)
    (end,) = again.tick()
    assert end.kind is EventKind.FLOOD_END
