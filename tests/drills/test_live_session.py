"""A live drill's session (gateway.drills.live) on the real safety core, fed by the telecom
site's simulated devices through the gateway's decoding path on a manual clock (the drills'
fast mode): what it refuses, what its overlay raises, that a silent drill drives nothing, that
an evacuation drill does, that a real hazard ends it at once and sounds, and what the
evaluation makes of it. The control socket's request handling (gateway.drills.live_control) is
exercised on a real, not started, Gateway: bad requests of any shape get a clear refusal."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.alarms.lifecycle import AlarmState
from gateway.config.loader import load_gateway_config
from gateway.daemon import Gateway
from gateway.drills.live import LiveDrill, LiveDrillError
from gateway.drills.live_control import LiveDrills
from gateway.drills.live_eval import evaluate
from gateway.drills.live_html import drill_text
from gateway.drills.model import Drill, live_problems
from gateway.safety import SafetyCore
from gateway.sim.signals import Constant
from tests.fixtures.core_rig import CoreRig

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"
SMOKE = ("smoke-tx-01.alarm", "smoke-tx-02.alarm")
FIRE_DRILL = ("fire.smoke_coincidence", "drill:tx-3f")
FIRE = ("fire.smoke_coincidence", "tx-3f")


def drill(**extra: Any) -> Drill:
    data: dict[str, Any] = {
        "drill": "fire_test", "title": "Fire drill", "room": "tx-3f", "duration": "5m",
        "steps": [{"at": "2s", "set": {SMOKE[0]: True, SMOKE[1]: True}}],
        "expect": [{"alarm": "fire.smoke_coincidence", "subject": "tx-3f", "after": "2s",
                    "within": "8s"},
                   {"output": "siren-3f", "turns": True, "after": "2s", "within": "8s"}],
        "forbid": ["*"], "allow": ["fire.smoke_detector@*"]}
    data.update(extra)
    return Drill.model_validate(data)


class Rig(CoreRig):
    """The safety core on a manual clock, polled and driven as the daemon does."""

    def __init__(self, tmp: Path, site: Path = SITE, siren: str = "siren-3f") -> None:
        super().__init__(site, tmp / "alarms.sqlite")
        self.siren = siren
        self.siren_on_at: float | None = None

    def after_round(self) -> None:
        if self.core.wanted[self.siren] and self.siren_on_at is None:
            self.siren_on_at = self.clock.monotonic()

    def state(self, key: tuple[str, str]) -> AlarmState | None:
        views = {(v.key.rule, v.key.subject): v for v in self.core.alarms.active()}
        return views[key].state if key in views else None

    def start(self, d: Drill, *, evacuation: bool = False) -> LiveDrill:
        session = LiveDrill(d, self.core, evacuation=evacuation, actor="lead")
        self.core.drill = session
        return session


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    r.run(5)  # every device read once
    yield r
    r.core.close()


def test_what_a_live_drill_file_may_not_do() -> None:
    assert live_problems(drill()) == []
    problems = live_problems(drill(room=None, duration="5h", steps=[
        {"at": "1s", "fault": {"device": "th-tx-a03", "mode": "no_reply"}},
        {"at": "2s", "stick": {"point": "do-tx-01.do1", "state": True}}],
        expect=[{"writes": "do-tx-01.do1", "at_most": 1, "after": "1s", "within": "1s"}]))
    text = " | ".join(problems)
    assert "names its `room`" in text and "longer than a live drill" in text
    assert "steps[0]" in text and "steps[1]" in text and "expect[0]" in text


def test_refusals_leave_the_core_untouched(rig: Rig) -> None:
    cases = {
        "is no room of this gateway": drill(room="nowhere"),
        "is no point of room 'tx-3f'": drill(steps=[{"at": "1s", "set": {"h2-batt-01.h2": 40}}]),
        "no rule of room 'tx-3f' reads": drill(steps=[{"at": "1s", "release": [SMOKE[0]]}]),
        "need a simulator": drill(steps=[{"at": "1s", "fault": {"device": "th-tx-a03",
                                                                "mode": "no_reply"}}]),
        # a typo in an expectation is refused, not a MISS that blames the rules
        r"expect\[1\]\.output: no output 'siren-3' on the gateway's site; did you mean "
        r"'siren-3f'\?": drill(expect=[drill().expect[0], {
            "output": "siren-3", "turns": True, "after": "2s", "within": "8s"}]),
        r"expect\[0\]\.alarm: no rule 'fire.smoke_coincidense'": drill(expect=[{
            "alarm": "fire.smoke_coincidense", "after": "2s", "within": "8s"}]),
    }
    for why, d in cases.items():
        with pytest.raises(LiveDrillError, match=why):
            rig.start(d)
        assert rig.core.drill is None
    rig.start(drill())
    with pytest.raises(LiveDrillError, match="is running; stop it first"):
        LiveDrill(drill(), rig.core, evacuation=False, actor="other")


def test_a_silent_drill_raises_drill_alarms_and_drives_nothing(rig: Rig) -> None:
    session = rig.start(drill())
    rig.run(6)
    assert rig.state(FIRE_DRILL) is AlarmState.ACTIVE_UNACKNOWLEDGED
    assert rig.state(FIRE) is None, "no real alarm from a drill"
    view = rig.core.alarms.get(FIRE_DRILL)
    assert view.drill and view.actions == () and view.room == "tx-3f"
    assert rig.siren_on_at is None and not rig.core.wanted["strobe-3f"]
    loud = ("do-tx-01.do1", "do-tx-01.do2")  # siren, strobe
    assert rig.site.log() and not any(e.kind == "write" and e.value is True
                                      for e in rig.site.log() if e.point in loud)
    assert rig.core.alarms.first_outs() == {}, "a drill alarm is no room's first-out"
    rig.core.alarms.acknowledge([FIRE_DRILL], "Li Na", "drill ack")
    rig.run(2)
    session.request_stop("stopped by lead")
    rig.run(1)
    assert session.finished and rig.core.drill is None
    assert not any(v.drill for v in rig.core.alarms.active()), "drill alarms end with it"
    kinds = [(e.kind.value, e.note or "") for e in rig.events if e.kind.value == "drill"]
    assert kinds[0][1].startswith("started: Fire drill (silent drill in room tx-3f")
    assert kinds[-1] == ("drill", "ended: stopped by lead")
    assert all(e.drill for e in rig.events if e.subject.startswith("drill:"))

    result = evaluate(session, rig.core.alarms.events_since(session.outcome.start_seq), [])
    assert result["ok"] is False  # the two detectors' drill alarms were never acknowledged
    fire = next(a for a in result["alarms"] if a["alarm"] == "fire.smoke_coincidence@drill:tx-3f")
    assert fire["acknowledged_by"] == "Li Na" and fire["note"] == "drill ack"
    assert 0 < fire["time_to_acknowledge_s"] < 10
    assert [c["ok"] for c in result["expected"]] == [True, True]  # the siren: held
    assert result["held"]["fire.smoke_coincidence@drill:tx-3f"][:2] == ["siren", "strobe"]
    assert sorted(result["missed"]) == [
        "fire.smoke_detector@drill:smoke-tx-01.alarm: not acknowledged",
        "fire.smoke_detector@drill:smoke-tx-02.alarm: not acknowledged"]
    assert "acknowledged at" in drill_text(result) and "by Li Na" in drill_text(result)


def test_a_real_hazard_ends_the_drill_at_once_and_sounds(rig: Rig) -> None:
    session = rig.start(drill())
    rig.run(6)
    assert rig.state(FIRE_DRILL) is AlarmState.ACTIVE_UNACKNOWLEDGED
    for point in SMOKE:
        rig.site.signals.set(point, Constant(value=True))
    rig.run(4)
    assert session.finished
    assert session.outcome.end_reason is not None
    assert session.outcome.end_reason.startswith("a real alarm in room tx-3f")
    assert rig.state(FIRE) is AlarmState.ACTIVE_UNACKNOWLEDGED
    assert rig.state(FIRE_DRILL) is None
    assert rig.core.wanted["siren-3f"] and rig.siren_on_at is not None
    real = rig.core.alarms.get(FIRE)
    assert not real.drill and "siren" in real.actions
    first = rig.core.alarms.first_outs()["tx-3f"]  # a real alarm: the drill's never count
    assert not first.subject.startswith("drill:")
    # the real activation and the drill's end came in the same round
    end = next(e for e in rig.events if e.kind.value == "drill" and "ended" in (e.note or ""))
    rise = next(e for e in rig.events if (e.rule, e.subject) == FIRE)
    assert rise.ts == end.ts


def test_an_evacuation_drill_drives_the_outputs(rig: Rig) -> None:
    session = rig.start(drill(duration="30s"), evacuation=True)
    rig.run(6)
    assert rig.core.alarms.get(FIRE_DRILL).actions[:2] == ("siren", "strobe")
    assert rig.core.wanted["siren-3f"] and rig.core.wanted["strobe-3f"]
    assert [e.value for e in rig.site.log() if e.point == "do-tx-01.do1"][-1] is True
    rig.core.alarms.acknowledge([FIRE_DRILL], "Li Na")
    rig.core.plan_outputs()
    assert not rig.core.wanted["siren-3f"] and rig.core.wanted["strobe-3f"]  # silenced
    rig.run(30)
    assert session.finished and session.outcome.end_reason is not None
    assert "duration 30 s is over" in session.outcome.end_reason
    rig.run(1)
    assert not rig.core.wanted["strobe-3f"], "the drill's end releases its outputs"


def test_a_drill_never_escalates_a_real_output_alarm_and_one_ends_it(rig: Rig) -> None:
    """The drills audit: after a real hydrogen alarm (fan on for its min_on, acknowledged), a
    silent drill played hydrogen in the battery room while the fan's airflow switch failed.
    The real fan alarm was escalated by the drill's h2 warning to critical — siren and charge
    inhibit on — and the drill ran on. The drill's alarms escalate nothing real, and a real
    alarm of the outputs in the drill's room ends the drill like the rules' own."""
    h2, airflow = "h2-batt-01.h2", "di-tx-01.di7"
    rig.site.signals.set(h2, Constant(value=30.0))
    rig.run(6)
    rig.site.signals.set(h2, Constant(value=1.0))
    rig.run(6)
    rig.core.alarms.acknowledge_all("Li Na", None, "gas cleared")
    rig.run(2)
    assert rig.core.wanted["fan-batt-3f"] and not rig.core.wanted["siren-3f"]
    rig.siren_on_at, writes_before = None, len(rig.site.log())
    session = rig.start(drill(drill="h2_test", room="batt-3f", duration="5m",
                              steps=[{"at": "1s", "set": {h2: 15}}], expect=[], allow=["*"]))
    rig.run(10)  # the warning's 5 s on-delay
    assert rig.state(("explosion.h2_warning", f"drill:{h2}")) is not None
    rig.site.signals.set(airflow, Constant(value=False))
    rig.run(25)
    fan = rig.core.alarms.get(("actions.output_no_feedback", "fan-batt-3f"))
    assert fan.condition and not fan.drill
    assert fan.severity.value == "major" and fan.actions == ("alarm_panel",)
    assert not rig.core.wanted["siren-3f"] and not rig.core.wanted["charge-inhibit-batt"]
    assert rig.siren_on_at is None, "not even for the round in which the drill ended"
    siren_inhibit = ("do-tx-01.do1", "do-tx-01.do4")
    assert not [e for e in rig.site.log()[writes_before:]
                if e.kind == "write" and e.point in siren_inhibit and e.value is True]
    assert session.finished and session.outcome.end_reason is not None
    assert session.outcome.end_reason.startswith("a real alarm in room batt-3f: "
                                                 "actions.output_no_feedback@fan-batt-3f")


def test_an_evacuation_drill_leaves_no_output_held_for_a_reset(tmp_path: Path) -> None:
    """The drills audit: an evacuation drill's off-gas alarm in the ESS room turned on the
    charge inhibit, which does not restore on clear, and it stayed on after the drill (held
    until an operator reset) — the battery charge-inhibited by a drill. Its end releases it;
    a real off-gas alarm still latches it."""
    r = Rig(tmp_path, REPO / "firmware_configs" / "datacenter_lithium_room.yaml", "siren-ess")
    try:
        r.run(5)
        session = LiveDrill(Drill.model_validate({
            "drill": "offgas_test", "title": "Off-gas drill", "room": "ess-a1",
            "duration": "40s", "steps": [{"at": "1s", "set": {"offgas-ess-01.co": 120}}],
            "expect": [], "allow": ["*"]}), r.core, evacuation=True, actor="lead")
        r.core.drill = session
        r.run(15)
        assert r.core.wanted["charge-inhibit-ess"], "the evacuation drill drives it"
        session.request_stop("stopped by lead")
        r.run(2)
        assert session.finished and not r.core.wanted["charge-inhibit-ess"]
        assert not r.core.planner.state["charge-inhibit-ess"].held_by_reset
        r.site.signals.set("offgas-ess-01.co", Constant(value=120.0))
        r.run(15)
        r.site.signals.set("offgas-ess-01.co", Constant(value=0.0))
        r.run(15)
        assert r.core.wanted["charge-inhibit-ess"], "a real alarm's hold stays"
        assert r.core.planner.state["charge-inhibit-ess"].reasons == ["held until reset"]
    finally:
        r.core.close()


@pytest.mark.slow
def test_a_restart_ends_the_drill_alarms(tmp_path: Path) -> None:
    r = Rig(tmp_path)
    r.run(5)
    r.start(drill())
    r.run(6)
    assert r.state(FIRE_DRILL) is not None
    r.core.close()
    again = SafetyCore(r.loaded, r.clock, tmp_path / "alarms.sqlite")
    try:
        assert not any(v.drill for v in again.alarms.active())
        last = again.alarms.events_since(0, limit=10_000)
        assert any(e.drill and e.note == "drill ended: the gateway restarted" for e in last)
        # the drill's own end too (a SIGKILL leaves the journal with its start only: the
        # drills audit's leftover), once, after its start, by the gateway
        drill_marks = [(e.kind.value, e.note, e.actor) for e in last if e.rule == "$drill"]
        assert len(drill_marks) == 2 and drill_marks[1] == (
            "drill", "ended: the gateway restarted", "system")
    finally:
        again.close()
    third = SafetyCore(r.loaded, r.clock, tmp_path / "alarms.sqlite")
    try:
        marks = [e for e in third.alarms.events_since(0, limit=10_000) if e.rule == "$drill"]
        assert len(marks) == 2, "the end is journalled once, not at every start"
    finally:
        third.close()


def test_a_drill_that_ended_leaves_nothing_for_a_restart(tmp_path: Path) -> None:
    r = Rig(tmp_path)
    r.run(5)
    session = r.start(drill())
    r.run(6)
    session.request_stop("stopped by lead")
    r.run(2)
    assert session.finished
    r.core.close()
    again = SafetyCore(r.loaded, r.clock, tmp_path / "alarms.sqlite")
    try:
        marks = [e.note for e in again.alarms.events_since(0, limit=10_000)
                 if e.rule == "$drill"]
        assert len(marks) == 2 and (marks[1] or "").startswith("ended: stopped by lead")
    finally:
        again.close()


def test_a_config_apply_ends_the_drill_as_such(tmp_path: Path) -> None:
    """The drills audit: a drill ended by a config change was journalled as ended by a
    restart, with no `$drill` end event and no drill_ended log line. The core that takes over
    ends it: its alarms' and its own end say the config changed, the end events come out with
    the new core's first round, and the evaluation is made (`on_end`)."""
    r = Rig(tmp_path)
    r.run(5)
    session = r.start(drill())
    ended: list[LiveDrill] = []
    session.on_end = ended.append
    r.run(6)
    new = SafetyCore(r.loaded, r.clock, tmp_path / "alarms.sqlite", open_alarms=False)
    try:
        new.take_over(r.core)
        r.core.close()
        assert session.finished and ended == [session]
        assert session.outcome.end_reason == "the gateway's config changed"
        assert not any(v.drill for v in new.alarms.active())
        out = new.step()
        assert ("drill", "ended: the gateway's config changed") in [
            (e.kind.value, e.note) for e in out]
        notes = {e.note for e in out if e.subject.startswith("drill:")}
        assert notes == {"drill ended: the gateway's config changed"}
        assert not [e for e in new.step() if e.drill], "handed on once"
    finally:
        new.close()


# --- the control socket's requests ------------------------------------------------------------

class Control:
    """`LiveDrills` on a real Gateway (built, never started), on an event loop of its own."""

    def __init__(self, state_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()

        async def build() -> Gateway:  # the bus loops' clients want a running loop
            return Gateway(load_gateway_config(SITE), state_dir=state_dir)

        self.gateway = self.loop.run_until_complete(build())
        self.drills = LiveDrills(self.gateway)

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.loop.run_until_complete(self.drills.answer(request))


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Control]:
    c = Control(tmp_path_factory.mktemp("state"))
    yield c
    c.gateway.core.close()
    c.loop.close()


def test_bad_requests_are_refused_clearly(control: Control) -> None:
    bad = {
        "start needs the drill file's text": {"action": "start"},
        "actor: 1-64 printable characters": {"action": "status", "actor": ""},
        "drill requests: action start": {"action": "launch"},
        "drill:3: title: not valid YAML": {"action": "start",
                                          "file": "drill: x\ntitle: [unclosed"},
        "room": {"action": "start", "file": "drill: x\ntitle: t\nduration: 1m\nroom: 3\n"},
        "no drill is running": {"action": "stop"},
        "evacuation true or false": {"action": "start", "file": "x: 1", "evacuation": "yes"},
    }
    for why, request in bad.items():
        answer = control.answer(request)
        assert answer["ok"] is False and why in answer["error"], (why, answer)
    assert control.gateway.core.drill is None
    answer = control.answer({"action": "start", "file": "x" * 300_000})
    assert answer["ok"] is False and "at most" in answer["error"]


@pytest.mark.slow
@given(st.dictionaries(st.sampled_from(["action", "file", "name", "evacuation", "actor", "x"]),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40),
                                 st.sampled_from(["start", "stop", "status"])), max_size=5))
def test_any_request_gets_an_answer(control: Control, request: dict[str, Any]) -> None:
    answer = control.answer(request)
    assert isinstance(answer["ok"], bool)
    if not answer["ok"]:
        assert isinstance(answer["error"], str) and answer["error"]
    assert control.gateway.core.drill is None


def test_a_long_actor_and_user_stay_within_the_wire_limit(tmp_path: Path) -> None:
    """The drills audit: `actor as user` was not bounded — 64 characters given and a user
    named, the drill's start and end events were refused by the uplink (actor at most 64
    characters) and never reached the central side, whose dashboards saw drill alarms but no
    drill. Now the actor is shortened as a config's author is, the user's name kept whole."""
    import yaml

    from gateway.uplink.records import event_message

    control = Control(tmp_path)
    try:
        data = drill().model_dump(mode="json", exclude_none=True)
        answer = control.answer({"action": "start", "file": yaml.safe_dump(data),
                                 "actor": "a" * 64, "peer": "roomwarden-tech"})
        assert answer["ok"] is True, answer
        control.gateway.core.step()  # the drill's start is journalled by its first round
        [start] = [e for e in control.gateway.core.alarms.events_since(0, limit=100)
                   if e.rule == "$drill"]
        assert len(start.actor) <= 64 and start.actor.endswith("… as roomwarden-tech")
        event_message(start, site="s", gateway="g")  # the contract takes it
    finally:
        control.gateway.core.close()
        control.loop.close()


@pytest.mark.parametrize(("point", "value"), [
    ("th-tx-a03.temperature", "hot"), ("th-tx-a03.temperature", float("nan")),
    ("th-tx-a03.temperature", True), ("smoke-tx-01.alarm", 7), ("smoke-tx-01.alarm", "yes"),
    ("th-tx-a03.temperature", {"kind": "scripted", "points": [[0, 20], [5, "hot"]]}),
])
def test_a_value_the_point_cannot_have_is_refused(rig: Rig, point: str, value: Any) -> None:
    """The drills audit: a temperature set to `hot`, NaN or `true`, a smoke alarm bit to 7 or
    "yes", were accepted; the drill then raised nothing and its evaluation blamed the rules."""
    with pytest.raises(LiveDrillError, match=rf"steps\[0\]\.set\.{point}: .* is no"):
        LiveDrill(drill(steps=[{"at": "2s", "set": {point: value}}]), rig.core,
                  evacuation=False, actor="lead")
    assert rig.core.drill is None


def test_values_of_the_points_own_kind_are_taken(rig: Rig) -> None:
    session = LiveDrill(drill(steps=[{"at": "2s", "set": {
        SMOKE[0]: True, "th-tx-a03.temperature": {"kind": "ramp", "start": 25, "end": 70,
                                                  "duration": 60}}}]),
        rig.core, evacuation=False, actor="lead")
    assert not session.finished


def test_a_drill_file_is_read_off_the_event_loop(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The drills audit: a 256 KiB drill file, even one refused, was parsed and validated on
    the event loop — ~0.3 s the rules could not run, per request. It is read in a thread."""
    import threading

    from gateway.config.loader import parse_yaml
    from gateway.drills import live_control

    threads: list[str] = []

    def spying(text: str, name: str) -> Any:
        threads.append(threading.current_thread().name)
        return parse_yaml(text, name)

    monkeypatch.setattr(live_control, "parse_yaml", spying)
    control = Control(tmp_path)
    try:
        answer = control.answer({"action": "start", "file": "drill: x\n" + "# pad\n" * 40_000})
        assert answer["ok"] is False
        assert threads and threads[0] != threading.main_thread().name
    finally:
        control.gateway.core.close()
        control.loop.close()
