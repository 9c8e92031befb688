"""Which outputs are on: roles, rooms, acknowledge, latching, min_on, reset, interlocks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.actions.planner import Demand, OutputPlanner
from gateway.clock import ManualClock
from gateway.config.section import validator
from gateway.config.site import Interlock, Output


def out(id_: str, role: str, **extra: object) -> Output:
    return validator(Output).validate_python({"id": id_, "role": role, "device": "do1",
                                               "point": "do1", **extra})


def planner(*outputs: Output, interlocks: tuple[Interlock, ...] = ()) -> tuple[
        OutputPlanner, ManualClock]:
    clock = ManualClock()
    return OutputPlanner(outputs, interlocks, {"do1": "batt"}, clock), clock


def alarm(roles: tuple[str, ...], *, active: bool = True, unack: bool = True,
          room: str | None = "batt", name: str = "a", drill: bool = False) -> Demand:
    return Demand(name, roles, room, active, unack, drill)


def test_siren_sounds_until_acknowledged_fan_runs_until_clear() -> None:
    p, _ = planner(out("siren", "siren"), out("fan", "exhaust_fan"), out("strobe", "strobe"))
    roles = ("siren", "exhaust_fan", "strobe")
    assert p.plan([alarm(roles)]) == {"siren": True, "fan": True, "strobe": True}
    acked = alarm(roles, unack=False)
    assert p.plan([acked]) == {"siren": False, "fan": True, "strobe": True}
    assert p.plan([alarm(roles, active=False, unack=False)]) == {
        "siren": False, "fan": False, "strobe": False}


def test_only_outputs_serving_the_alarm_room_and_role() -> None:
    p, _ = planner(out("siren", "siren", rooms=("tx",)), out("fan", "exhaust_fan"))
    assert p.plan([alarm(("siren",), room="batt")]) == {"siren": False, "fan": False}
    assert p.plan([alarm(("siren",), room="tx")]) == {"siren": True, "fan": False}
    assert p.plan([alarm(("exhaust_fan",), room=None)]) == {"siren": False, "fan": True}


def test_latch_until_ack_and_restore_on_clear() -> None:
    p, _ = planner(out("siren", "siren", latch_until_ack=True),
                   out("fan", "exhaust_fan", restore_on_clear=False))
    roles = ("siren", "exhaust_fan")
    p.plan([alarm(roles)])
    returned = alarm(roles, active=False, unack=True)
    assert p.plan([returned]) == {"siren": True, "fan": True}
    assert p.plan([]) == {"siren": False, "fan": True}  # the fan waits for a reset
    p.reset("fan")
    assert p.plan([]) == {"siren": False, "fan": False}


def test_a_drill_alarm_switches_an_output_but_leaves_no_hold_for_a_reset() -> None:
    """An evacuation drill's off-gas alarm turns on a charge inhibit that does not restore on
    clear: when the drill is over nothing keeps it on (the audit found it held until a
    restart); a real alarm during the drill still latches it."""
    p, _ = planner(out("inhibit", "charge_inhibit", restore_on_clear=False))
    drilled = alarm(("charge_inhibit",), name="drill", drill=True)
    assert p.plan([drilled]) == {"inhibit": True}
    assert p.plan([]) == {"inhibit": False}
    assert not p.state["inhibit"].held_by_reset
    p.plan([drilled])
    p.plan([drilled, alarm(("charge_inhibit",), name="real")])
    assert p.plan([drilled]) == {"inhibit": True}
    assert p.plan([]) == {"inhibit": True}
    assert p.state["inhibit"].reasons == ["held until reset"]


def test_min_on_holds_an_output() -> None:
    p, clock = planner(out("fan", "exhaust_fan", min_on="30s"))
    p.plan([alarm(("exhaust_fan",))])
    clock.advance(10)
    assert p.plan([]) == {"fan": True}
    clock.advance(21)
    assert p.plan([]) == {"fan": False}


def test_a_new_planner_adopts_holds_and_min_on_of_the_old_one() -> None:
    """A config apply builds a new planner: an output waiting for an operator reset stays on,
    a running min_on keeps running, outputs that no longer exist are dropped."""
    old, clock = planner(out("inhibit", "charge_inhibit", restore_on_clear=False),
                         out("fan", "exhaust_fan", min_on="30s"), out("gone", "siren"))
    old.plan([alarm(("charge_inhibit", "exhaust_fan", "siren"))])
    clock.advance(10)
    new = OutputPlanner([out("inhibit", "charge_inhibit", restore_on_clear=False),
                         out("fan", "exhaust_fan", min_on="30s")], (), {"do1": "batt"}, clock)
    assert new.plan([]) == {"inhibit": False, "fan": False}  # what a fresh one would do
    new = OutputPlanner([out("inhibit", "charge_inhibit", restore_on_clear=False),
                         out("fan", "exhaust_fan", min_on="30s")], (), {"do1": "batt"}, clock)
    new.adopt(old)
    assert new.plan([]) == {"inhibit": True, "fan": True}
    clock.advance(21)
    assert new.plan([]) == {"inhibit": True, "fan": False}
    new.reset("inhibit")
    assert new.plan([]) == {"inhibit": False, "fan": False}


def test_interlock_holds_an_output_off_and_reports_it() -> None:
    p, _ = planner(out("fan", "exhaust_fan"), out("hvac", "other"),
                   interlocks=(Interlock(output="hvac", while_on="fan"),))
    assert p.plan([alarm(("exhaust_fan", "other"))]) == {"fan": True, "hvac": False}
    assert p.state["hvac"].blocked_by == "fan"
    assert p.plan([alarm(("other",))]) == {"fan": False, "hvac": True}
    assert p.state["hvac"].blocked_by is None


demands = st.lists(st.builds(Demand, st.sampled_from(["a", "b", "c"]),
                             st.lists(st.sampled_from(["siren", "strobe", "exhaust_fan"]),
                                      max_size=3).map(tuple),
                             st.sampled_from(["batt", "tx", None]), st.booleans(),
                             st.booleans()), max_size=5)


@pytest.mark.slow
@given(st.lists(demands, min_size=1, max_size=8))
def test_invariants(sequence: list[list[Demand]]) -> None:
    p, clock = planner(out("siren", "siren"), out("fan", "exhaust_fan"),
                       out("hvac", "strobe", rooms=("tx",)),
                       interlocks=(Interlock(output="hvac", while_on="fan"),))
    for step in sequence:
        wanted = p.plan(step)
        clock.advance(1)
        # a siren never sounds for acknowledged alarms only
        if wanted["siren"]:
            assert any(d.unacknowledged and d.active and "siren" in d.roles for d in step)
        # the fan runs exactly while an active alarm in its room (or roomless) asks for it
        assert wanted["fan"] == any(d.active and "exhaust_fan" in d.roles
                                    and d.room in ("batt", None) for d in step)
        assert not (wanted["fan"] and wanted["hvac"])  # the interlock always holds


def test_a_reset_while_the_alarm_still_demands_leaves_it_on_for_that_alarm_only() -> None:
    """An operator resets a charge inhibit while the off-gas alarm is still active: the hold
    is released (the same alarm does not hold it again), the output stays on while the alarm
    wants it and goes off when it clears; a new real alarm holds it again."""
    p, _ = planner(out("inhibit", "charge_inhibit", restore_on_clear=False))
    offgas = alarm(("charge_inhibit",), name="offgas")
    assert p.plan([offgas]) == {"inhibit": True}
    assert p.state["inhibit"].held_by_reset and p.held() == {"inhibit"}
    assert p.reset("inhibit") == ["offgas"]
    assert p.plan([offgas]) == {"inhibit": True}, "the alarm still demands it"
    assert not p.state["inhibit"].held_by_reset and p.held() == set()
    assert p.plan([]) == {"inhibit": False}, "it cleared: no hold came back"
    assert p.plan([offgas]) == {"inhibit": True}
    assert p.plan([]) == {"inhibit": True}, "a new activation holds it again"
    assert p.reset("inhibit") == []
    assert p.plan([]) == {"inhibit": False}
    with pytest.raises(KeyError):
        p.reset("nowhere")


def test_restore_holds_the_journal_s_outputs_that_still_do_not_restore_on_clear() -> None:
    """A start restores the holds the journal kept: only outputs that exist and still do not
    restore on clear; the first plan switches them on."""
    p, _ = planner(out("inhibit", "charge_inhibit", restore_on_clear=False),
                   out("fan", "exhaust_fan"))
    assert p.restore(["inhibit", "fan", "gone"]) == ["inhibit"]
    assert p.plan([]) == {"inhibit": True, "fan": False}
    assert p.state["inhibit"].reasons == ["held until reset"] and p.held() == {"inhibit"}
