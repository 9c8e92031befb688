"""`acknowledge_waiting`: a panel's "acknowledge all" of the alarms its operator saw —
acknowledges those that still wait, skips the ones someone else acknowledged meanwhile (the
all-or-none `acknowledge` refuses the whole list for one of them), never resets a latched
alarm that is already acknowledged."""

from __future__ import annotations

import pytest

from gateway.alarms.events import AlarmCommandError, EventKind
from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.alarms.manager import AlarmManager
from tests.alarms.conftest import ev

A = AlarmKey("env.temp_high", "th-1.temp")
B = AlarmKey("env.temp_high", "th-2.temp")
C = AlarmKey("fire.smoke", "room1")


def test_skips_those_acknowledged_meanwhile(manager: AlarmManager) -> None:
    manager.observe([ev(subject=A.subject), ev(subject=B.subject)])
    manager.acknowledge(A, "bob")  # another operator, before this one's page polled
    with pytest.raises(AlarmCommandError, match="already acknowledged"):
        manager.acknowledge([A, B], "alice")  # all or none: nothing done
    assert manager.get(B).state is AlarmState.ACTIVE_UNACKNOWLEDGED
    events = manager.acknowledge_waiting([A, B], "alice", "on it")
    assert [(e.key, e.state, e.actor) for e in events if e.kind is EventKind.ALARM] == [
        (B, AlarmState.ACTIVE_ACKNOWLEDGED, "alice")]
    assert manager.get(A).acked_by == "bob"
    assert manager.get(B).acked_note == "on it"
    assert manager.acknowledge_waiting([A, B], "alice") == []  # nothing waits: no error


def test_never_resets_a_latched_alarm_nor_touches_unknown_ones(manager: AlarmManager) -> None:
    manager.observe([ev(rule=C.rule, subject=C.subject, latching=True)])
    manager.acknowledge(C, "bob")
    manager.observe([ev(rule=C.rule, subject=C.subject, latching=True, active=False)])
    assert manager.get(C).state is AlarmState.ACTIVE_ACKNOWLEDGED  # latched, waits a reset
    assert manager.acknowledge_waiting([C, ("no.such", "alarm")], "alice") == []
    assert manager.get(C).state is AlarmState.ACTIVE_ACKNOWLEDGED
    # a returned (cleared) alarm still waits for its acknowledgement: it is acknowledged
    manager.observe([ev(subject=A.subject)])
    manager.observe([ev(subject=A.subject, active=False)])
    assert manager.get(A).state is AlarmState.RETURNED_UNACKNOWLEDGED
    manager.acknowledge_waiting([A], "alice")
    assert A not in [v.key for v in manager.active()]
