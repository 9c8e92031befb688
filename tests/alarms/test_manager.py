"""AlarmManager: every transition, commands and their errors, first-out, ordering, outputs."""

from __future__ import annotations

import pytest

from gateway.alarms.events import AlarmCommandError, AlarmEvent, EventKind
from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.alarms.manager import AlarmManager
from gateway.alarms.types import Severity
from gateway.clock import ManualClock
from tests.alarms.conftest import MakeManager, ev

N = AlarmState.NORMAL
AU = AlarmState.ACTIVE_UNACKNOWLEDGED
AA = AlarmState.ACTIVE_ACKNOWLEDGED
RU = AlarmState.RETURNED_UNACKNOWLEDGED
SH = AlarmState.SHELVED
SU = AlarmState.SUPPRESSED
OOS = AlarmState.OUT_OF_SERVICE
K = AlarmKey("env.temp_high", "th-1.temp")
HOUR = 3600 * 10**9


def states(events: list[AlarmEvent]) -> list[tuple[AlarmState, AlarmState]]:
    return [(e.previous_state, e.state) for e in events if e.kind is EventKind.ALARM]


def test_activation_event(manager: AlarmManager, clock: ManualClock) -> None:
    assert manager.observe([ev(active=False)]) == []
    (e,) = manager.observe([ev(value=51.5)])
    assert (e.kind, e.key, e.previous_state, e.state) == (EventKind.ALARM, K, N, AU)
    assert (e.value, e.severity, e.actor, e.room, e.first_out, e.ts) == (
        51.5, Severity.MAJOR, "system", "room1", True, clock.now_ns())
    assert e.seq == 1
    view = manager.get(K)
    assert view.audible and view.demands_actions and view.annunciated and view.acknowledgeable


def test_unchanged_evaluations_are_silent(manager: AlarmManager) -> None:
    manager.observe([ev()])
    for _ in range(5):
        assert manager.observe([ev(value=99.0)]) == []
    assert manager.get(K).value == 99.0  # the latest value is kept without an event
    assert len(manager.events_since(0)) == 1


def test_ack_active_then_clear(manager: AlarmManager) -> None:
    manager.observe([ev()])
    (e,) = manager.acknowledge(K, "alice", "on my way")
    assert (e.previous_state, e.state, e.actor, e.note) == (AU, AA, "alice", "on my way")
    view = manager.get(K)
    assert not view.audible and view.demands_actions and view.acked_by == "alice"
    assert states(manager.observe([ev(active=False)])) == [(AA, N)]
    assert manager.active() == []


def test_return_unacknowledged_then_ack_or_reactivate(manager: AlarmManager) -> None:
    manager.observe([ev()])
    assert states(manager.observe([ev(active=False)])) == [(AU, RU)]
    view = manager.get(K)
    assert not view.audible and not view.demands_actions and view.annunciated
    assert states(manager.observe([ev()])) == [(RU, AU)]
    manager.observe([ev(active=False)])
    assert states(manager.acknowledge([K], "bob")) == [(RU, N)]


def test_latching(manager: AlarmManager) -> None:
    manager.observe([ev(latching=True, actions=("siren", "exhaust_fan"))])
    assert manager.observe([ev(active=False, latching=True)]) == []
    view = manager.get(K)
    assert view.state is AU and view.audible and view.demands_actions
    assert states(manager.acknowledge(K, "op")) == [(AU, N)]  # reset


def test_latching_acknowledged_needs_reset(manager: AlarmManager) -> None:
    manager.observe([ev(latching=True)])
    manager.acknowledge(K, "op")
    assert manager.observe([ev(active=False, latching=True)]) == []
    assert manager.get(K).state is AA and manager.get(K).acknowledgeable
    assert states(manager.observe([ev(latching=True)])) == [(AA, AU)]  # back before reset
    manager.acknowledge(K, "op")
    manager.observe([ev(active=False, latching=True)])
    assert states(manager.acknowledge(K, "op")) == [(AA, N)]


def test_ack_errors(manager: AlarmManager) -> None:
    with pytest.raises(AlarmCommandError, match="unknown alarm"):
        manager.acknowledge(AlarmKey("nope", "x"), "op")
    manager.observe([ev(active=False), ev(subject="th-2.temp")])
    with pytest.raises(AlarmCommandError, match="normal"):
        manager.acknowledge(K, "op")
    with pytest.raises(AlarmCommandError, match="actor"):
        manager.acknowledge(("env.temp_high", "th-2.temp"), " ")
    with pytest.raises(AlarmCommandError, match="not an alarm key"):
        manager.acknowledge("env.temp_high", "op")  # type: ignore[arg-type]
    # all or nothing: one bad key in the list changes nothing
    with pytest.raises(AlarmCommandError):
        manager.acknowledge([("env.temp_high", "th-2.temp"), K], "op")
    assert manager.get(("env.temp_high", "th-2.temp")).state is AU
    manager.acknowledge(("env.temp_high", "th-2.temp"), "op")
    with pytest.raises(AlarmCommandError, match="already acknowledged"):
        manager.acknowledge(("env.temp_high", "th-2.temp"), "op")


def test_acknowledge_all_by_room(manager: AlarmManager) -> None:
    manager.observe([ev(subject="a"), ev(subject="b", room="room2"), ev(subject="c")])
    events = manager.acknowledge_all("op", room="room1")
    assert sorted(e.subject for e in events) == ["a", "c"]
    assert manager.get(("env.temp_high", "b")).state is AU
    assert len(manager.acknowledge_all("op")) == 1
    assert manager.acknowledge_all("op") == []


def test_shelve_expiry_returns_to_condition(manager: AlarmManager, clock: ManualClock) -> None:
    manager.observe([ev(actions=("siren", "exhaust_fan"))])
    (e,) = manager.shelve(K, "op", clock.now_ns() + HOUR, "sensor being recalibrated")
    assert (e.previous_state, e.state, e.actor) == (AU, SH, "op")
    assert "sensor being recalibrated" in (e.note or "")
    view = manager.get(K)
    assert not view.audible and not view.demands_actions and not view.annunciated
    assert view.shelf is not None and view.shelf.actor == "op"
    assert manager.demanded_outputs() == {}
    with pytest.raises(AlarmCommandError, match="already shelved"):
        manager.shelve(K, "op", clock.now_ns() + HOUR, "again")
    with pytest.raises(AlarmCommandError, match="acknowledge"):
        manager.acknowledge(K, "op")
    assert manager.observe([ev(active=False)]) == []  # condition tracked silently
    assert manager.observe([ev()]) == []
    clock.advance(3599)
    assert manager.tick() == []
    clock.advance(1)
    (e,) = manager.tick()
    assert (e.previous_state, e.state, e.actor, e.note) == (SH, AU, "system", "shelve expired")


def test_shelve_cleared_returns_normal_and_unshelve(manager: AlarmManager,
                                                    clock: ManualClock) -> None:
    manager.observe([ev()])
    manager.shelve(K, "op", clock.now_ns() + HOUR, "nuisance")
    manager.observe([ev(active=False)])
    assert states(manager.unshelve(K, "op")) == [(SH, N)]
    with pytest.raises(AlarmCommandError, match="not shelved"):
        manager.unshelve(K, "op")
    with pytest.raises(AlarmCommandError, match="future"):
        manager.shelve(K, "op", clock.now_ns(), "nuisance")
    with pytest.raises(AlarmCommandError, match="reason"):
        manager.shelve(K, "op", clock.now_ns() + 1, "")


def test_only_an_alarm_in_the_alarm_list_can_be_shelved(manager: AlarmManager,
                                                        clock: ManualClock) -> None:
    """The drills audit shelved a normal smoke coincidence in advance: the real fire that came
    later stayed silent until the shelf expired. A normal alarm is refused (suppression is
    the tool for planned work); an active one, or one returned but not acknowledged, is not."""
    manager.observe([ev(active=False)])
    with pytest.raises(AlarmCommandError, match="is normal: only an alarm in the alarm list"):
        manager.shelve(K, "op", clock.now_ns() + HOUR, "in advance")
    assert manager.get(K).shelf is None
    manager.observe([ev()])
    manager.observe([ev(active=False)])
    assert manager.get(K).state is RU
    assert states(manager.shelve(K, "op", clock.now_ns() + HOUR, "chattering")) == [(RU, SH)]
    assert states(manager.unshelve(K, "op")) == [(SH, N)]  # its condition is clear
    with pytest.raises(AlarmCommandError, match="is normal"):
        manager.shelve(K, "op", clock.now_ns() + HOUR, "again, now that it is normal")


def test_suppress_room_device_rule(manager: AlarmManager, clock: ManualClock) -> None:
    h2 = ev("explosion.h2_alarm", "h2-1.h2", room="battery1", actions=("exhaust_fan",))
    temp = ev(room="room1")
    manager.observe([h2, temp])
    until = clock.now_ns() + HOUR
    events = manager.suppress("battery1", "alice", "hot work permit 42", until)
    assert [e.kind for e in events] == [EventKind.SUPPRESSION_START, EventKind.ALARM]
    assert (events[0].subject, events[0].actor) == ("battery1", "alice")
    assert "hot work permit 42" in (events[0].note or "")
    assert manager.get(h2_key := AlarmKey("explosion.h2_alarm", "h2-1.h2")).state is SU
    assert manager.get(K).state is AU
    assert not manager.get(h2_key).demands_actions
    # a new alarm of the suppressed room is born suppressed
    (e,) = manager.observe([ev("fire.smoke", "smoke-1.smoke", room="battery1")])
    assert (e.previous_state, e.state) == (N, SU)
    # the device scope and the rule scope
    manager.suppress("th-1", "bob", "replacing sensor", until)
    assert manager.get(K).state is SU
    manager.unsuppress("th-1", "bob")
    assert manager.get(K).state is AU
    with pytest.raises(AlarmCommandError, match="no known"):
        manager.suppress("room99", "bob", "typo", until)
    with pytest.raises(AlarmCommandError, match="not suppressed"):
        manager.unsuppress("room99", "bob")
    assert [s.scope for s in manager.suppressions()] == ["battery1"]
    # expiry: back to what the condition implies
    manager.observe([h2, ev("fire.smoke", "smoke-1.smoke", room="battery1", active=False)])
    clock.advance(3600)
    events = manager.tick()
    assert events[0].kind is EventKind.SUPPRESSION_END and events[0].actor == "system"
    assert {(e.subject, e.state) for e in events[1:]} == {("h2-1.h2", AU), ("smoke-1.smoke", N)}


def test_overlapping_suppressions(manager: AlarmManager, clock: ManualClock) -> None:
    manager.observe([ev()])
    until = clock.now_ns() + HOUR
    manager.suppress("room1", "a", "work", until)
    manager.suppress("env.temp_high", "b", "rule tuning", until)
    assert manager.unsuppress("room1", "a")[1:] == []  # still suppressed by the rule scope
    assert manager.get(K).suppression == "env.temp_high"
    assert states(manager.unsuppress("env.temp_high", "b")) == [(SU, AU)]


def test_out_of_service(manager: AlarmManager) -> None:
    manager.observe([ev()])
    (e,) = manager.set_out_of_service(K, "tech", "detector faulty, ticket 7")
    assert (e.previous_state, e.state, e.actor) == (AU, OOS, "tech")
    assert not manager.get(K).audible
    with pytest.raises(AlarmCommandError, match="already out of service"):
        manager.set_out_of_service(K, "tech", "again")
    with pytest.raises(AlarmCommandError, match="out of service"):
        manager.shelve(K, "tech", 2 * 10**18, "x")
    manager.observe([ev(active=False)])
    assert states(manager.return_to_service(K, "tech")) == [(OOS, N)]
    with pytest.raises(AlarmCommandError, match="not out of service"):
        manager.return_to_service(K, "tech")


def test_room_first_out(manager: AlarmManager) -> None:
    a, b, c = (ev(subject=s) for s in ("a", "b", "c"))
    events = manager.observe([a, b, ev(subject="x", room="room2")])
    assert [(e.subject, e.first_out) for e in events] == [("a", True), ("b", False),
                                                          ("x", True)]
    assert manager.first_outs()["room1"] == ("env.temp_high", "a")
    manager.acknowledge_all("op")
    events = manager.observe([ev(subject="a", active=False), b, c])
    assert [(e.subject, e.state, e.first_out) for e in events] == [
        ("a", N, False), ("c", AU, False)]  # room1 not all-normal since a: no new first-out
    assert manager.first_outs()["room1"] == ("env.temp_high", "a")
    assert [v.key.subject for v in manager.active() if v.first_out] == ["x"]
    manager.observe([ev(subject=s, active=False) for s in "abc"])
    manager.acknowledge_all("op")
    assert "room1" not in manager.first_outs()
    (e,) = manager.observe([ev(subject="b")])
    assert e.first_out


def test_first_out_orders_a_batch_by_evaluation_time(manager: AlarmManager) -> None:
    events = manager.observe([ev(subject="late", ts=20), ev(subject="early", ts=10)])
    assert [(e.subject, e.first_out) for e in events] == [("early", True), ("late", False)]


def test_active_order(manager: AlarmManager, clock: ManualClock) -> None:
    manager.observe([ev(subject="minor", severity=Severity.MINOR)])
    clock.advance(1)
    manager.observe([ev(subject="crit2", severity=Severity.CRITICAL)])
    clock.advance(1)
    manager.observe([ev(subject="crit1", severity=Severity.CRITICAL, ts=-1)])
    manager.observe([ev(subject="normal", active=False)])
    assert [v.key.subject for v in manager.active()] == ["crit2", "crit1", "minor"]


def test_demanded_outputs(manager: AlarmManager) -> None:
    manager.observe([ev(subject="a", actions=("siren", "exhaust_fan")),
                     ev(subject="b", actions=("siren",))])
    assert manager.demanded_outputs() == {
        "exhaust_fan": [("env.temp_high", "a")],
        "siren": [("env.temp_high", "a"), ("env.temp_high", "b")]}
    manager.acknowledge_all("op")
    assert manager.demanded_outputs() == {"exhaust_fan": [("env.temp_high", "a")]}


def test_events_since_and_seq(manager: AlarmManager) -> None:
    manager.observe([ev(subject="a"), ev(subject="b")])
    manager.acknowledge_all("op")
    seqs = [e.seq for e in manager.events_since(0)]
    assert seqs == [1, 2, 3, 4]
    assert [e.seq for e in manager.events_since(2, limit=1)] == [3]
    assert manager.events_since(2)[0].as_dict()["state"] == "active_acknowledged"


def test_the_acknowledgement_note_survives_a_restart(make_manager: MakeManager,
                                                     clock: ManualClock) -> None:
    first = make_manager()
    first.observe([ev()])
    clock.advance(5)
    first.acknowledge(K, "alice", "on my way")
    clock.advance(5)
    first.acknowledge_all("bob", note="not this one")  # nothing left to acknowledge
    first.close()
    again = make_manager().get(K)
    assert (again.acked_by, again.acked_note) == ("alice", "on my way")
