"""Output supervision on a manual clock: commanded without feedback, feedback without command,
unknown feedback, escalation while a hazard alarm is present in the output's room."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from gateway.actions.supervision import (
    NO_FEEDBACK_RULE,
    UNEXPECTED_FEEDBACK_RULE,
    OutputSupervisor,
)
from gateway.alarms.events import AlarmView
from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.alarms.types import Evaluation, Severity
from gateway.clock import ManualClock
from gateway.config.loader import ConfigErrors, load_gateway_config
from gateway.config.section import validator
from gateway.config.site import Output
from gateway.field.sample import Quality, Sample
from tests import shipped

FAN = validator(Output).validate_python({
    "id": "fan", "role": "exhaust_fan", "device": "do", "point": "do3", "rooms": ["batt"],
    "feedback": {"device": "di", "point": "di7", "expect": True, "within": "20s"}})


def _supervisor(clock: ManualClock) -> OutputSupervisor:
    return OutputSupervisor([FAN], {"fan": ["batt"]}, {"batt": "battery"}, clock,
                            OutputSupervisor.escalations_of(shipped.packs().values()))


def _airflow(sup: OutputSupervisor, clock: ManualClock, value: bool | None,
             quality: Quality = Quality.GOOD) -> None:
    sup.ingest([Sample("di.di7", value, clock.now_ns(), quality)])


def _by_rule(evaluations: list[Evaluation]) -> dict[str, Evaluation]:
    return {e.rule: e for e in evaluations}


def _h2_alarm(condition: bool) -> AlarmView:
    return AlarmView(
        key=AlarmKey("explosion.h2_alarm", "h2.h2"), state=AlarmState.ACTIVE_UNACKNOWLEDGED,
        condition=condition, value=30.0, severity=Severity.CRITICAL, title="H2",
        room="batt", actions=("exhaust_fan",), latching=False, chattering=False,
        activated_ns=1, acked_by=None, acked_ns=None, shelf=None, suppression=None,
        out_of_service=None, first_out=True, flood_first_out=False,
        demanded_roles=frozenset({"exhaust_fan"}), acknowledgeable=True)


def _run(sup: OutputSupervisor, clock: ManualClock, seconds: int, on: bool,
         airflow: bool | None, alarms: list[AlarmView] | None = None
         ) -> dict[str, Evaluation]:
    result: dict[str, Evaluation] = {}
    for _ in range(seconds):
        clock.advance(1.0)
        _airflow(sup, clock, airflow)
        result = _by_rule(sup.evaluate({"fan": on}, alarms or []))
    return result


def test_commanded_without_airflow_is_raised_after_within() -> None:
    clock = ManualClock()
    sup = _supervisor(clock)
    assert not _run(sup, clock, 30, False, False)[NO_FEEDBACK_RULE].active  # off, no airflow
    result = _run(sup, clock, 20, True, False)  # the command counts from the first of these
    assert result == {}  # 19 s: the fan may still be running up; no verdict yet
    result = _run(sup, clock, 1, True, False)  # 20 s
    assert result[NO_FEEDBACK_RULE].active and result[NO_FEEDBACK_RULE].severity == "major"
    assert result[NO_FEEDBACK_RULE].subject == "fan" and result[NO_FEEDBACK_RULE].room == "batt"
    assert not result[UNEXPECTED_FEEDBACK_RULE].active
    result = _run(sup, clock, 1, True, True)  # airflow at last
    assert not result[NO_FEEDBACK_RULE].active
    # the fan stops while running: `within` from the first sample that shows it
    assert not _run(sup, clock, 20, True, False)[NO_FEEDBACK_RULE].active
    assert _run(sup, clock, 1, True, False)[NO_FEEDBACK_RULE].active


def test_a_fan_that_starts_in_time_raises_nothing() -> None:
    clock = ManualClock()
    sup = _supervisor(clock)
    _run(sup, clock, 5, True, False)  # running up
    result = _run(sup, clock, 60, True, True)
    assert not result[NO_FEEDBACK_RULE].active and not result[UNEXPECTED_FEEDBACK_RULE].active


def test_airflow_without_command() -> None:
    clock = ManualClock()
    sup = _supervisor(clock)
    # off since the supervisor started (the gateway's start): 19 s, then 20 s
    assert _run(sup, clock, 19, False, True) == {}
    result = _run(sup, clock, 1, False, True)
    assert result[UNEXPECTED_FEEDBACK_RULE].active
    assert not _run(sup, clock, 1, False, False)[UNEXPECTED_FEEDBACK_RULE].active


def test_unknown_feedback_never_raises_and_keeps_an_alarm() -> None:
    clock = ManualClock()
    sup = _supervisor(clock)
    for _ in range(60):
        clock.advance(1.0)
        _airflow(sup, clock, None, Quality.COMM_ERROR)
        result = _by_rule(sup.evaluate({"fan": True}, []))
    assert not result  # never a verdict on unknown feedback
    assert _run(sup, clock, 21, True, False)[NO_FEEDBACK_RULE].active
    clock.advance(1.0)
    _airflow(sup, clock, None, Quality.COMM_ERROR)
    assert _by_rule(sup.evaluate({"fan": True}, []))[NO_FEEDBACK_RULE].active


def test_a_sample_from_before_the_command_is_no_evidence() -> None:
    clock = ManualClock()
    sup = _supervisor(clock)
    _airflow(sup, clock, False)  # the last poll of the DI module was before the command
    for _ in range(30):
        clock.advance(1.0)
        result = _by_rule(sup.evaluate({"fan": True}, []))
    assert not result  # no poll since the command: no verdict, nothing reported
    _airflow(sup, clock, False)  # the first poll since: 30 s after the command, no airflow
    assert _by_rule(sup.evaluate({"fan": True}, []))[NO_FEEDBACK_RULE].active


def test_escalated_while_hydrogen_is_present_in_the_room() -> None:
    clock = ManualClock()
    sup = _supervisor(clock)
    result = _run(sup, clock, 21, True, False, [_h2_alarm(True)])
    alarm = result[NO_FEEDBACK_RULE]
    assert alarm.active and alarm.severity is Severity.CRITICAL
    assert "charge_inhibit" in alarm.actions and "siren" in alarm.actions
    # the gas gone (condition cleared), the fan alarm stays but is no longer escalated
    alarm = _run(sup, clock, 1, True, False, [_h2_alarm(False)])[NO_FEEDBACK_RULE]
    assert alarm.active and alarm.severity is Severity.MAJOR
    assert "charge_inhibit" not in alarm.actions


def test_escalated_in_a_ups_room_too() -> None:
    """A UPS room holds batteries (the packs treat it as a battery room for temperatures and
    blocks): its fan failing under hydrogen is as critical as in a battery room."""
    clock = ManualClock()
    sup = OutputSupervisor([FAN], {"fan": ["batt"]}, {"batt": "ups"}, clock,
                           OutputSupervisor.escalations_of(shipped.packs().values()))
    alarm = _run(sup, clock, 21, True, False, [_h2_alarm(True)])[NO_FEEDBACK_RULE]
    assert alarm.active and alarm.severity is Severity.CRITICAL
    assert "charge_inhibit" in alarm.actions


def test_no_escalation_outside_battery_rooms() -> None:
    clock = ManualClock()
    sup = OutputSupervisor([FAN], {"fan": ["batt"]}, {"batt": "equipment"}, clock,
                           OutputSupervisor.escalations_of(shipped.packs().values()))
    alarm = _run(sup, clock, 21, True, False, [_h2_alarm(True)])[NO_FEEDBACK_RULE]
    assert alarm.active and alarm.severity is Severity.MAJOR


def test_feedback_must_name_an_enabled_boolean_point(tmp_path: Path) -> None:
    site = {
        "gateway": {"id": "gw", "site": "s"},
        "rooms": [{"id": "batt", "type": "battery"}],
        "buses": [{"id": "b", "type": "modbus_tcp", "host": "127.0.0.1"}],
        "devices": [
            {"id": "do", "bus": "b", "unit": 1, "profile": "generic_relay_module", "room": "batt"},
            {"id": "di", "bus": "b", "unit": 2, "profile": "generic_di_module", "room": "batt",
             "points": {"di6": {"enabled": False}}},
            {"id": "th", "bus": "b", "unit": 3, "profile": "generic_th_sensor", "room": "batt"}],
        "outputs": [
            {"id": "f1", "role": "exhaust_fan", "device": "do", "point": "do1",
             "feedback": {"device": "nope", "point": "di7"}},
            {"id": "f2", "role": "exhaust_fan", "device": "do", "point": "do2",
             "feedback": {"device": "th", "point": "temperature"}},
            {"id": "f3", "role": "exhaust_fan", "device": "do", "point": "do3",
             "feedback": {"device": "di", "point": "di6"}},
            {"id": "f4", "role": "exhaust_fan", "device": "do", "point": "do4",
             "feedback": {"device": "di", "point": "di7", "within": "15s"}}],
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False), encoding="utf-8")
    with pytest.raises(ConfigErrors) as caught:
        load_gateway_config(path)
    messages = [f"{'.'.join(map(str, e.path))}: {e.reason}" for e in caught.value.errors]
    assert messages == [
        "outputs.0.feedback.device: device 'nope' is not defined in `devices`",
        "outputs.1.feedback.point: th.temperature is not an enabled boolean point of profile "
        "'generic_th_sensor'",
        "outputs.2.feedback.point: di.di6 is not an enabled boolean point of profile "
        "'generic_di_module'"], messages


def test_no_verdict_yet_reports_nothing_so_a_restored_alarm_stands() -> None:
    """After a restart or an apply the supervisor starts afresh: until the feedback shows
    something since the (new) command, it reports nothing — an active alarm is not cleared."""
    clock = ManualClock()
    sup = _supervisor(clock)
    assert _run(sup, clock, 10, True, False) == {}  # 9 s into `within`: no verdict yet
    assert _run(sup, clock, 11, True, False)[NO_FEEDBACK_RULE].active
    # the command changes (the fan no longer wanted) while the airflow switch's module is
    # offline: no evidence, so no verdict, and the fan alarm is not cleared blindly
    for _ in range(30):
        clock.advance(1.0)
        _airflow(sup, clock, None, Quality.COMM_ERROR)
        assert _by_rule(sup.evaluate({"fan": False}, [])) == {}
    assert not _run(sup, clock, 1, False, False)[NO_FEEDBACK_RULE].active


def test_outputs_sharing_a_feedback_point_are_each_supervised() -> None:
    """Two fans on one airflow switch (one duct): one sample of the switch is evidence for
    both (the output chain audit, F3: only the last output on a point was fed)."""
    clock = ManualClock()
    other = dataclasses.replace(FAN, id="fan-2", point="do4")
    sup = OutputSupervisor([FAN, other], {"fan": ["batt"], "fan-2": ["batt"]},
                           {"batt": "battery"}, clock)

    def run(seconds: int, wanted: dict[str, bool], airflow: bool) -> dict[tuple[str, str], bool]:
        result: list[Evaluation] = []
        for _ in range(seconds):
            clock.advance(1.0)
            _airflow(sup, clock, airflow)
            result = sup.evaluate(wanted, [])
        return {(e.rule, e.subject): e.active for e in result}

    both = run(21, {"fan": True, "fan-2": True}, False)  # `within`: 20 s
    assert both[(NO_FEEDBACK_RULE, "fan")] and both[(NO_FEEDBACK_RULE, "fan-2")], both
    both = run(1, {"fan": True, "fan-2": True}, True)
    assert not both[(NO_FEEDBACK_RULE, "fan")] and not both[(NO_FEEDBACK_RULE, "fan-2")], both


def test_feedback_showing_the_output_acting_is_what_the_interlocks_see() -> None:
    """`acting`, the interlocks' field view (gateway.actions.field): the feedback shows the fan
    running at once, commanded or not and before `within` — a welded contactor blocks what is
    interlocked with it before its alarm is due. A bad sample tells nothing (the good one
    before stands: one failed poll must not let the interlocked output start); the feedback
    device offline, or nothing read yet, shows nothing (unknown); no airflow shows nothing;
    an output without a feedback is never in it; `expect: false` is honoured."""
    clock = ManualClock()
    sup = _supervisor(clock)
    acting = {"fan": "feedback di.di7 shows it acting"}
    assert sup.acting(["fan"]) == {}  # nothing read yet: unknown
    _airflow(sup, clock, True)
    assert sup.acting(["fan", "hvac"]) == acting
    assert sup.evaluate({"fan": False}, []) == []  # no verdict yet; the interlocks see it
    _airflow(sup, clock, None, Quality.COMM_ERROR)
    assert sup.acting(["fan"]) == acting
    sup.ingest([Sample("di.online", None, clock.now_ns(), Quality.COMM_ERROR)])
    assert sup.acting(["fan"]) == acting, "online unknown: not offline"
    sup.ingest([Sample("di.online", False, clock.now_ns(), Quality.GOOD)])
    assert sup.acting(["fan"]) == {}, "the feedback device offline: unknown"
    _airflow(sup, clock, True)
    assert sup.acting(["fan"]) == acting
    _airflow(sup, clock, False)
    assert sup.acting(["fan"]) == {}
    opens = validator(Output).validate_python({  # an auxiliary contact that opens while it acts
        "id": "fan-nc", "role": "exhaust_fan", "device": "do", "point": "do4",
        "feedback": {"device": "di", "point": "di7", "expect": False}})
    nc = OutputSupervisor([opens], {"fan-nc": ["batt"]}, {"batt": "battery"}, clock)
    nc.ingest([Sample("di.di7", False, clock.now_ns(), Quality.GOOD)])
    assert nc.acting(["fan-nc"]) == {"fan-nc": "feedback di.di7 shows it acting"}
    assert sup.acting([]) == {}
