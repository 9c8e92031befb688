"""The pure state machine: base transitions and what each state demands."""

from __future__ import annotations

import pytest

from gateway.alarms.lifecycle import (
    AUDIBLE_ROLES,
    AlarmKey,
    AlarmRecord,
    AlarmState,
    ChatterPolicy,
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
