"""The pure state machine: base transitions and what each state demands."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alarms.lifecycle import (
    AUDIBLE_ROLES,
    AlarmKey,
    AlarmRecord,
    AlarmState,
    ChatterPolicy,
    OutOfService,
    Shelf,
    base_after_overlay,
    base_on_acknowledge,
    base_on_condition,
    scope_covers,
)
from tests.alarms.conftest import ev

N = AlarmState.NORMAL
AU = AlarmState.ACTIVE_UNACKNOWLEDGED
AA = AlarmState.ACTIVE_ACKNOWLEDGED
RU = AlarmState.RETURNED_UNACKNOWLEDGED


@pytest.mark.parametrize(("base", "rising", "latching", "expected"), [
    (N, True, False, AU), (N, True, True, AU),
    (RU, True, False, AU),
    (AU, True, False, AU),
    (AA, True, True, AU),  # latched, acknowledged, condition back: a new activation
    (AU, False, False, RU), (AU, False, True, AU),
    (AA, False, False, N), (AA, False, True, AA),
    (N, False, False, N), (RU, False, False, RU),
])
def test_base_on_condition(base: AlarmState, rising: bool, latching: bool,
                           expected: AlarmState) -> None:
    assert base_on_condition(base, rising, latching) is expected


@pytest.mark.parametrize(("base", "active", "expected"), [
    (AU, True, AA), (AU, False, N),  # latched and cleared: acknowledge resets
    (RU, False, N),
    (AA, False, N),  # latched acknowledged: reset
    (AA, True, None), (N, False, None),
])
def test_base_on_acknowledge(base: AlarmState, active: bool,
                             expected: AlarmState | None) -> None:
    assert base_on_acknowledge(base, active) is expected


def test_after_overlay() -> None:
    assert base_after_overlay(True, latched=False) is AU
    assert base_after_overlay(False, latched=False) is N
    assert base_after_overlay(True, latched=True) is AU
    assert base_after_overlay(False, latched=True) is AU, "an overlay never resets a latch"


def test_state_properties_table() -> None:
    table = {s: (s.annunciated, s.audible, s.demands_actions, s.unacknowledged)
             for s in AlarmState}
    assert table == {
        N: (False, False, False, False),
        AU: (True, True, True, True),
        AA: (True, False, True, False),
        RU: (True, False, False, True),
        AlarmState.SHELVED: (False, False, False, False),
        AlarmState.SUPPRESSED: (False, False, False, False),
        AlarmState.OUT_OF_SERVICE: (False, False, False, False),
    }


def test_demanded_roles_sounders_follow_audible() -> None:
    rec = AlarmRecord(AlarmKey("r", "s"), ev("r", "s", actions=("siren", "exhaust_fan")))
    policy = ChatterPolicy()
    assert rec.demanded_roles() == frozenset()
    rec.set_condition(True, 0.0, 1, policy)
    assert rec.demanded_roles() == {"siren", "exhaust_fan"}
    assert rec.acknowledge("op", 2)
    assert rec.demanded_roles() == {"exhaust_fan"}
    assert "siren" in AUDIBLE_ROLES
    rec.set_overlay(shelf=Shelf("op", "noisy", 3, 10**12), now_ns=3)
    assert rec.demanded_roles() == frozenset()


def test_overlay_precedence_and_return() -> None:
    rec = AlarmRecord(AlarmKey("r", "s"), ev("r", "s"))
    rec.set_condition(True, 0.0, 1, ChatterPolicy())
    rec.acknowledge("op", 2)
    rec.set_overlay(shelf=Shelf("op", "x", 3, 99), now_ns=3)
    assert str(rec.state) == "shelved"
    rec.set_overlay(suppression="room1", now_ns=4)
    assert rec.state == AlarmState.SUPPRESSED
    rec.set_overlay(shelf=None, now_ns=5)
    assert rec.state is AlarmState.SUPPRESSED
    rec.set_overlay(suppression=None, now_ns=6)
    assert rec.state is AU  # acknowledgement not carried over: annunciated afresh
    assert rec.acked_by is None and rec.activated_ns == 6


@pytest.mark.parametrize(("scope", "covered"), [
    ("explosion.h2_alarm", True), ("room1", True), ("h2-1", True), ("h2-1.h2", True),
    ("h2", False), ("room2", False), ("h2-2", False),
])
def test_scope_covers(scope: str, covered: bool) -> None:
    assert scope_covers(scope, "explosion.h2_alarm", "h2-1.h2", "room1") is covered


# --- a latching alarm latches under a shelf or a suppression (DESIGN principle 7) -------------

H2_ROLES = ("siren", "strobe", "exhaust_fan", "charge_inhibit")
FAR = 10**15


def h2_record(*, latching: bool = True, **overlay: Any) -> AlarmRecord:
    """A hydrogen alarm, normal, under the given overlay (as the lifecycle takes it: a
    suppression covers a quiet alarm as soon as it turns active)."""
    rec = AlarmRecord(AlarmKey("explosion.h2_alarm", "h2-1.h2"),
                      ev("explosion.h2_alarm", "h2-1.h2", latching=latching,
                         actions=H2_ROLES))
    rec.set_overlay(now_ns=1, **overlay)
    return rec


HIDING: dict[str, dict[str, Any]] = {"shelved": {"shelf": Shelf("op", "drift", 1, FAR)},
                                     "suppressed": {"suppression": "batt-3f"}}
UNHIDE: dict[str, dict[str, Any]] = {"shelved": {"shelf": None},
                                     "suppressed": {"suppression": None}}


@pytest.mark.parametrize("overlay", ["shelved", "suppressed"])
def test_a_latching_alarm_that_rises_and_clears_while_hidden_stays_latched(
        overlay: str) -> None:
    rec = h2_record(**HIDING[overlay])
    policy = ChatterPolicy()
    rec.set_condition(True, 10.0, 10, policy)
    assert (rec.state.value, rec.base, rec.hidden_active) == (overlay, AU, True)
    assert rec.activated_ns == 10
    assert rec.demanded_roles() == frozenset(), "nothing annunciated, nothing sounds"
    rec.set_condition(False, 11.0, 11, policy)  # the gas is gone
    assert (rec.state.value, rec.base, rec.hidden_active) == (overlay, AU, True)
    assert not rec.acknowledgeable and not rec.acknowledge("op", 12), "refused under it"
    rec.set_overlay(now_ns=13, **UNHIDE[overlay])
    assert rec.state is AU and not rec.condition, "annunciated afresh, latched"
    assert rec.activated_ns == 10, "activated when the hazard happened"
    assert rec.demanded_roles() == frozenset(H2_ROLES)
    assert rec.acknowledge("op", 14)  # the reset
    assert rec.state is N and rec.demanded_roles() == frozenset()


def test_an_acknowledged_latch_that_rises_again_while_shelved_is_annunciated_afresh() -> None:
    rec = h2_record()
    policy = ChatterPolicy()
    rec.set_condition(True, 1.0, 1, policy)
    rec.acknowledge("op", 2)
    rec.set_condition(False, 3.0, 3, policy)
    rec.set_overlay(shelf=Shelf("op", "drift", 4, FAR), now_ns=4)
    assert (rec.base, rec.hidden_active) == (AA, True)
    rec.set_condition(True, 5.0, 5, policy)
    assert (rec.state, rec.base, rec.activated_ns) == (AlarmState.SHELVED, AU, 5)
    rec.set_condition(False, 6.0, 6, policy)
    rec.set_overlay(shelf=None, now_ns=7)
    assert rec.state is AU and rec.acked_by is None


def test_out_of_service_latches_nothing() -> None:
    """The detector is known invalid: what it says out of service latches nothing, under a
    suppression too; back in service under the suppression with its condition active, the
    condition counts again: latched."""
    policy = ChatterPolicy()
    nothing_more: dict[str, Any] = {}
    for overlays in (nothing_more, {"suppression": "batt-3f"}):
        rec = h2_record(oos=OutOfService("tech", "swap", 1), **overlays)
        rec.set_condition(True, 1.0, 1, policy)
        rec.set_condition(False, 2.0, 2, policy)
        assert (rec.base, rec.hidden_active) == (N, False)
        rec.set_overlay(oos=None, now_ns=3)
        assert rec.base is N and not rec.hidden_active
        rec.set_overlay(suppression=None, now_ns=4)
        assert rec.state is N
    rec = h2_record(oos=OutOfService("tech", "swap", 1), suppression="batt-3f")
    rec.set_condition(True, 1.0, 1, policy)
    assert rec.base is N and not rec.hidden_active
    rec.set_overlay(oos=None, now_ns=3)  # back in service with the gas there
    assert (rec.state, rec.base, rec.hidden_active) == (AlarmState.SUPPRESSED, AU, True)
    rec.set_condition(False, 4.0, 4, policy)
    assert rec.hidden_active
    rec.set_overlay(suppression=None, now_ns=5)
    assert rec.state is AU


@pytest.mark.parametrize("overlay", ["shelved", "suppressed"])
def test_a_non_latching_alarm_under_an_overlay_is_unchanged(overlay: str) -> None:
    rec = h2_record(latching=False, **HIDING[overlay])
    policy = ChatterPolicy()
    rec.set_condition(True, 1.0, 1, policy)
    assert (rec.base, rec.hidden_active) == (N, True)
    rec.set_condition(False, 2.0, 2, policy)
    assert (rec.base, rec.hidden_active) == (N, False)
    rec.set_overlay(now_ns=3, **UNHIDE[overlay])
    assert rec.state is N


STEPS = st.sampled_from(["rise", "clear", "shelve", "unshelve", "suppress", "unsuppress",
                         "oos", "rts", "ack", "wait"])


@settings(max_examples=300, deadline=None)
@given(st.lists(STEPS, max_size=30))
def test_a_latching_alarm_ever_active_since_its_reset_is_latched_until_an_acknowledge(
        steps: list[str]) -> None:
    """Whatever the condition does and whatever overlays come and go: once the held
    condition was active while the alarm was not out of service, it is latched — its base
    active; hidden and still protecting (`hidden_active`) while shelved or suppressed;
    annunciated (active unacknowledged or acknowledged) without an overlay — until an
    acknowledge resets it. Out of service alone latches nothing."""
    rec = h2_record()
    policy = ChatterPolicy(count=3, window=60.0, hold=30.0)
    owed, mono, now = False, 0.0, 1
    for step in steps:
        mono, now = mono + 7.0, now + 1
        if step in ("rise", "clear"):
            rec.set_condition(step == "rise", mono, now, policy)
        elif step == "wait":
            mono += 31.0
            rec.release_chatter(mono, now, policy)
        elif step == "ack":
            if rec.acknowledge("op", now) and rec.base is N:
                owed = False  # the reset
        else:
            changes: dict[str, dict[str, Any]] = {
                "shelve": {"shelf": Shelf("op", "x", now, FAR)}, "unshelve": {"shelf": None},
                "suppress": {"suppression": "batt-3f"}, "unsuppress": {"suppression": None},
                "oos": {"oos": OutOfService("tech", "x", now)}, "rts": {"oos": None}}
            change = changes[step]
            rec.set_overlay(now_ns=now, **change)
        if rec.held_active and rec.oos is None:
            owed = True
        if owed:
            assert rec.base in (AU, AA), steps
            if rec.overlaid and rec.oos is None:  # shelved or suppressed
                assert rec.hidden_active, steps
            if not rec.overlaid:
                assert rec.state in (AU, AA) and rec.state.demands_actions, steps
        elif rec.oos is not None:
            assert not rec.hidden_active
