"""The engine's unconfigured bindings for people (gateway.rules.coverage): where to set the
missing parameter, whether a battery chemistry leaves it unset by design, and one warning
line per rule logged once per config (an engine built again on the same config is silent)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from gateway.clock import ManualClock
from gateway.config.loader import load_gateway_config
from gateway.rules.config import ParameterOverrides
from gateway.rules.coverage import Unconfigured
from gateway.rules.engine import RuleEngine
from tests import shipped


def _engine(name: str, loaded: object = None) -> RuleEngine:
    loaded = loaded or load_gateway_config(shipped.FIRMWARE_CONFIGS / f"{name}.yaml")
    packs = shipped.packs()
    return RuleEngine(packs, loaded, ManualClock(),  # type: ignore[arg-type]
                      ParameterOverrides.for_site(loaded, packs))  # type: ignore[arg-type]


UNRATED = ("meter-ap1", "meter-ap2", "meter-ap3")


def _unrated(tmp_path: Path) -> object:
    """The shipped distribution room without its feeders AP1-AP3's breaker ratings."""
    data = yaml.safe_load((shipped.FIRMWARE_CONFIGS / "power_distribution_room.yaml")
                          .read_text(encoding="utf-8"))
    data["rules"]["parameters"] = [p for p in data["rules"]["parameters"]
                                   if p.get("device") not in UNRATED]
    path = tmp_path / "power_distribution_room.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_gateway_config(path)


def test_the_shipped_sites_leave_nothing_unconfigured_but_by_design() -> None:
    for name in ("power_distribution_room", "telecom_equipment_room",
                 "datacenter_lithium_room"):
        assert all(item.by_design for item in _engine(name).unconfigured_report()), name


def test_the_report_names_scope_and_chemistry(tmp_path: Path) -> None:
    report = _engine("power_distribution_room", _unrated(tmp_path)).unconfigured_report()
    assert Unconfigured("power.branch_overload", "meter-ap1", "device: meter-ap1",
                        ("rating_a",), None) in report
    assert len(report) == 6 and not any(item.by_design for item in report)
    lithium = _engine("datacenter_lithium_room").unconfigured_report()
    assert lithium == [Unconfigured("explosion.block_above_ambient", "ess-a1", "room: ess-a1",
                                    ("limit_c",), "lfp")]
    assert lithium[0].by_design


def test_logged_once_per_config(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.WARNING, "roomwarden.rules")
    loaded = _unrated(tmp_path)
    for _ in range(3):
        _engine("power_distribution_room", loaded)
    lines = sorted(r.getMessage() for r in caplog.records if "rule_not_evaluated" in r.getMessage())
    assert lines == [
        "event=rule_not_evaluated rule=power.branch_load_high missing=rating_a "
        "subjects=meter-ap1,meter-ap2,meter-ap3 reason=parameter_not_set",
        "event=rule_not_evaluated rule=power.branch_overload missing=rating_a "
        "subjects=meter-ap1,meter-ap2,meter-ap3 reason=parameter_not_set"]
    caplog.clear()
    _engine("power_distribution_room", _unrated(tmp_path))  # loaded again (an apply): said again
    assert len([r for r in caplog.records if "rule_not_evaluated" in r.getMessage()]) == 2
