"""A latching alarm latches under a shelf or a suppression too (DESIGN principle 7: a latch is
reset only by an acknowledge, an overlay never resets it, a shelf or suppression hides
annunciation only), on the real alarm manager and journal, with the output planner fed as the
safety core feeds it.

Before, a latching alarm whose condition rose and cleared while it was hidden never latched:
a hydrogen alarm that rose and fell during a hot-work suppression of the battery room
released its exhaust fan and charge inhibit as soon as the gas fell, came back `normal` when
the suppression ended, and nobody was ever asked to reset it. Now it latches, hidden: the
protective outputs stay on, nothing sounds, and when the overlay ends it is annunciated
(`active_unacknowledged`) until an acknowledge resets it; the journal records the latch.
Out of service latches nothing (the detector is known invalid); a non-latching alarm is as
before."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.actions.planner import OutputPlanner, demand_of
from gateway.alarms.events import AlarmEvent, EventKind
from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.alarms.manager import AlarmManager
from gateway.clock import ManualClock
from gateway.config.section import validator
from gateway.config.site import Output
from tests.alarms.conftest import MakeManager, ev

N, AU, AA = (AlarmState.NORMAL, AlarmState.ACTIVE_UNACKNOWLEDGED,
             AlarmState.ACTIVE_ACKNOWLEDGED)
SH, SU, OOS = AlarmState.SHELVED, AlarmState.SUPPRESSED, AlarmState.OUT_OF_SERVICE
HOUR = 3600 * 10**9
ROOM = "batt-3f"
H2 = AlarmKey("explosion.h2_alarm", "h2-batt-01.h2")
ROLES = ("siren", "exhaust_fan", "charge_inhibit")
OUTPUTS = {"siren-3f": "siren", "fan-batt-3f": "exhaust_fan",
           "charge-inhibit-batt": "charge_inhibit"}


def h2(active: bool, *, latching: bool = True) -> Any:
    return ev(H2.rule, H2.subject, active, room=ROOM, actions=ROLES, latching=latching,
              title="Hydrogen high")


def outputs(manager: AlarmManager) -> dict[str, bool]:
    """What the output planner switches on for the hydrogen alarm as it stands."""
    planner = OutputPlanner(
        [validator(Output).validate_python({"id": o, "role": role, "device": "do1",
                                            "point": f"do{i}", "rooms": [ROOM]})
         for i, (o, role) in enumerate(OUTPUTS.items())], (), {"do1": ROOM}, ManualClock())
    demand = demand_of(manager.get(H2))
    return planner.plan([demand] if demand is not None else [])


PROTECTING = {"siren-3f": False, "fan-batt-3f": True, "charge-inhibit-batt": True}
SOUNDING = dict.fromkeys(OUTPUTS, True)
OFF = dict.fromkeys(OUTPUTS, False)


def moves(events: list[AlarmEvent]) -> list[tuple[AlarmState, AlarmState, str | None]]:
    return [(e.previous_state, e.state, e.note) for e in events
            if e.kind is EventKind.ALARM and e.key == H2]


@pytest.mark.parametrize("restart", [False, True])
def test_a_latching_alarm_that_rose_and_cleared_under_a_suppression_stays_latched(
        make_manager: MakeManager, clock: ManualClock, restart: bool) -> None:
    m = make_manager()
    m.observe([h2(False)])
    m.suppress(ROOM, "site lead", "hot work permit 42", clock.now_ns() + HOUR)
    clock.advance(5.0)
    risen = clock.now_ns()
    assert moves(m.observe([h2(True)])) == [
        (N, SU, f"suppressed ({ROOM}); latched while suppressed")]
    assert outputs(m) == PROTECTING
    clock.advance(60.0)
    assert m.observe([h2(False)]) == []  # the gas is gone: nothing to say
    view = m.get(H2)
    assert (view.state, view.condition, view.hidden_active) == (SU, False, True)
    assert view.demanded_roles == frozenset() and not view.audible
    assert outputs(m) == PROTECTING, "the latch holds the fan and the charge inhibit"
    with pytest.raises(Exception, match="suppressed; nothing to acknowledge"):
        m.acknowledge([H2], "op")
    if restart:  # the journal keeps the hidden latch
        m.close()
        m = make_manager()
        assert m.observe([h2(False)]) == []
        assert (m.get(H2).state, m.get(H2).hidden_active) == (SU, True)
        assert outputs(m) == PROTECTING
    assert moves(m.unsuppress(ROOM, "site lead")) == [(SU, AU, f"unsuppressed ({ROOM})")]
    view = m.get(H2)
    assert (view.state, view.activated_ns, view.acknowledgeable) == (AU, risen, True)
    assert outputs(m) == SOUNDING, "annunciated afresh, latched"
    assert moves(m.acknowledge([H2], "Li Na", "room checked, reset")) == [
        (AU, N, "room checked, reset")]
    assert outputs(m) == OFF


def test_a_latched_alarm_whose_hazard_returns_while_shelved_journals_it(
        manager: AlarmManager, clock: ManualClock) -> None:
    """Shelved as latched and acknowledged (its protection held, as before); the gas rising
    again under the shelf is journalled and annunciates it afresh when the shelf ends."""
    manager.observe([h2(True)])
    manager.acknowledge([H2], "op")
    manager.observe([h2(False)])
    manager.shelve(H2, "op", clock.now_ns() + HOUR, "sensor drift?")
    clock.advance(30.0)
    assert moves(manager.observe([h2(True)])) == [(SH, SH, "latched while shelved")]
    manager.observe([h2(False)])
    assert manager.get(H2).hidden_active and outputs(manager) == PROTECTING
    assert manager.get(H2).hidden_drive == "latched"  # what the panel and status say
    assert moves(manager.unshelve(H2, "op")) == [(SH, AU, "unshelved")]
    assert manager.get(H2).hidden_drive is None
    assert manager.get(H2).activated_ns == clock.now_ns()
    manager.acknowledge([H2], "op")
    assert manager.get(H2).state is N


def test_a_rule_made_latching_while_its_returned_alarm_is_shelved_latches(
        manager: AlarmManager, clock: ManualClock) -> None:
    """Shelved while returned and unacknowledged (not latching then); a config apply makes its
    rule latching; the gas rises and falls under the shelf: latched, hidden."""
    manager.observe([h2(True, latching=False)])
    manager.observe([h2(False, latching=False)])
    manager.shelve(H2, "op", clock.now_ns() + HOUR, "known")
    manager.observe([h2(False)])  # the new config's evaluation
    assert moves(manager.observe([h2(True)])) == [(SH, SH, "latched while shelved")]
    manager.observe([h2(False)])
    assert outputs(manager) == PROTECTING
    clock.advance(3601.0)
    manager.tick()  # the shelf expires
    assert manager.get(H2).state is AU and outputs(manager) == SOUNDING
    manager.acknowledge([H2], "op")
    assert manager.get(H2).state is N


def test_out_of_service_latches_nothing(manager: AlarmManager, clock: ManualClock) -> None:
    """The detector was taken out as known invalid: its rise latches nothing, under a
    suppression too — unless it is returned to service with the gas still there."""
    manager.observe([h2(False)])
    manager.set_out_of_service(H2, "tech", "detector swap")
    manager.suppress(ROOM, "site lead", "hot work", clock.now_ns() + HOUR)
    assert manager.observe([h2(True)]) == []
    assert outputs(manager) == OFF
    assert manager.observe([h2(False)]) == []
    assert moves(manager.return_to_service(H2, "tech")) == [(OOS, SU, "returned to service")]
    assert not manager.get(H2).hidden_active and outputs(manager) == OFF
    assert moves(manager.unsuppress(ROOM, "site lead")) == [(SU, N, f"unsuppressed ({ROOM})")]
    # back in service under the suppression while the gas is there: it counts again
    manager.set_out_of_service(H2, "tech", "detector swap")
    manager.suppress(ROOM, "site lead", "hot work", clock.now_ns() + HOUR)
    manager.observe([h2(True)])
    assert moves(manager.return_to_service(H2, "tech")) == [
        (OOS, SU, "returned to service; latched while suppressed")]
    manager.observe([h2(False)])
    assert outputs(manager) == PROTECTING
    manager.unsuppress(ROOM, "site lead")
    assert manager.get(H2).state is AU


@pytest.mark.parametrize("how", ["shelve", "suppress"])
def test_a_non_latching_alarm_is_unchanged(manager: AlarmManager, clock: ManualClock,
                                           how: str) -> None:
    manager.observe([h2(True, latching=False)])
    manager.acknowledge([H2], "op")
    if how == "shelve":
        manager.shelve(H2, "op", clock.now_ns() + HOUR, "known")
    else:
        manager.suppress(ROOM, "op", "hot work", clock.now_ns() + HOUR)
    manager.observe([h2(False, latching=False)])
    assert outputs(manager) == OFF
    assert manager.get(H2).hidden_drive is None
    assert manager.observe([h2(True, latching=False)]) == [], "nothing journalled"
    assert outputs(manager) == PROTECTING
    assert manager.get(H2).hidden_drive == "active"
    manager.observe([h2(False, latching=False)])
    assert not manager.get(H2).hidden_active and outputs(manager) == OFF
    assert manager.get(H2).hidden_drive is None
    if how == "shelve":
        manager.unshelve(H2, "op")
    else:
        manager.unsuppress(ROOM, "op")
    assert manager.get(H2).state is N
