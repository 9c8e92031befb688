"""Interlocks on the real OutputPlanner (the output chain audit, F6/F7): the outcome does not
depend on the order of the locks in the config, an output held off says by what, a blocker
that is itself held off blocks nothing, and an interlock suspends a hold until reset
(`restore_on_clear: false`) instead of ending it. A blocker the field shows on (a welded
relay, its feedback acting) blocks although the plan has it off, and says so."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.actions.planner import Demand, OutputPlanner
from gateway.clock import ManualClock
from gateway.config.section import validator
from gateway.config.site import Interlock, Output

ROLES = ("siren", "strobe", "exhaust_fan", "hvac_stop", "charge_inhibit", "alarm_panel")
IDS = ("fan", "hvac", "inhibit", "panel", "siren", "strobe")
ROLE_OF = dict(zip(IDS, ("exhaust_fan", "hvac_stop", "charge_inhibit", "alarm_panel", "siren",
                         "strobe"), strict=True))


def out(id_: str, **extra: object) -> Output:
    return validator(Output).validate_python({"id": id_, "role": ROLE_OF[id_], "device": "do1",
                                  "point": "do1", **extra})


def lock(output: str, while_on: str) -> Interlock:
    return Interlock(output=output, while_on=while_on)


def planner(outputs: list[Output], locks: list[Interlock]) -> OutputPlanner:
    return OutputPlanner(outputs, locks, {"do1": "batt"}, ManualClock())


def alarm(*roles: str, name: str = "a", active: bool = True, unack: bool = True) -> Demand:
    return Demand(name, roles, "batt", active, unack)


def outcome(p: OutputPlanner, wanted: dict[str, bool]) -> tuple[object, ...]:
    return (wanted, {o: s.blocked_by for o, s in p.state.items()}, p.held())


# --- F7 (A): an output with two locks says what holds it off ------------------------------

def test_an_output_held_off_by_the_first_of_two_locks_says_so() -> None:
    """The audit's case A: the panel, locked while the fan and while the siren are on, held
    off by the fan (listed first) with the siren off, showed `blocked_by` None."""
    for locks in ([lock("panel", "fan"), lock("panel", "siren")],
                  [lock("panel", "siren"), lock("panel", "fan")]):
        p = planner([out("fan"), out("panel"), out("siren")], locks)
        wanted = p.plan([alarm("exhaust_fan", "alarm_panel")])
        assert wanted == {"fan": True, "panel": False, "siren": False}
        assert p.state["panel"].blocked_by == "fan", locks


def test_an_interlock_block_carries_its_own_reason_while_it_holds() -> None:
    """`Interlock.reason` is shown while that lock holds the output off (panel, status,
    journal): the reason of the lock whose blocker is on, none once nothing blocks."""
    locks = [Interlock(output="panel", while_on="fan", reason="fan purging"),
             Interlock(output="panel", while_on="siren", reason="siren sounding")]
    p = planner([out("fan"), out("panel"), out("siren")], locks)
    p.plan([alarm("siren", "alarm_panel")])
    assert (p.state["panel"].blocked_by, p.state["panel"].block_reason) == ("siren",
                                                                            "siren sounding")
    p.plan([alarm("exhaust_fan", "alarm_panel")])
    assert (p.state["panel"].blocked_by, p.state["panel"].block_reason) == ("fan", "fan purging")
    p.plan([alarm("alarm_panel")])
    assert (p.state["panel"].blocked_by, p.state["panel"].block_reason) == (None, None)


# --- F7 (B): chained locks in any order ---------------------------------------------------

def test_chained_locks_give_the_same_outputs_in_either_order() -> None:
    """The audit's case B: with the fan on, the inhibit is held off; the panel, locked while
    the inhibit is on, runs — in both list orders (one order held it off, "blocked by
    inhibit", with the inhibit off)."""
    outputs = [out("fan"), out("inhibit"), out("panel")]
    demand = [alarm("exhaust_fan", "charge_inhibit", "alarm_panel")]
    for locks in ([lock("panel", "inhibit"), lock("inhibit", "fan")],
                  [lock("inhibit", "fan"), lock("panel", "inhibit")]):
        p = planner(outputs, locks)
        assert p.plan(demand) == {"fan": True, "inhibit": False, "panel": True}, locks
        assert p.state["inhibit"].blocked_by == "fan"
        assert p.state["panel"].blocked_by is None


# --- F6: an interlock suspends a hold until reset ------------------------------------------

def test_an_interlock_suspends_a_hold_until_reset_it_does_not_end_it() -> None:
    """The audit's s8: a fan purging hydrogen, held until reset, interlocked off while the
    HVAC stop (fire damper) is on. When the fire clears the fan runs again: nobody reset it."""
    p = planner([out("fan", restore_on_clear=False), out("hvac")], [lock("fan", "hvac")])
    assert p.plan([alarm("exhaust_fan", name="h2")]) == {"fan": True, "hvac": False}
    assert p.plan([]) == {"fan": True, "hvac": False} and p.held() == {"fan"}
    fire = alarm("hvac_stop", name="fire")
    assert p.plan([fire]) == {"fan": False, "hvac": True}
    assert p.held() == {"fan"} and p.state["fan"].blocked_by == "hvac"
    assert p.state["fan"].reasons == ["held until reset"]
    assert p.plan([]) == {"fan": True, "hvac": False}, "back on: the hold was only suspended"
    assert p.held() == {"fan"} and p.state["fan"].blocked_by is None
    p.plan([fire])
    p.reset("fan")  # an operator's reset while suspended ends it
    assert p.plan([fire]) == {"fan": False, "hvac": True} and p.held() == set()
    assert p.plan([]) == {"fan": False, "hvac": False}


def test_a_hold_that_begins_while_the_output_is_interlocked_waits_for_the_blocker() -> None:
    """A real alarm wanted the output while its blocker ran: it is held until reset as if it
    had switched it on, and runs once the blocker stops."""
    p = planner([out("inhibit", restore_on_clear=False), out("hvac")],
                [lock("inhibit", "hvac")])
    both = [alarm("hvac_stop", name="fire"), alarm("charge_inhibit", name="offgas")]
    assert p.plan(both) == {"inhibit": False, "hvac": True}
    assert p.held() == {"inhibit"}
    assert p.plan([]) == {"inhibit": True, "hvac": False}


# --- the field: a blocker running although the plan has it off ----------------------------

def test_a_blocker_the_field_shows_on_holds_its_output_off_though_not_wanted() -> None:
    """The fan's relay is welded (read back on after an off write): the HVAC stop, interlocked
    while the fan runs, stays off and says why; once the field shows the fan off it runs."""
    p = planner([out("fan"), out("hvac")], [lock("hvac", "fan")])
    fire = [alarm("hvac_stop", name="fire")]
    assert p.plan(fire, {"fan": "read back on"}) == {"fan": False, "hvac": False}
    assert p.state["hvac"].blocker == "fan"
    assert p.state["hvac"].blocked_by == "fan (running in the field: read back on)"
    assert p.plan(fire, {}) == {"fan": False, "hvac": True}
    assert p.state["hvac"].blocked_by is None and p.state["hvac"].blocker is None


def test_a_blocker_wanted_on_is_named_plainly_whatever_the_field_shows() -> None:
    """Wanted on blocks as before (a failed write too: the field showing it off does not
    matter); the field's words are only for a blocker the plan has off."""
    p = planner([out("fan"), out("hvac")], [lock("hvac", "fan")])
    both = [alarm("exhaust_fan", "hvac_stop")]
    assert p.plan(both, {"fan": "polled on"}) == {"fan": True, "hvac": False}
    assert p.state["hvac"].blocked_by == "fan"
    assert p.plan(both, {}) == {"fan": True, "hvac": False}
    assert p.state["hvac"].blocked_by == "fan"


def test_a_blocker_held_off_by_its_own_lock_blocks_while_the_field_shows_it_running() -> None:
    """The inhibit is interlocked off while the fan runs, but its contactor is on manual (its
    feedback shows it acting): the panel, locked while the inhibit is on, is held off by it."""
    p = planner([out("fan"), out("inhibit"), out("panel")],
                [lock("panel", "inhibit"), lock("inhibit", "fan")])
    demand = [alarm("exhaust_fan", "charge_inhibit", "alarm_panel")]
    seen = {"inhibit": "feedback di1.di2 shows it acting"}
    assert p.plan(demand, seen) == {"fan": True, "inhibit": False, "panel": False}
    assert p.state["inhibit"].blocked_by == "fan"
    assert p.state["panel"].blocked_by == ("inhibit (running in the field: feedback di1.di2 "
                                           "shows it acting)")
    assert p.plan(demand, {}) == {"fan": True, "inhibit": False, "panel": True}


def test_a_field_block_suspends_a_hold_until_reset_and_the_output_resumes() -> None:
    """A fan held until reset, interlocked while the HVAC stop is on: the HVAC stop's relay,
    not wanted, stuck on holds the fan off without ending its hold; released, the fan runs."""
    p = planner([out("fan", restore_on_clear=False), out("hvac")], [lock("fan", "hvac")])
    assert p.plan([alarm("exhaust_fan", name="h2")]) == {"fan": True, "hvac": False}
    assert p.plan([], {"hvac": "polled on"}) == {"fan": False, "hvac": False}
    assert p.held() == {"fan"} and p.state["fan"].blocker == "hvac"
    assert p.plan([], {}) == {"fan": True, "hvac": False} and p.held() == {"fan"}


def test_a_field_that_shows_nothing_blocks_nothing() -> None:
    """Unknown is not on: a field view without the blocker (module offline, nothing read
    yet) leaves the plan as the alarms make it."""
    p = planner([out("fan"), out("hvac")], [lock("hvac", "fan")])
    assert p.plan([alarm("hvac_stop")], {"hvac": "read back on"}) == {"fan": False,
                                                                      "hvac": True}
    assert p.state["hvac"].blocked_by is None


# --- properties over sets and orders of locks ----------------------------------------------

pairs = st.lists(st.tuples(st.sampled_from(IDS), st.sampled_from(IDS))
                 .filter(lambda pair: pair[0] != pair[1]), max_size=8, unique=True)
demand = st.builds(Demand, st.sampled_from(["a", "b", "c"]),
                   st.lists(st.sampled_from(ROLES), max_size=4).map(tuple),
                   st.just("batt"), st.booleans(), st.booleans(), st.booleans())
steps = st.lists(st.lists(demand, max_size=4), min_size=1, max_size=8)
fields = st.dictionaries(st.sampled_from(IDS), st.sampled_from(["read back on", "polled on"]),
                         max_size=3)
"""What the field shows on at a step (any output, wanted or not)."""
field_steps = st.lists(st.tuples(st.lists(demand, max_size=4), fields), min_size=1,
                       max_size=8)
hold_flags = st.fixed_dictionaries({o: st.booleans() for o in IDS})


def acyclic(edges: list[tuple[str, str]]) -> bool:
    rank = {o: i for i, o in enumerate(IDS)}
    return all(rank[a] > rank[b] for a, b in edges)


@pytest.mark.slow
@given(pairs, hold_flags, field_steps, st.randoms(use_true_random=False))
def test_any_order_of_the_same_locks_gives_the_same_plan(
        edges: list[tuple[str, str]], holds: dict[str, bool],
        sequence: list[tuple[list[Demand], dict[str, str]]], rnd: object) -> None:
    """Order independence as a property: the same set of locks (cycles too, which `check`
    refuses) in two list orders gives the same outputs, blocks and holds at every step, with
    the same field view (blockers running although the plan has them off)."""
    import random

    assert isinstance(rnd, random.Random)
    outputs = [out(o, restore_on_clear=not holds[o]) for o in IDS]
    shuffled = list(edges)
    rnd.shuffle(shuffled)
    first = planner(outputs, [lock(a, b) for a, b in edges])
    second = planner(list(reversed(outputs)), [lock(a, b) for a, b in shuffled])
    for step, seen in sequence:
        assert outcome(first, first.plan(step, seen)) == outcome(second, second.plan(step, seen))


@pytest.mark.slow
@given(pairs.map(lambda edges: [e for e in edges if acyclic([e])]), hold_flags, field_steps)
def test_interlocks_hold_exactly_what_their_running_blockers_block(
        edges: list[tuple[str, str]], holds: dict[str, bool],
        sequence: list[tuple[list[Demand], dict[str, str]]]) -> None:
    """Against a twin planner without locks (what the alarms and holds want): an output is on
    exactly when it is wanted and none of its blockers is on — planned on (their own locks
    applied) or shown on by the field; a held-off output names the first such blocker by id,
    with what the field shows when only the field has it on; the locks never change a hold."""
    outputs = [out(o, restore_on_clear=not holds[o]) for o in IDS]
    locked = planner(outputs, [lock(a, b) for a, b in edges])
    free = planner(outputs, [])
    blockers = {o: {b for a, b in edges if a == o} for o in IDS}
    for step, seen in sequence:
        wanted, plain = locked.plan(step, seen), free.plan(step, seen)
        running = {o for o in IDS if wanted[o] or o in seen}
        for o in IDS:
            assert wanted[o] == (plain[o] and not blockers[o] & running), o
            plan = locked.state[o]
            if plain[o] and not wanted[o]:
                first = min(blockers[o] & running)
                assert plan.blocker == first, (o, plan.blocker)
                assert plan.blocked_by == (first if wanted[first] else
                                           f"{first} (running in the field: {seen[first]})")
            else:
                assert plan.blocker is None and plan.blocked_by is None, (o, plan.blocker)
        for a, b in edges:  # the lock always holds, against the field too
            assert not (wanted[a] and (wanted[b] or b in seen))
        assert locked.held() == free.held(), "an interlock never ends or starts a hold"


def test_a_cycle_of_locks_is_decided_the_same_in_every_order() -> None:
    """A cycle (`check` refuses it) still plans the same in every order: each output of the
    cycle is held off while a blocker in it is wanted; an output locked while one of the
    cycle is on follows that one's outcome."""
    edges = [("fan", "hvac"), ("hvac", "panel"), ("panel", "fan"), ("siren", "fan")]
    outputs = [out("fan"), out("hvac"), out("panel"), out("siren")]
    results = set()
    for order in itertools.permutations(edges):
        p = planner(outputs, [lock(a, b) for a, b in order])
        wanted = p.plan([alarm("exhaust_fan", "alarm_panel", "siren")])
        results.add((tuple(sorted(wanted.items())),
                     tuple(sorted((o, s.blocked_by or "") for o, s in p.state.items()))))
    assert len(results) == 1
    [(wanted_items, _)] = results
    assert dict(wanted_items) == {"fan": True, "hvac": False, "panel": False, "siren": False}
