"""The packs' use of detectors' and BMSs' own alarm bits binds where it should and nowhere
else: the off-gas detector's H2 *ppm* level bits (0-1000 ppm, far below 25 %LEL) never bind
the 25 %LEL hydrogen rules, the H2 detector's %LEL alarm bits do, and the UPS runtime rule
binds UPSes only (a BMS rack's state of charge is not a UPS's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.config.loader import load_gateway_config
from gateway.rules.config import ParameterOverrides, default_rules_dir, load_rule_packs
from gateway.rules.engine import RuleEngine

REPO = Path(__file__).resolve().parents[2]
PACKS = load_rule_packs(default_rules_dir())


def _bindings(site: str) -> set[tuple[str, str]]:
    loaded = load_gateway_config(REPO / "firmware_configs" / f"{site}.yaml")
    engine = RuleEngine(PACKS, loaded, ManualClock(start_mono=0.0),
                        ParameterOverrides.for_site(loaded, PACKS))
    return set(engine.bindings())


@pytest.fixture(scope="module")
def telecom() -> set[tuple[str, str]]:
    return _bindings("telecom_equipment_room")


@pytest.fixture(scope="module")
def datacenter() -> set[tuple[str, str]]:
    return _bindings("datacenter_lithium_room")


def test_h2_detector_alarm_bits_bind_the_hydrogen_rules(telecom: set[tuple[str, str]]) -> None:
    assert ("explosion.h2_alarm", "h2-batt-01.status.alarm2") in telecom
    assert ("explosion.h2_alarm", "h2-batt-01.status.alarm1") not in telecom
    assert ("explosion.h2_warning", "h2-batt-01.status.alarm1") in telecom


def test_offgas_ppm_level_bits_do_not_bind_the_lel_rules(
        datacenter: set[tuple[str, str]]) -> None:
    for rule in ("explosion.h2_alarm", "explosion.h2_warning"):
        for detector in ("offgas-ess-01", "offgas-ess-02"):
            for bit in ("h2_alarm1", "h2_alarm2", "co_alarm1", "co_alarm2", "lel_alarm"):
                assert (rule, f"{detector}.status.{bit}") not in datacenter
    assert ("explosion.li_offgas_warning", "offgas-ess-01") in datacenter


def test_ups_runtime_rule_binds_ups_only(datacenter: set[tuple[str, str]],
                                        telecom: set[tuple[str, str]]) -> None:
    runtime = {s for r, s in datacenter | telecom if r == "power.ups_runtime_low"}
    assert runtime == {"ups-a-01", "ups-tx-01"}


def test_bms_rules_bind_every_rack(datacenter: set[tuple[str, str]]) -> None:
    for rule in ("explosion.bms_fire_input", "explosion.bms_monitoring_failure",
                 "explosion.bms_protection", "explosion.bms_temperature_rise"):
        assert {s for r, s in datacenter if r == rule} == {f"bms-rack-{n}" for n in range(1, 5)}
