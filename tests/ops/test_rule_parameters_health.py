"""The `rule_parameters` health item: a running gateway whose config leaves a rule unevaluated
(a breaker rating nobody set) says so in /healthz and `roomwarden status` (degraded), and logs
it once at start; a parameter a rule pack leaves unset for a battery chemistry on purpose is
named but stays ok."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from gateway.clock import ManualClock
from gateway.config.loader import load_gateway_config
from gateway.daemon import Gateway
from gateway.ops.health import HealthMonitor, Level
from gateway.ops.status_report import build_status_report
from gateway.ops.status_text import render_status
from tests.ops.conftest import SITE

REPO = Path(__file__).resolve().parents[2]


def _without_ratings(tmp_path: Path) -> Path:
    data = yaml.safe_load(SITE.read_text(encoding="utf-8"))
    data.pop("rules")
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


async def test_a_rule_without_its_parameter_degrades_the_gateway_and_is_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "roomwarden.rules")
    gw = Gateway(load_gateway_config(_without_ratings(tmp_path)),
                 state_dir=tmp_path / "state", clock=ManualClock(), panel_port=0)
    try:
        report = HealthMonitor(gw).check()
        check = report.checks["rule_parameters"]
        assert check.status is Level.DEGRADED and report.status is Level.DEGRADED
        assert report.ok  # a config gap, not a failing service
        assert check.detail.startswith("not evaluated, no value: ")
        assert "2 rule bindings; set it under rules: parameters" in check.detail
        assert "power.branch_overload on meter-1 (rating_a)" in check.detail
        assert "power.branch_load_high on meter-1 (rating_a)" in check.detail
        lines = [r.getMessage() for r in caplog.records
                 if "event=rule_not_evaluated" in r.getMessage()]
        assert sorted(lines) == [
            "event=rule_not_evaluated rule=power.branch_load_high missing=rating_a "
            "subjects=meter-1 reason=parameter_not_set",
            "event=rule_not_evaluated rule=power.branch_overload missing=rating_a "
            "subjects=meter-1 reason=parameter_not_set"]
        text = render_status(build_status_report(gw), color=False, width=80)
        assert "  rule_parameters: degraded  not evaluated, no value: power.branch" in text, text
    finally:
        gw.core.close()


async def test_every_rule_configured_is_ok(tmp_path: Path) -> None:
    gw = Gateway(load_gateway_config(SITE), state_dir=tmp_path / "state", clock=ManualClock(),
                 panel_port=0)
    try:
        check = HealthMonitor(gw).check().checks["rule_parameters"]
        assert (check.status, check.detail) == (Level.OK, "every bound rule has its parameters")
    finally:
        gw.core.close()


async def test_a_parameter_unset_for_a_chemistry_by_the_pack_stays_ok(tmp_path: Path) -> None:
    """The lithium site: block_above_ambient has no limit for LFP (by design, docs/rules.md)."""
    data = yaml.safe_load((REPO / "firmware_configs" / "datacenter_lithium_room.yaml")
                          .read_text(encoding="utf-8"))
    data.pop("uplink", None)
    data.pop("panel", None)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    gw = Gateway(load_gateway_config(path), state_dir=tmp_path / "state", clock=ManualClock(),
                 panel_port=0)
    try:
        check = HealthMonitor(gw).check().checks["rule_parameters"]
        assert check.status is Level.OK
        assert "explosion.block_above_ambient on ess-a1 (limit_c)" in check.detail
    finally:
        gw.core.close()
