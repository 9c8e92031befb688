"""What the alarm lifecycle audit found, on the real alarm manager and journal:

* F1 — an overlay ending (unshelve, shelf expiry, unsuppress, return to service) reset a
  latched alarm: a user who may only shelve reset a confirmed fire, siren and strobe off, and
  the journal never recorded an acknowledge. A latch now outlives any overlay.
* F2 — an acknowledged alarm escalated to critical (a dead exhaust fan with hydrogen present)
  journalled nothing, sounded nothing and stayed `major` on the central side. Now an
  escalation is journalled with its severity and annunciated afresh; a de-escalation is
  journalled; a shelf ends with an escalation.
* F3 — a critical alarm nobody had acknowledged could be shelved for days (the suppression's
  guard did not hold for shelves): siren, fan and charge inhibit released.
* F6 — a remote "acknowledge all" reset latched alarms a guard had already acknowledged,
  releasing their outputs; the panel's own acknowledge-all skipped them.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.alarms.events import AlarmCommandError, AlarmEvent
from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.alarms.manager import AlarmManager
from gateway.alarms.types import Evaluation, Severity
from gateway.clock import ManualClock
from tests.alarms.conftest import MakeManager, ev

AU, AA = AlarmState.ACTIVE_UNACKNOWLEDGED, AlarmState.ACTIVE_ACKNOWLEDGED
N = AlarmState.NORMAL
MINUTE = 60 * 10**9
FIRE = AlarmKey("fire.smoke_coincidence", "batt-3f")
FAN = AlarmKey("actions.output_no_feedback", "fan-batt-3f")
H2 = AlarmKey("explosion.h2_alarm", "h2-batt-01.h2")


def fire(active: bool, severity: Severity = Severity.CRITICAL) -> Evaluation:
    return ev(FIRE.rule, FIRE.subject, active, severity=severity, room="batt-3f",
              actions=("siren", "strobe", "exhaust_fan"), latching=True, title="Fire")


def fan(severity: Severity, actions: tuple[str, ...]) -> Evaluation:
    return ev(FAN.rule, FAN.subject, True, severity=severity, room="batt-3f", actions=actions,
              title="Exhaust fan not running")


def latched_fire(manager: AlarmManager, *, acknowledged: bool,
                 severity: Severity = Severity.CRITICAL) -> None:
    """A confirmed fire whose detectors have reset: latched, waiting for its reset."""
    manager.observe([fire(True, severity)])
    if acknowledged:
        manager.acknowledge([FIRE], "local guard", "on my way")
    manager.observe([fire(False, severity)])
    view = manager.get(FIRE)
    assert view.state is (AA if acknowledged else AU) and not view.condition
    assert "strobe" in view.demanded_roles


# --- F1: an overlay never resets a latch -------------------------------------------------------

OVERLAYS = ["unshelve", "shelf_expires", "unsuppress", "return_to_service"]


@pytest.mark.parametrize("acknowledged", [False, True])
@pytest.mark.parametrize("how", OVERLAYS)
def test_a_latched_alarm_comes_back_latched_when_its_overlay_ends(
        manager: AlarmManager, clock: ManualClock, how: str, acknowledged: bool) -> None:
    """Acknowledged: the critical fire. Not acknowledged: a latching major alarm (a critical
    one nobody acknowledged may be neither shelved nor suppressed)."""
    latched_fire(manager, acknowledged=acknowledged,
                 severity=Severity.CRITICAL if acknowledged else Severity.MAJOR)
    if how in ("unshelve", "shelf_expires"):
        manager.shelve(FIRE, "guard", clock.now_ns() + MINUTE, "nuisance")
    elif how == "unsuppress":
        manager.suppress("batt-3f", "guard", "hot work", clock.now_ns() + MINUTE)
    else:
        manager.set_out_of_service(FIRE, "tech", "detector swap")
    assert manager.get(FIRE).demanded_roles == frozenset()
    if how == "unshelve":
        manager.unshelve(FIRE, "guard")
    elif how == "shelf_expires":
        clock.advance(61)
        manager.tick()
    elif how == "unsuppress":
        manager.unsuppress("batt-3f", "guard")
    else:
        manager.return_to_service(FIRE, "tech")
    view = manager.get(FIRE)
    assert view.state is AU, f"{how} reset the latched fire"
    assert {"siren", "strobe", "exhaust_fan"} <= view.demanded_roles
    # only an acknowledge resets it, and the journal says who
    events = manager.acknowledge([FIRE], "local guard", "reset after inspection")
    assert [(e.previous_state, e.state, e.actor) for e in events] == [
        (AU, N, "local guard")]


def test_an_overlay_on_an_alarm_that_was_not_latched_returns_it_to_normal(
        manager: AlarmManager, clock: ManualClock) -> None:
    """A non-latching alarm whose condition cleared under a shelf is normal afterwards."""
    key = AlarmKey("env.temp_high", "th-1.temp")
    manager.observe([ev(key.rule, key.subject, True)])
    manager.shelve(key, "op", clock.now_ns() + MINUTE, "known")
    manager.observe([ev(key.rule, key.subject, False)])
    manager.unshelve(key, "op")
    assert manager.get(key).state is N


@settings(max_examples=60, deadline=None)
@given(st.booleans(),
       st.lists(st.sampled_from(["clear", "rise", "shelve", "unshelve", "suppress",
                                 "unsuppress", "oos", "rts", "expire"]), max_size=12))
@example(False, ["suppress", "rise", "clear", "unsuppress"])  # a hazard while hidden
@example(False, ["oos", "suppress", "rise", "rts", "clear", "expire"])
def test_only_an_acknowledge_resets_a_latch(tmp_path_factory: pytest.TempPathFactory,
                                            latched: bool, steps: list[str]) -> None:
    """Whatever overlays come and go and whatever the condition does, a latching alarm that
    was active — latched and acknowledged at the start, or active at any time since while
    not out of service, also under a shelf or a suppression (hidden latch) — reaches normal
    only through an acknowledge."""
    from gateway.alarms.journal import Journal

    clock = ManualClock()
    path = tmp_path_factory.mktemp("latch") / "alarms.sqlite"
    manager = AlarmManager(Journal(path, clock=clock), clock)
    try:
        manager.observe([fire(latched)])
        if latched:
            manager.acknowledge([FIRE], "guard")
        # the journal's last event when it first had to latch (None: it never had to yet)
        owed_since: int | None = 0 if latched else None
        for step in steps:
            try:
                if step in ("clear", "rise"):
                    manager.observe([fire(step == "rise")])
                elif step == "shelve":
                    manager.shelve(FIRE, "op", clock.now_ns() + MINUTE, "nuisance")
                elif step == "unshelve":
                    manager.unshelve(FIRE, "op")
                elif step == "suppress":
                    manager.suppress("batt-3f", "op", "hot work", clock.now_ns() + MINUTE)
                elif step == "unsuppress":
                    manager.unsuppress("batt-3f", "op")
                elif step == "oos":
                    manager.set_out_of_service(FIRE, "tech", "work")
                elif step == "rts":
                    manager.return_to_service(FIRE, "tech")
                else:
                    clock.advance(61)
                    manager.tick()
            except AlarmCommandError:
                pass
            view = manager.get(FIRE)
            if owed_since is None and view.condition and view.out_of_service is None:
                owed_since = manager.last_seq
        if owed_since is not None:
            reset = [e for e in manager.events_since(owed_since)
                     if e.rule == FIRE.rule and e.state is N]
            assert reset == [], f"reset without an acknowledge: {reset}"
            assert manager.get(FIRE).state is not N
    finally:
        manager.close()


# --- F2: an escalation of an active alarm ------------------------------------------------------

def test_an_escalation_after_the_acknowledge_annunciates_afresh(manager: AlarmManager) -> None:
    manager.observe([fan(Severity.MAJOR, ("alarm_panel",))])
    manager.acknowledge([FAN], "NOC")
    assert "siren" not in manager.get(FAN).demanded_roles
    events = manager.observe([fan(Severity.CRITICAL, ("charge_inhibit", "siren",
                                                      "alarm_panel"))])
    mine = [e for e in events if e.rule == FAN.rule]
    assert [(e.previous_state, e.state, e.severity) for e in mine] == [
        (AA, AU, Severity.CRITICAL)]
    assert mine[0].note == "escalated: major -> critical"
    view = manager.get(FAN)
    assert view.severity is Severity.CRITICAL and view.state is AU
    assert {"siren", "charge_inhibit"} <= view.demanded_roles, "the siren sounds"
    # unchanged afterwards: no event per round
    assert manager.observe([fan(Severity.CRITICAL, ("charge_inhibit", "siren",
                                                    "alarm_panel"))]) == []


def test_an_escalation_before_the_acknowledge_is_journalled_with_its_severity(
        manager: AlarmManager) -> None:
    manager.observe([fan(Severity.MAJOR, ("alarm_panel",))])
    events = manager.observe([fan(Severity.CRITICAL, ("siren", "alarm_panel"))])
    assert [(e.previous_state, e.state, e.severity, e.note) for e in events] == [
        (AU, AU, Severity.CRITICAL, "escalated: major -> critical")]
    journalled: list[AlarmEvent] = manager.events_since(0)
    assert journalled[-1].severity is Severity.CRITICAL, "the central side sees critical"


def test_a_de_escalation_is_journalled_and_not_re_annunciated(manager: AlarmManager) -> None:
    manager.observe([fan(Severity.CRITICAL, ("siren", "alarm_panel"))])
    manager.acknowledge([FAN], "NOC")
    events = manager.observe([fan(Severity.MAJOR, ("alarm_panel",))])
    assert [(e.previous_state, e.state, e.severity, e.note) for e in events] == [
        (AA, AA, Severity.MAJOR, "de-escalated: critical -> major")]


def test_a_new_sounder_at_the_same_severity_is_an_escalation(manager: AlarmManager) -> None:
    manager.observe([fan(Severity.MAJOR, ("alarm_panel",))])
    manager.acknowledge([FAN], "NOC")
    events = manager.observe([fan(Severity.MAJOR, ("alarm_panel", "siren"))])
    assert [(e.state, e.note) for e in events] == [(AU, "escalated: asks for siren")]


def test_an_escalation_ends_a_shelf(manager: AlarmManager, clock: ManualClock) -> None:
    manager.observe([fan(Severity.MAJOR, ("alarm_panel",))])
    manager.shelve(FAN, "NOC", clock.now_ns() + 60 * MINUTE, "airflow switch flaky")
    events = manager.observe([fan(Severity.CRITICAL, ("charge_inhibit", "siren"))])
    assert [(e.previous_state, e.state, e.note) for e in events] == [
        (AlarmState.SHELVED, AU, "unshelved, escalated: major -> critical")]
    assert "siren" in manager.get(FAN).demanded_roles


def test_an_escalation_survives_a_restart(make_manager: MakeManager) -> None:
    first = make_manager()
    first.observe([fan(Severity.MAJOR, ("alarm_panel",))])
    first.acknowledge([FAN], "NOC")
    first.observe([fan(Severity.CRITICAL, ("siren", "alarm_panel"))])
    first.close()
    again = make_manager()
    view = again.get(FAN)
    assert view.state is AU and view.severity is Severity.CRITICAL


# --- F3: no shelf hides a critical alarm nobody acknowledged -----------------------------------

def h2(active: bool = True) -> Evaluation:
    return ev(H2.rule, H2.subject, active, severity=Severity.CRITICAL, room="batt-3f",
              value=30.0, actions=("siren", "exhaust_fan", "charge_inhibit"),
              title="Hydrogen alarm")


def test_an_unacknowledged_critical_alarm_cannot_be_shelved(
        manager: AlarmManager, clock: ManualClock) -> None:
    manager.observe([h2()])
    before = manager.events_since(0)
    with pytest.raises(AlarmCommandError) as refused:
        manager.shelve(H2, "viewer", clock.now_ns() + 7 * 24 * 60 * MINUTE, "nuisance")
    message = str(refused.value)
    assert message.startswith("shelving would hide 1 critical alarm nobody has acknowledged")
    assert "explosion.h2_alarm@h2-batt-01.h2" in message and "acknowledge it first" in message
    assert manager.events_since(0) == before
    assert {"siren", "exhaust_fan", "charge_inhibit"} <= manager.get(H2).demanded_roles
    # returned but unacknowledged: still refused
    manager.observe([h2(False)])
    with pytest.raises(AlarmCommandError, match="nobody has acknowledged"):
        manager.shelve(H2, "viewer", clock.now_ns() + MINUTE, "nuisance")
    # acknowledged: an operator who has seen it may shelve it
    manager.observe([h2(True)])
    manager.acknowledge([H2], "NOC")
    manager.shelve(H2, "NOC", clock.now_ns() + MINUTE, "detector drifting, tech on site")
    assert manager.get(H2).state is AlarmState.SHELVED


def test_a_major_alarm_unacknowledged_may_still_be_shelved(
        manager: AlarmManager, clock: ManualClock) -> None:
    manager.observe([ev("env.temp_high", "th-1.temp", True)])
    manager.shelve(AlarmKey("env.temp_high", "th-1.temp"), "op", clock.now_ns() + MINUTE,
                   "known")


# --- F6: acknowledge all never resets an acknowledged latch ------------------------------------

def test_acknowledge_all_leaves_an_acknowledged_latch_for_its_reset(
        manager: AlarmManager) -> None:
    latched_fire(manager, acknowledged=True)
    other = AlarmKey("env.temp_high", "th-1.temp")
    manager.observe([ev(other.rule, other.subject, True, room="batt-3f")])
    events = manager.acknowledge_all("Zhang Wei (NOC)")
    assert [(e.rule, e.state) for e in events] == [(other.rule, AA)]
    view = manager.get(FIRE)
    assert view.state is AA and {"strobe", "exhaust_fan"} <= view.demanded_roles
    # the reset is an acknowledge of its own
    assert manager.acknowledge([FIRE], "local guard")[0].state is N


def test_acknowledge_all_still_resets_an_unacknowledged_latch(manager: AlarmManager) -> None:
    """An unacknowledged latched alarm waits for its acknowledge, which is its reset (the
    panel's acknowledge-all does the same)."""
    latched_fire(manager, acknowledged=False)
    events = manager.acknowledge_all("NOC", room="batt-3f")
    assert [(e.previous_state, e.state) for e in events] == [(AU, N)]
