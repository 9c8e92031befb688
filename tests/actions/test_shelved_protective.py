"""A shelf or a suppression hides an alarm from the operator; it does not switch off the
automatic protection (ISA-18.2 / IEC 62682). A shelved or suppressed alarm whose condition is
active (or that is latched active) still demands its protective outputs — exhaust fan, HVAC
stop, charge inhibit, or an output the site marks `protective` — and none of its annunciation
(siren, strobe, alarm panel); out of service demands nothing. Before, a shelved hydrogen alarm
stopped the battery room's fan and lifted the charge inhibit with the gas still there.

On the output planner (pure), on the alarm record's `hidden_active` and `demand_of`, and on the
real safety core of the shipped sites fed by their simulated devices on a manual clock
(tests/fixtures/core_rig.py), with a real alarm and a live evacuation drill's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.actions.planner import Demand, OutputPlanner, demand_of
from gateway.alarms.journal import Journal
from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.alarms.manager import AlarmManager
from gateway.clock import ManualClock
from gateway.config.outputs import PROTECTIVE_ROLES
from gateway.config.section import validator
from gateway.config.site import Output
from gateway.drills.live import LiveDrill
from gateway.drills.model import Drill
from gateway.sim.signals import Constant
from tests.alarms.conftest import ev
from tests.fixtures.core_rig import CoreRig

REPO = Path(__file__).resolve().parents[2]
TELECOM = REPO / "firmware_configs" / "telecom_equipment_room.yaml"
LITHIUM = REPO / "firmware_configs" / "datacenter_lithium_room.yaml"
ROLES = ("siren", "strobe", "exhaust_fan", "alarm_panel", "hvac_stop", "charge_inhibit",
         "other")
MINUTE = 60 * 10**9


def out(id_: str, role: str, **extra: object) -> Output:
    return validator(Output).validate_python({"id": id_, "role": role, "device": "do1",
                                               "point": "do1", **extra})


def planner(*outputs: Output) -> OutputPlanner:
    return OutputPlanner(outputs, (), {"do1": "batt"}, ManualClock())


def shelved(roles: tuple[str, ...], *, active: bool = True, name: str = "h2@x",
            overlay: str = "shelved", drill: bool = False) -> Demand:
    return Demand(name, roles, "batt", active, False, drill, overlay)


# --- the config: which outputs are protective -------------------------------------------------

def test_protective_by_role_and_by_the_site_s_own_mark() -> None:
    by_role = {r for r in ROLES if out("o", r).is_protective}
    assert by_role == {"exhaust_fan", "hvac_stop", "charge_inhibit"} == PROTECTIVE_ROLES
    assert out("valve", "other", protective=True).is_protective
    assert not out("fan", "exhaust_fan", protective=False).is_protective
    assert out("siren", "siren", protective=True).is_protective


# --- the planner ------------------------------------------------------------------------------

def test_a_shelved_alarm_keeps_its_protective_outputs_and_silences_the_rest() -> None:
    outputs = [out(r, r) for r in ROLES] + [out("valve", "other", protective=True),
                                            out("strobe-p", "strobe", protective=True)]
    p = planner(*outputs)
    wanted = p.plan([shelved(ROLES)])
    assert {o for o, on in wanted.items() if on} == {
        "exhaust_fan", "hvac_stop", "charge_inhibit", "valve", "strobe-p"}
    assert p.state["exhaust_fan"].reasons == ["h2@x (shelved: protective output stays on)"]
    assert p.state["exhaust_fan"].demanded_by == ["h2@x"]
    assert p.state["siren"].reasons == []
    suppressed = p.plan([shelved(ROLES, overlay="suppressed")])
    assert suppressed == wanted
    assert p.state["charge_inhibit"].reasons == ["h2@x (suppressed: protective output "
                                                 "stays on)"]
    # the condition clears under the shelf: nothing stays on, not even a latch_until_ack
    p = planner(out("fan", "exhaust_fan", latch_until_ack=True), out("siren", "siren"))
    p.plan([shelved(ROLES)])
    assert p.plan([shelved(ROLES, active=False)]) == {"fan": False, "siren": False}


def test_an_annunciated_alarm_is_named_as_before() -> None:
    p = planner(out("fan", "exhaust_fan"), out("siren", "siren"))
    assert p.plan([Demand("h2@x", ("exhaust_fan", "siren"), "batt", True, True)]) == {
        "fan": True, "siren": True}
    assert p.state["fan"].reasons == ["h2@x"] == p.state["siren"].reasons


@st.composite
def outputs_and_demand(draw: st.DrawFn) -> tuple[Output, Demand]:
    role = draw(st.sampled_from(ROLES))
    extra: dict[str, Any] = {
        "protective": draw(st.sampled_from([None, True, False])),
        "silence_on_ack": draw(st.sampled_from([None, True, False])),
        "latch_until_ack": draw(st.booleans()),
        "rooms": draw(st.sampled_from([(), ("tx",), ("batt", "tx")])),
    }
    demand = Demand("a@b", tuple(draw(st.lists(st.sampled_from(ROLES), max_size=4))),
                    draw(st.sampled_from(["batt", "tx", None])), draw(st.booleans()),
                    unacknowledged=False, overlay=draw(st.sampled_from(["shelved",
                                                                        "suppressed"])))
    return out("o", role, **extra), demand


@given(outputs_and_demand())
def test_a_hidden_alarm_drives_a_protective_output_as_if_acknowledged_and_nothing_else(
        case: tuple[Output, Demand]) -> None:
    """For any output and any shelved or suppressed demand: the output is on exactly when it
    is protective and the same alarm, annunciated and acknowledged, would switch it on."""
    output, hidden = case
    acknowledged = Demand(hidden.alarm, hidden.roles, hidden.room, hidden.active, False)
    expected = output.is_protective and planner(output).plan([acknowledged])["o"]
    assert planner(output).plan([hidden])["o"] == expected


def test_a_shelved_alarm_holds_an_output_until_reset_and_a_drill_s_does_not() -> None:
    """A charge inhibit that does not restore on clear: a real shelved alarm's demand holds
    it like any real alarm's (journalled, released by a reset only); a reset while the shelved
    alarm still demands it leaves it on for that alarm until its condition clears. A live
    drill's shelved alarm switches it but leaves no hold."""
    p = planner(out("inhibit", "charge_inhibit", restore_on_clear=False))
    assert p.plan([shelved(("charge_inhibit",))]) == {"inhibit": True}
    assert p.held() == {"inhibit"}
    assert p.reset("inhibit") == ["h2@x"]
    assert p.plan([shelved(("charge_inhibit",))]) == {"inhibit": True}
    assert p.plan([shelved(("charge_inhibit",), active=False)]) == {"inhibit": False}
    assert p.held() == set()
    drill = shelved(("charge_inhibit",), name="h2@drill:x", drill=True)
    assert p.plan([drill]) == {"inhibit": True}
    assert p.plan([]) == {"inhibit": False} and p.held() == set()


# --- the alarm record and the demand it makes ---------------------------------------------------

H2 = AlarmKey("explosion.h2_alarm", "h2-1.h2")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def manager(tmp_path: Path, clock: ManualClock) -> Iterator[AlarmManager]:
    made = AlarmManager(Journal(tmp_path / "alarms.sqlite", clock=clock), clock)
    yield made
    made.close()


def h2(active: bool, *, latching: bool = False) -> Any:
    return ev(H2.rule, H2.subject, active, room="batt", latching=latching,
              actions=("exhaust_fan", "charge_inhibit", "siren"))


def hidden(manager: AlarmManager) -> tuple[AlarmState, bool, Demand | None]:
    view = manager.get(H2)
    return view.state, view.hidden_active, demand_of(view)


def test_hidden_active_follows_the_condition_under_a_shelf(
        manager: AlarmManager, clock: ManualClock) -> None:
    manager.observe([h2(True)])
    manager.acknowledge([H2], "op")
    manager.shelve(H2, "op", clock.now_ns() + MINUTE, "drifting")
    state, active, demand = hidden(manager)
    assert state is AlarmState.SHELVED and active
    assert demand == Demand(str(H2), ("exhaust_fan", "charge_inhibit", "siren"), "batt", True,
                            False, False, "shelved")
    assert manager.get(H2).demanded_roles == frozenset(), "the state demands nothing"
    manager.observe([h2(False)])
    assert hidden(manager) == (AlarmState.SHELVED, False, None)
    manager.observe([h2(True)])  # back under the shelf: the fan again, nothing annunciated
    assert hidden(manager)[1:] == (True, demand)
    manager.unshelve(H2, "op")
    state, active, annunciated = hidden(manager)
    assert state is AlarmState.ACTIVE_UNACKNOWLEDGED and not active
    assert annunciated is not None and annunciated.overlay is None
    assert annunciated.unacknowledged


def test_a_latched_alarm_under_a_shelf_keeps_demanding_until_its_reset(
        manager: AlarmManager, clock: ManualClock) -> None:
    manager.observe([h2(True, latching=True)])
    manager.acknowledge([H2], "op")
    manager.observe([h2(False, latching=True)])  # latched, waiting for its reset
    manager.shelve(H2, "op", clock.now_ns() + MINUTE, "nuisance")
    assert hidden(manager)[:2] == (AlarmState.SHELVED, True)
    manager.unshelve(H2, "op")
    assert manager.get(H2).state is AlarmState.ACTIVE_UNACKNOWLEDGED  # still latched
    manager.acknowledge([H2], "op")  # the reset
    assert manager.get(H2).state is AlarmState.NORMAL


def test_suppressed_demands_while_active_out_of_service_never(
        manager: AlarmManager, clock: ManualClock) -> None:
    manager.observe([h2(True)])
    manager.acknowledge([H2], "op")
    manager.suppress("batt", "op", "hot work", clock.now_ns() + MINUTE)
    state, active, demand = hidden(manager)
    assert state is AlarmState.SUPPRESSED and active
    assert demand is not None and demand.overlay == "suppressed"
    manager.set_out_of_service(H2, "tech", "detector swap")  # out of service over it
    assert hidden(manager) == (AlarmState.OUT_OF_SERVICE, False, None)
    manager.return_to_service(H2, "tech")
    manager.unsuppress("batt", "op")
    manager.observe([h2(False)])
    manager.acknowledge([H2], "op")
    # an alarm that first rises under a suppression drives its protection too
    manager.suppress("batt", "op", "hot work", clock.now_ns() + MINUTE)
    manager.observe([h2(True)])
    assert hidden(manager)[:2] == (AlarmState.SUPPRESSED, True)


# --- the safety core of a shipped site ------------------------------------------------------------

H2_ALARM = ("explosion.h2_alarm", "h2-batt-01.h2")
H2_WARNING = ("explosion.h2_warning", "h2-batt-01.h2")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[CoreRig]:
    r = CoreRig(TELECOM, tmp_path / "alarms.sqlite")
    r.run(5)
    yield r
    r.core.close()


def hydrogen(rig: CoreRig) -> None:
    """30 % LEL in the battery room, both hydrogen alarms active and acknowledged."""
    rig.site.signals.set("h2-batt-01.h2", Constant(value=30.0))
    rig.run(10)
    rig.core.alarms.acknowledge([H2_ALARM, H2_WARNING], "op")
    rig.run(1)
    assert not rig.core.wanted["siren-3f"]


def wanted(rig: CoreRig) -> dict[str, bool]:
    return {o: rig.core.wanted[o] for o in ("siren-3f", "fan-batt-3f", "charge-inhibit-batt")}


@pytest.mark.parametrize("how", ["shelve", "suppress"])
def test_the_battery_room_stays_protected_under_a_shelf_or_suppression(
        rig: CoreRig, how: str) -> None:
    hydrogen(rig)
    alarms, until = rig.core.alarms, rig.clock.now_ns() + 60 * MINUTE
    if how == "shelve":
        for key in (H2_ALARM, H2_WARNING):
            alarms.shelve(key, "op", until, "drifting?")
    else:
        alarms.suppress("batt-3f", "op", "hot work", until)
    rig.run(400)  # past the fan's min_on (5 min): only the alarms keep it on
    assert wanted(rig) == {"siren-3f": False, "fan-batt-3f": True, "charge-inhibit-batt": True}
    word = "shelved" if how == "shelve" else "suppressed"
    assert rig.core.planner.state["fan-batt-3f"].reasons == [
        f"{k[0]}@{k[1]} ({word}: protective output stays on)" for k in (H2_ALARM, H2_WARNING)]
    rig.site.signals.set("h2-batt-01.h2", Constant(value=0.0))
    rig.run(5)
    assert wanted(rig)["charge-inhibit-batt"] is False, "the gas is gone"
    rig.run(300)
    assert wanted(rig) == dict.fromkeys(wanted(rig), False)


def test_out_of_service_releases_the_protection(rig: CoreRig) -> None:
    """The technician took the detector out: its reading is known invalid."""
    hydrogen(rig)
    for key in (H2_ALARM, H2_WARNING):
        rig.core.alarms.set_out_of_service(key, "tech", "detector swap")
    rig.run(2)
    assert wanted(rig) == {"siren-3f": False, "fan-batt-3f": True, "charge-inhibit-batt": False}
    assert rig.core.planner.state["fan-batt-3f"].reasons == ["min_on 300s"]
    rig.run(300)
    assert not wanted(rig)["fan-batt-3f"]


def test_a_shelved_evacuation_drill_alarm_keeps_its_protection_and_leaves_no_hold(
        tmp_path: Path) -> None:
    """A live evacuation drill's off-gas alarm in the ESS room, acknowledged and shelved,
    keeps the charge inhibit on (it does not restore on clear) for as long as the drill plays
    the gas, with no siren; the drill's end releases it and leaves no hold for a reset."""
    r = CoreRig(LITHIUM, tmp_path / "alarms.sqlite")
    try:
        r.run(5)
        session = LiveDrill(Drill.model_validate({
            "drill": "offgas_test", "title": "Off-gas drill", "room": "ess-a1",
            "duration": "2m", "steps": [{"at": "1s", "set": {"offgas-ess-01.co": 120}}],
            "expect": [], "allow": ["*"]}), r.core, evacuation=True, actor="lead")
        r.core.drill = session
        r.run(15)
        alarms = r.core.alarms
        drilled = [v.key for v in alarms.active() if v.drill]
        mine = [v.key for v in alarms.active() if v.drill and "charge_inhibit" in v.actions]
        assert mine and r.core.wanted["charge-inhibit-ess"]
        alarms.acknowledge(drilled, "Li Na")
        for key in mine:
            alarms.shelve(key, "Li Na", r.clock.now_ns() + 60 * MINUTE, "drill: seen")
        r.run(10)
        assert r.core.wanted["charge-inhibit-ess"] and not r.core.wanted["siren-ess"]
        assert all("(shelved: protective output stays on)" in why
                   for why in r.core.planner.state["charge-inhibit-ess"].reasons)
        assert not r.core.planner.state["charge-inhibit-ess"].held_by_reset
        session.request_stop("stopped by lead")
        r.run(2)
        assert session.finished and not r.core.wanted["charge-inhibit-ess"]
        assert r.core.planner.held() == set()
    finally:
        r.core.close()


def test_a_shelved_alarm_s_new_hold_is_journalled_naming_the_shelf(tmp_path: Path) -> None:
    """The ESS room's charge inhibit (it does not restore on clear): an operator resets it
    while the off-gas alarm still demands it, then shelves the acknowledged alarm; the gas goes
    and the inhibit with it. The gas comes back under the shelf: the inhibit is on and held
    until reset again, and the journal's hold event (rule `$output`) says which alarm, and
    that it is shelved."""
    from tests.continuity.test_output_holds import INHIBIT, Rig

    r = Rig(tmp_path)
    try:
        r.run(5)
        r.offgas(120.0)
        r.run(15)
        alarms = r.core.alarms
        alarms.acknowledge([v.key for v in alarms.active()], "Li Na")
        assert r.commands.reset_output(INHIBIT, "Li Na", None).still_on_for
        demanding = [v.key for v in alarms.active() if "charge_inhibit" in v.actions]
        for key in demanding:
            alarms.shelve(key, "Li Na", r.clock.now_ns() + 60 * MINUTE, "sensor drift?")
        r.run(2)
        assert r.core.wanted[INHIBIT] and not r.core.planner.state[INHIBIT].held_by_reset
        r.offgas(0.0)
        r.run(15)
        assert not r.core.wanted[INHIBIT]
        r.offgas(120.0)
        r.run(15)
        assert r.core.wanted[INHIBIT] and r.core.planner.state[INHIBIT].held_by_reset
        note = r.output_events()[-1].note or ""
        assert note.startswith("held until reset: switched on by explosion.")
        assert "(shelved: protective output stays on)" in note
        assert all(alarms.get(k).state is AlarmState.SHELVED for k in demanding)
    finally:
        r.core.close()
