"""A suppression leaves quiet alarms quiet (the alarm lifecycle audit, F5: suppressing one room
of a shipped site made each of its 176-358 quiet bindings a listed 'suppressed' alarm with an
event of its own, and as many again at its end; at 2,000 points the active-alarm snapshot then
broke the contract's limit and was not sent at all).

Only an alarm in the alarm list (or held active) takes the overlay. A quiet one that turns
active while the suppression covers it is suppressed then — one event, not annunciated, no
outputs — and annunciated afresh when the suppression ends; the same after a restart (the
suppression restored from the journal). On the manager, and on the safety core of a shipped
site fed by its simulated devices."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.alarms.events import EventKind
from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.alarms.manager import AlarmManager
from gateway.alarms.types import Evaluation, Severity
from gateway.clock import ManualClock
from gateway.safety import SafetyCore
from gateway.sim.signals import Constant
from tests.alarms.conftest import MakeManager, ev
from tests.fixtures.core_rig import CoreRig

N, AU, SU = AlarmState.NORMAL, AlarmState.ACTIVE_UNACKNOWLEDGED, AlarmState.SUPPRESSED
OOS = AlarmState.OUT_OF_SERVICE
HOUR = 3600 * 10**9
START, END = EventKind.SUPPRESSION_START, EventKind.SUPPRESSION_END
FIRE = AlarmKey("fire.smoke", "smoke-1.smoke")


def fire(active: bool = True) -> Evaluation:
    return ev(FIRE.rule, FIRE.subject, active, severity=Severity.CRITICAL,
              actions=("siren", "strobe"), latching=True)


def test_suppressing_quiet_alarms_journals_only_the_suppression(manager: AlarmManager,
                                                                 clock: ManualClock) -> None:
    never = AlarmKey("env.temp_high", "th-1.temp")  # only ever inactive: an evaluation
    once = AlarmKey("env.temp_high", "th-2.temp")  # active once, back to normal: a record
    named = AlarmKey("env.temp_high", "th-3.temp")  # a record because `get` named it
    manager.observe([ev(subject="th-1.temp", active=False), ev(subject="th-2.temp"),
                     ev(subject="th-3.temp", active=False)])
    manager.acknowledge(once, "op")
    manager.observe([ev(subject="th-2.temp", active=False)])
    assert manager.get(named).state is N and manager.get(once).state is N
    seq = manager.last_seq

    events = manager.suppress("room1", "alice", "hot work permit 42", clock.now_ns() + HOUR)
    assert [e.kind for e in events] == [START]
    assert manager.active() == []
    for key in (never, once, named):
        view = manager.get(key)
        assert (view.state, view.suppression) == (N, None), key
    quiet = [ev(subject=s, active=False) for s in ("th-1.temp", "th-2.temp", "th-3.temp")]
    assert manager.observe(quiet) == []
    # first evaluated under the suppression, inactive: quiet as well
    assert manager.observe([ev(subject="th-4.temp", active=False)]) == []
    assert manager.active() == []

    assert [e.kind for e in manager.unsuppress("room1", "alice")] == [END]
    assert [e.kind for e in manager.events_since(seq)] == [START, END]


@pytest.mark.parametrize("restart", ["none", "before the hazard", "while it is active"])
@pytest.mark.parametrize("history", ["never active", "active once"])
def test_a_hazard_under_a_suppression_is_suppressed_then_annunciated_at_its_end(
        make_manager: MakeManager, clock: ManualClock, restart: str, history: str) -> None:
    m = make_manager()
    m.observe([fire(active=False)])
    if history == "active once":  # a latched fire, reset: a normal record
        m.observe([fire()])
        m.observe([fire(active=False)])
        m.acknowledge(FIRE, "op")
        assert m.get(FIRE).state is N
    m.suppress("room1", "alice", "hot work permit 42", clock.now_ns() + HOUR)
    assert m.active() == []
    if restart == "before the hazard":
        m.close()
        m = make_manager()
        assert [s.scope for s in m.suppressions()] == ["room1"]
        assert m.observe([fire(active=False)]) == []
        assert m.active() == []

    (e,) = m.observe([fire()])
    assert (e.kind, e.rule, e.subject, e.previous_state, e.state) == (
        EventKind.ALARM, FIRE.rule, FIRE.subject, N, SU)
    assert m.get(FIRE).suppression == "room1"
    assert m.demanded_outputs() == {} and m.first_outs() == {}
    assert m.observe([fire()]) == []
    if restart == "while it is active":
        m.close()
        m = make_manager()
        assert m.observe([fire()]) == []
        assert m.get(FIRE).state is SU and m.demanded_outputs() == {}

    events = m.unsuppress("room1", "alice")
    assert [(e.kind, e.subject, e.previous_state, e.state) for e in events] == [
        (END, "room1", SU, N), (EventKind.ALARM, FIRE.subject, SU, AU)]
    assert m.get(FIRE).state is AU
    assert m.demanded_outputs() == {"siren": [FIRE], "strobe": [FIRE]}


def test_out_of_service_then_active_under_a_suppression_returns_suppressed(
        manager: AlarmManager, clock: ManualClock) -> None:
    """A quiet alarm taken out of service keeps no suppression; if it turns active while one
    covers it, it returns to service suppressed, not annunciated."""
    manager.observe([fire(active=False)])
    manager.suppress("room1", "alice", "hot work", clock.now_ns() + HOUR)
    manager.set_out_of_service(FIRE, "tech", "detector swap")
    assert manager.observe([fire()]) == []  # out of service: nothing to say
    assert [(e.previous_state, e.state) for e in manager.return_to_service(FIRE, "tech")] \
        == [(OOS, SU)]
    assert manager.demanded_outputs() == {}
    assert [e.state for e in manager.unsuppress("room1", "alice")][1:] == [AU]


# --- on the safety core of a shipped site ------------------------------------------------------

SITE = Path(__file__).resolve().parents[2] / "firmware_configs" / "telecom_equipment_room.yaml"
ROOM = "tx-3f"
SMOKE = ("smoke-tx-01.alarm", "smoke-tx-02.alarm")
SITE_FIRE = AlarmKey("fire.smoke_coincidence", ROOM)
SOUNDERS = ("siren-3f", "strobe-3f")


class Rig(CoreRig):
    def smoke(self, on: bool) -> None:
        for point in SMOKE:
            self.site.signals.set(point, Constant(value=on))

    def restart(self) -> None:
        """A new core on the same journal, as a new process finds it."""
        self.core.close()
        self.core = SafetyCore(self.loaded, self.clock, self.journal)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(SITE, tmp_path / "alarms.sqlite")
    r.run(5)  # every device read once
    assert r.core.alarms.active() == [], "the site is quiet"
    yield r
    r.core.close()


def test_a_shipped_room_suppressed_without_a_hazard(rig: Rig) -> None:
    alarms = rig.core.alarms
    bindings = [b for b in rig.core.engine.binding_details() if b.room == ROOM]
    assert len(bindings) > 100, "a room of many quiet bindings"
    seq = alarms.last_seq
    until = rig.clock.now_ns() + HOUR
    assert [e.kind for e in alarms.suppress(ROOM, "Li Na", "hot work permit 42", until)] \
        == [START]
    rig.run(10)
    assert alarms.active() == []
    assert [e.kind for e in alarms.unsuppress(ROOM, "Li Na")] == [END]
    assert [e.kind for e in alarms.events_since(seq)] == [START, END]


@pytest.mark.parametrize("restart", ["none", "before the hazard", "while it is active"])
def test_a_fire_in_a_suppressed_shipped_room(rig: Rig, restart: str) -> None:
    until = rig.clock.now_ns() + HOUR
    rig.core.alarms.suppress(ROOM, "Li Na", "hot work permit 42", until)
    seq = rig.core.alarms.last_seq
    if restart == "before the hazard":
        rig.restart()
        rig.run(5)
        assert rig.core.alarms.events_since(seq) == [] and rig.core.alarms.active() == []

    rig.smoke(True)
    rig.run(10)
    events = rig.core.alarms.events_since(seq)
    keys = [AlarmKey(e.rule, e.subject) for e in events]
    assert SITE_FIRE in keys
    assert len(keys) == len(set(keys)), "one event per alarm that turned active"
    assert all((e.kind, e.previous_state, e.state) == (EventKind.ALARM, N, SU)
               for e in events), events
    assert {v.key for v in rig.core.alarms.active()} == set(keys)
    assert not any(rig.core.wanted[o] for o in SOUNDERS), "a suppressed fire drives nothing"
    if restart == "while it is active":
        rig.restart()
        rig.run(5)
        assert len(rig.core.alarms.events_since(seq)) == len(events)
        assert not any(rig.core.wanted[o] for o in SOUNDERS)

    ended = rig.core.alarms.unsuppress(ROOM, "Li Na")
    assert (ended[0].kind, ended[0].subject) == (END, ROOM)
    assert (SITE_FIRE.subject, SU, AU) in {(e.subject, e.previous_state, e.state)
                                           for e in ended[1:]}
    assert rig.core.alarms.get(SITE_FIRE).state is AU
    rig.run(1)
    assert all(rig.core.wanted[o] for o in SOUNDERS), "annunciated afresh: outputs driven"
