"""The engine on the shipped sites: subject selection, scenarios through every pack, parameter
overrides, the config hook's checks."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alarms.types import Evaluation, Severity
from gateway.clock import ManualClock
from gateway.config.loader import LoadedConfig
from gateway.config.section import validator
from gateway.field.sample import Quality, Sample, Value
from gateway.rules.binding import bind
from gateway.rules.config import (
    ParameterOverrides,
    check_rules,
)
from gateway.rules.engine import RuleEngine
from gateway.rules.model import RulePack
from gateway.rules.section import ParameterOverride, RulesSection
from gateway.rules.sitepoints import SitePoints
from tests import shipped

REPO = Path(__file__).resolve().parents[2]
TELECOM = REPO / "firmware_configs" / "telecom_equipment_room.yaml"
DATACENTER = REPO / "firmware_configs" / "datacenter_lithium_room.yaml"
DISTRIBUTION = REPO / "firmware_configs" / "power_distribution_room.yaml"

# The shipped packs and sites: tests/shipped.py (loaded on first use, once per process).


class Site:
    """An engine on a shipped config with a manual clock, and a way to feed it."""

    def __init__(self, path: Path = TELECOM, overrides: ParameterOverrides | None = None,
                 packs: dict[str, RulePack] | None = None) -> None:
        self.loaded: LoadedConfig = shipped.site(path.stem)
        self.clock = ManualClock()
        self.engine = RuleEngine(packs or shipped.packs(), self.loaded, self.clock, overrides)

    def feed(self, values: Mapping[str, Value], quality: Quality = Quality.GOOD) -> None:
        ts = self.clock.now_ns()
        self.engine.on_samples([Sample(p, v, ts, quality) for p, v in values.items()])

    def run(self, seconds: float, values: Mapping[str, Value], step: float = 1.0,
            quality: Quality = Quality.GOOD) -> dict[tuple[str, str], Evaluation]:
        """Feed `values` and evaluate every `step` seconds for `seconds`; the last results."""
        result: dict[tuple[str, str], Evaluation] = {}
        elapsed = 0.0
        while True:
            self.feed(values, quality)
            result = self.evaluate()
            if elapsed >= seconds:
                return result
            self.clock.advance(step)
            elapsed += step

    def evaluate(self) -> dict[tuple[str, str], Evaluation]:
        return {(e.rule, e.subject): e for e in self.engine.evaluate()}

    def active(self) -> set[tuple[str, str]]:
        return {key for key, e in self.evaluate().items() if e.active}


def quiet_telecom() -> dict[str, Value]:
    values: dict[str, Value] = {}
    for device in ("th-tx-a03", "th-tx-b06", "th-batt-01"):
        values |= {f"{device}.temperature": 23.0, f"{device}.humidity": 45.0,
                   f"{device}.online": True}
    values |= {"h2-batt-01.h2": 0, "h2-batt-01.online": True,
               "smoke-tx-01.alarm": False, "smoke-tx-02.alarm": False}
    return values


# --- selection -------------------------------------------------------------------------------


def test_h2_rule_binds_to_the_battery_room_h2_point() -> None:
    engine = Site().engine
    # the reading, and the detector's own 25 %LEL alarm bit (a stuck analog channel)
    assert sorted(s for r, s in engine.bindings() if r == "explosion.h2_alarm") == [
        "h2-batt-01.h2", "h2-batt-01.status.alarm2"]
    [detail] = [b for b in engine.binding_details()
                if b.rule == "explosion.h2_alarm" and b.subject == "h2-batt-01.h2"]
    assert detail.room == "batt-3f" and detail.parameters["alarm_lel"] == 25


def test_subjects_by_point_device_and_room() -> None:
    bindings = set(Site().engine.bindings())
    assert ("fire.smoke_coincidence", "tx-3f") in bindings
    assert ("fire.smoke_detector", "smoke-tx-01.alarm") in bindings
    assert ("sensor_health.device_offline", "ups-tx-01") in bindings
    assert ("power.phase_unbalance", "meter-ac-main") in bindings
    assert ("environment.dew_point_allowable", "th-tx-a03") in bindings
    assert ("environment.dew_point_allowable", "th-batt-01") not in bindings  # battery room
    assert ("environment.battery_room_temperature", "th-batt-01.temperature") in bindings
    assert ("explosion.gas_detector_failure", "h2-batt-01") in bindings
    assert ("explosion.gas_detector_failure", "th-tx-a03") not in bindings
    assert ("power.ups_on_battery", "ups-tx-01.status.utility_fail") in bindings
    # the battery room has one T/H sensor: nothing to compare it with
    assert ("sensor_health.sensor_disagreement", "batt-3f") not in bindings
    # disabled devices and points are not bound
    assert not any(s.startswith("di-tx-01.di1") for _, s in bindings)


def test_coincidence_needs_two_devices_in_the_room() -> None:
    bindings = set(Site(DISTRIBUTION).engine.bindings())
    assert ("fire.smoke_detector", "di-lv-01.di1") in bindings
    assert not any(r == "fire.smoke_coincidence" for r, _ in bindings)


def test_bindings_are_unique_and_evaluate_returns_one_each() -> None:
    site = Site(DATACENTER)
    bindings = site.engine.bindings()
    assert len(bindings) == len(set(bindings))
    evaluations = site.engine.evaluate()
    assert [(e.rule, e.subject) for e in evaluations] == bindings
    assert not any(e.active for e in evaluations)


@pytest.mark.parametrize("path", [TELECOM, DATACENTER, DISTRIBUTION])
def test_binding_details_are_the_bindings_the_rules_were_bound_as(path: Path) -> None:
    """The engine keeps a binding's parts, not the `Binding`: the one it gives back is equal
    to the one `bind` made, for every evaluated binding, in order."""
    site = Site(path)
    engine = site.engine
    bound = [binding for binding, _, node in bind(
        engine.packs, SitePoints(site.loaded, 0.0), engine.overrides) if node is not None]
    assert engine.binding_details() == bound
    assert engine.bindings() == [(b.rule, b.subject) for b in bound]
    assert len({id(b.parameters) for b in engine.binding_details()}) < len(bound)


# --- scenarios -------------------------------------------------------------------------------


def test_h2_warning_starts_the_fan_then_the_alarm_stops_charging() -> None:
    site = Site()
    site.run(10, quiet_telecom())
    result = site.run(10, {"h2-batt-01.h2": 12})
    warning = result[("explosion.h2_warning", "h2-batt-01.h2")]
    assert warning.active and not result[("explosion.h2_alarm", "h2-batt-01.h2")].active
    # the fan runs from the warning (GB 51048: H2 kept ≤ 0.7 % vol, below the alarm's 1 %)
    assert "exhaust_fan" in warning.actions and "charge_inhibit" not in warning.actions
    site.feed({"h2-batt-01.h2": 26})
    assert not site.evaluate()[("explosion.h2_alarm", "h2-batt-01.h2")].active  # on-delay 2 s
    result = site.run(2, {"h2-batt-01.h2": 26})
    alarm = result[("explosion.h2_alarm", "h2-batt-01.h2")]
    assert alarm.active and alarm.value == 26 and alarm.severity is Severity.CRITICAL
    assert alarm.room == "batt-3f" and {"exhaust_fan", "charge_inhibit"} <= set(alarm.actions)
    # hysteresis: 24 % LEL is inside the 2 % deadband, 22 % is past it
    assert site.run(5, {"h2-batt-01.h2": 24})[("explosion.h2_alarm", "h2-batt-01.h2")].active
    assert not site.run(1, {"h2-batt-01.h2": 22})[("explosion.h2_alarm", "h2-batt-01.h2")].active


def test_bad_quality_never_fires_a_hazard() -> None:
    site = Site()
    site.run(5, quiet_telecom())
    result = site.run(61, {"h2-batt-01.h2": 80, "smoke-tx-01.alarm": True,
                           "smoke-tx-02.alarm": True, "th-tx-a03.temperature": 70.0},
                      quality=Quality.INVALID)
    hazards = {k for k, e in result.items() if e.active and not k[0].startswith("sensor_health")}
    # a gas reading that stays invalid is a detector failure (trouble: ventilate), no hazard
    assert hazards == {("explosion.gas_detector_failure", "h2-batt-01")}
    assert result[("sensor_health.implausible", "h2-batt-01.h2")].active


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(min_value=0, max_value=100), st.sampled_from(list(Quality))),
                min_size=1, max_size=30))
def test_h2_alarm_never_activates_on_a_bad_sample(seq: list[tuple[float, Quality]]) -> None:
    site = Site()
    key = ("explosion.h2_alarm", "h2-batt-01.h2")
    was = False
    for value, quality in seq:
        site.feed({"h2-batt-01.h2": value}, quality)
        evaluation = site.evaluate()[key]
        if evaluation.active and not was:
            assert quality is Quality.GOOD
        if quality is not Quality.GOOD:
            assert evaluation.active is was
        was = evaluation.active
        site.clock.advance(1.0)


def test_one_smoke_detector_alerts_two_confirm_fire() -> None:
    site = Site()
    site.run(3, quiet_telecom())
    result = site.run(1, {"smoke-tx-01.alarm": True})
    assert result[("fire.smoke_detector", "smoke-tx-01.alarm")].active
    assert not result[("fire.smoke_coincidence", "tx-3f")].active
    result = site.run(1, {"smoke-tx-02.alarm": True})
    fire = result[("fire.smoke_coincidence", "tx-3f")]
    assert fire.active and fire.value == 2 and fire.latching
    assert fire.severity is Severity.CRITICAL and {"siren", "strobe"} <= set(fire.actions)


def test_smoke_pre_alarm_by_enum_label() -> None:
    site = Site()
    result = site.run(10, {"smoke-tx-01.state": 1})  # 1 = pre_alarm in the profile's enum
    assert result[("fire.smoke_pre_alarm", "smoke-tx-01.state")].active


def test_heat_fixed_and_rate_of_rise() -> None:
    site = Site()
    site.run(60, {"th-tx-a03.temperature": 24.0}, step=5)
    temperature = 24.0
    result: dict[tuple[str, str], Evaluation] = {}
    for _ in range(12):  # 10 °C/min for a minute
        site.clock.advance(5)
        temperature += 10 / 12
        site.feed({"th-tx-a03.temperature": temperature})
        result = site.evaluate()
    ror = result[("fire.heat_rate_of_rise", "th-tx-a03.temperature")]
    assert ror.active and ror.value == pytest.approx(10.0, abs=0.5)
    assert not result[("fire.heat_fixed", "th-tx-a03.temperature")].active
    result = site.run(0, {"th-tx-a03.temperature": 57.0})
    assert result[("fire.heat_fixed", "th-tx-a03.temperature")].active


def test_device_offline_suppresses_stale_and_stale_fires_for_an_answering_device() -> None:
    site = Site()
    site.run(1, quiet_telecom())
    result = site.run(300, {"th-tx-a03.online": False,
                            "th-tx-b06.online": True, "th-tx-b06.humidity": 45.0},
                      step=10)
    assert result[("sensor_health.device_offline", "th-tx-a03")].active
    assert not result[("sensor_health.stale", "th-tx-a03")].active
    stale = result[("sensor_health.stale", "th-tx-b06")]  # answers, but no temperature
    assert stale.active and isinstance(stale.value, int) and stale.value >= 120


def test_dew_point_from_temperature_and_humidity() -> None:
    site = Site()
    result = site.run(70, {"th-tx-a03.temperature": 25.0, "th-tx-a03.humidity": 80.0})
    evaluation = result[("environment.dew_point_allowable", "th-tx-a03")]
    assert evaluation.active and evaluation.value == pytest.approx(21.3, abs=0.1)


def test_phase_unbalance_and_mains_voltage() -> None:
    site = Site()
    phases = {"meter-ac-main.l1_voltage": 232.0, "meter-ac-main.l2_voltage": 220.0,
              "meter-ac-main.l3_voltage": 208.0}
    result = site.run(10, phases)
    unbalance = result[("power.phase_unbalance_high", "meter-ac-main")]
    assert unbalance.active and unbalance.value == pytest.approx(12 / 220 * 100)
    assert not result[("power.mains_voltage", "meter-ac-main.l1_voltage")].active
    result = site.run(12, {"meter-ac-main.l1_voltage": 240.0})
    assert result[("power.mains_voltage", "meter-ac-main.l1_voltage")].active


def test_ups_states_from_megatec_flags_and_load() -> None:
    site = Site()
    result = site.run(6, {"ups-tx-01.status.utility_fail": True, "ups-tx-01.load_pct": 105})
    assert result[("power.ups_on_battery", "ups-tx-01.status.utility_fail")].active
    overload = result[("power.ups_overload", "ups-tx-01")]
    assert overload.active and overload.value == 105


def test_branch_load_with_a_rating_per_device() -> None:
    overrides = ParameterOverrides([ParameterOverride(
        rule="power.branch_overload", device="meter-ap1", set={"rating_a": 63})])
    site = Site(DISTRIBUTION, overrides)
    result = site.run(12, {"meter-ap1.l1_current": 70.0, "meter-ap1.l2_current": 50.0})
    overload = result[("power.branch_overload", "meter-ap1")]
    assert overload.active and overload.value == pytest.approx(70 / 63 * 100)


def test_residual_current_at_300_ma() -> None:
    site = Site(DISTRIBUTION)
    result = site.run(10, {"rcm-incomer.residual_current_ch1": 300})
    evaluation = result[("power.residual_current", "rcm-incomer.residual_current_ch1")]
    assert evaluation.active and "siren" not in evaluation.actions


@pytest.mark.slow
def test_lithium_off_gas_and_cell_temperature_rise() -> None:
    site = Site(DATACENTER)
    result = site.run(3, {"offgas-ess-01.co": 60})
    assert result[("explosion.li_offgas_warning", "offgas-ess-01")].active
    temperature = 30.0
    for _ in range(200):
        site.clock.advance(1)
        temperature += 1.5 / 60
        site.feed({"bms-rack-2.cell_temperature_max": temperature})
        result = site.evaluate()
    rise = result[("explosion.cell_temperature_rise", "bms-rack-2.cell_temperature_max")]
    assert rise.active and rise.value == pytest.approx(1.5, abs=0.05)


def test_sensor_disagreement_and_flatline() -> None:
    site = Site()
    result = site.run(16 * 60, {"th-tx-a03.temperature": 20.0, "th-tx-b06.temperature": 27.0,
                                "th-tx-a03.humidity": 45.0, "th-tx-b06.humidity": 45.0},
                      step=30)
    assert result[("sensor_health.sensor_disagreement", "tx-3f")].active
    result = site.run(6 * 3600, {"th-tx-a03.temperature": 20.0}, step=600)
    assert result[("sensor_health.flatline", "th-tx-a03.temperature")].active


def test_door_open_too_long() -> None:
    site = Site()
    key = ("environment.door_open_long", "di-tx-01.di5")
    assert not site.run(9 * 60, {"di-tx-01.di5": True}, step=30)[key].active
    assert site.run(60, {"di-tx-01.di5": True}, step=30)[key].active


def test_unchanged_evaluations_are_the_same_objects() -> None:
    site = Site()
    site.feed(quiet_telecom())
    first = site.engine.evaluate()
    second = site.engine.evaluate()
    reused = sum(a is b for a, b in zip(first, second, strict=True))
    assert reused > len(first) * 0.9


# --- parameters and the config hook ----------------------------------------------------------


def test_override_precedence_device_room_type_site() -> None:
    rule = "environment.temperature_allowable"
    overrides = ParameterOverrides([
        ParameterOverride(rule=rule, set={"high": 30}),
        ParameterOverride(rule=rule, room_type="equipment", set={"high": 31}),
        ParameterOverride(rule=rule, device="th-tx-b06", set={"high": 33}),
        ParameterOverride(rule=rule, room="tx-3f", set={"low": 10}),
    ])
    details = {b.subject: b.parameters for b in Site(TELECOM, overrides).engine.binding_details()
               if b.rule == rule}
    assert details["th-tx-a03.temperature"]["high"] == 31
    assert details["th-tx-b06.temperature"]["high"] == 33
    assert details["th-tx-b06.temperature"]["low"] == 10


def test_disabled_rules_are_not_bound() -> None:
    overrides = ParameterOverrides(disabled=["environment.door_open_long"])
    assert not any(r == "environment.door_open_long"
                   for r, _ in Site(TELECOM, overrides).engine.bindings())


def test_rules_section_and_check_rules() -> None:
    section = validator(RulesSection).validate_python({
        "packs": ["fire", "power", "nonexistent"],
        "disabled": ["fire.no_such_rule"],
        "parameters": [
            {"rule": "power.branch_overload", "device": "meter-ac-main", "set": {"rating_a": 63}},
            {"rule": "power.branch_overload", "device": "ghost", "set": {"rating_a": 63}},
            {"rule": "power.mains_frequency", "set": {"low_hz": 49.5, "bogus": 1}},
            {"rule": "power.unknown", "room": "nowhere", "set": {"x": 1}},
            {"rule": "fire.smoke_coincidence", "device": "smoke-tx-01", "set": {"detectors": 3}},
            {"rule": "environment.door_open_long", "room_type": "battery",
             "set": {"open_for": "5m"}},
        ]})
    errors = [str(e) for e in check_rules(section, shipped.packs(), shipped.site(TELECOM.stem))]
    expected = [
        "rules.packs[2]: rule pack 'nonexistent' is not loaded",
        "rules.disabled[0]: no rule 'fire.no_such_rule'",
        "rules.parameters[1].device: device 'ghost' is not in this config",
        "rules.parameters[2].set.bogus: power.mains_frequency has no parameter 'bogus'",
        "rules.parameters[3].rule: no rule 'power.unknown'",
        "rules.parameters[3].room: room 'nowhere' is not in this config",
        "rules.parameters[4].device: fire.smoke_coincidence is evaluated per room",
    ]
    for text in expected:
        assert any(text in e for e in errors), f"{text!r} not in {errors}"
    assert len(errors) == len(expected)
    assert all(e.startswith(str(TELECOM)) for e in errors)
    assert section.parameters[5].set == {"open_for": 300.0}


def test_rules_section_rejects_two_scopes() -> None:
    with pytest.raises(ValueError, match="at most one scope"):
        validator(ParameterOverride).validate_python(
            {"rule": "power.branch_overload", "device": "a", "room": "b", "set": {"x": 1}})
    assert RulesSection().packs is None
