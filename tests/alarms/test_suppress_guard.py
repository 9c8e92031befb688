"""A suppression cannot hide a critical alarm nobody has acknowledged (the attacker/user audit:
a room's suppression turned a live, unacknowledged confirmed fire `suppressed` and its strobe
off). Like a shelve of a normal alarm, it is refused before anything changes, naming the
alarms and saying to acknowledge them first; once acknowledged they may be suppressed (a
faulty detector taken out for work)."""

from __future__ import annotations

import pytest

from gateway.alarms.events import AlarmCommandError
from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.alarms.manager import AlarmManager
from gateway.alarms.types import Severity
from gateway.clock import ManualClock
from tests.alarms.conftest import ev

HOUR = 3600 * 10**9
FIRE = AlarmKey("fire.smoke_coincidence", "tx-3f")
OFFLINE = AlarmKey("comm.device_offline", "th-tx-a03.online")


def fire(active: bool = True) -> list:  # type: ignore[type-arg]
    return [ev(FIRE.rule, FIRE.subject, active, severity=Severity.CRITICAL, room="tx-3f",
               actions=("siren", "strobe"), latching=True, title="Fire in tx-3f"),
            ev(OFFLINE.rule, OFFLINE.subject, severity=Severity.MAJOR, room="tx-3f",
               title="th-tx-a03 offline")]


@pytest.mark.parametrize("scope", ["tx-3f", "fire.smoke_coincidence"])
def test_an_unacknowledged_critical_alarm_blocks_the_suppression(
        manager: AlarmManager, clock: ManualClock, scope: str) -> None:
    manager.observe(fire())
    before = manager.events_since(0)
    with pytest.raises(AlarmCommandError) as refused:
        manager.suppress(scope, "viewer", "hot work", clock.now_ns() + HOUR)
    message = str(refused.value)
    assert "fire.smoke_coincidence@tx-3f" in message and "Fire in tx-3f" in message
    assert "critical" in message and "acknowledge it first" in message
    # nothing changed: no suppression, the fire still waits and still drives its strobe
    assert manager.suppressions() == []
    view = manager.get(FIRE)
    assert view.state is AlarmState.ACTIVE_UNACKNOWLEDGED and "strobe" in view.demanded_roles
    assert manager.events_since(0) == before


def test_a_critical_alarm_cleared_but_unacknowledged_blocks_it_too(
        manager: AlarmManager, clock: ManualClock) -> None:
    alarm = ev("fire.smoke_detector", "smoke-tx-01.alarm", severity=Severity.CRITICAL,
               room="tx-3f")
    manager.observe([alarm])
    manager.observe([ev("fire.smoke_detector", "smoke-tx-01.alarm", False,
                        severity=Severity.CRITICAL, room="tx-3f")])
    key = AlarmKey("fire.smoke_detector", "smoke-tx-01.alarm")
    assert manager.get(key).state is AlarmState.RETURNED_UNACKNOWLEDGED
    with pytest.raises(AlarmCommandError, match="nobody has acknowledged"):
        manager.suppress("smoke-tx-01", "op", "replacing it", clock.now_ns() + HOUR)


def test_once_acknowledged_it_may_be_suppressed(manager: AlarmManager,
                                                clock: ManualClock) -> None:
    manager.observe(fire())
    manager.acknowledge(FIRE, "zhang", "checked: a faulty detector")
    manager.suppress("tx-3f", "zhang", "detector out for repair", clock.now_ns() + HOUR)
    assert manager.get(FIRE).state is AlarmState.SUPPRESSED
    assert manager.get(OFFLINE).state is AlarmState.SUPPRESSED
    assert [s.scope for s in manager.suppressions()] == ["tx-3f"]


def test_other_severities_and_other_rooms_do_not_block(manager: AlarmManager,
                                                       clock: ManualClock) -> None:
    manager.observe([*fire(), ev("env.temp_high", "th-b.temp", room="batt-3f")])
    # a major alarm waiting for its acknowledge does not block (only critical ones do)
    manager.suppress("th-tx-a03", "op", "replacing the sensor", clock.now_ns() + HOUR)
    assert manager.get(OFFLINE).state is AlarmState.SUPPRESSED
    manager.suppress("batt-3f", "op", "hot work", clock.now_ns() + HOUR)
    assert manager.get(AlarmKey("env.temp_high", "th-b.temp")).state is AlarmState.SUPPRESSED
    assert manager.get(FIRE).state is AlarmState.ACTIVE_UNACKNOWLEDGED


def test_the_refusal_names_at_most_five(manager: AlarmManager, clock: ManualClock) -> None:
    manager.observe([ev("fire.smoke_detector", f"smoke-{i}.alarm", severity=Severity.CRITICAL,
                        room="tx-3f", title=f"Smoke {i}") for i in range(8)])
    with pytest.raises(AlarmCommandError) as refused:
        manager.suppress("tx-3f", "op", "hot work", clock.now_ns() + HOUR)
    message = str(refused.value)
    assert "would hide 8 critical alarms" in message and "and 3 more" in message
    assert message.count("(Smoke ") == 5 and "acknowledge them first" in message
