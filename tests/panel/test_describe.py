"""The limit or condition in words on the panel's cards, from the shipped rule packs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.config.section import validator
from gateway.panel.describe import MAX_TEXT, Describer, condition_text
from gateway.rules.model import RulePack
from tests import shipped

RULES = Path(__file__).resolve().parents[2] / "edge_rules"


def rule_text(rule_id: str, unit: str | None, **params: object) -> str:
    pack_id, _, short = rule_id.partition(".")
    pack = validator(RulePack).validate_python(
        yaml.safe_load((RULES / f"{pack_id}.yaml").read_text()))
    rule = pack.rule(short)
    assert rule is not None
    quantity = rule.select.quantity[0] if rule.select.quantity else None
    return condition_text(rule.condition, {**rule.parameters, **params}, unit, quantity)


@pytest.mark.parametrize(("rule", "unit", "params", "text"), [
    ("fire.heat_fixed", "°C", {}, "≥ 57 °C"),
    ("fire.heat_fixed", "°C", {"limit": 60.5}, "≥ 60.5 °C"),  # a site's override shows
    ("fire.smoke_coincidence", None, {}, "2 devices with smoke on"),
    ("fire.smoke_detector", None, {}, "smoke on"),
    ("fire.heat_rate_of_rise", "°C", {}, "rate of change > 8.3 °C/min"),
    ("explosion.h2_alarm", "%LEL", {}, "≥ 25 %LEL for 2 s or h2 lel alarm2 on for 2 s"),
    ("environment.temperature_recommended", "°C", {}, "outside 18–27 °C for 5 min"),
    ("sensor_health.device_offline", None, {}, "not answering"),
    ("sensor_health.stale", None, {}, "no good reading for 2 min"),
    ("power.branch_overload", "A", {"rating": 32}, "load > 100 % for 10 s"),
])
def test_condition_in_words(rule: str, unit: str | None, params: dict[str, object],
                            text: str) -> None:
    assert rule_text(rule, unit, **params) == text


def test_every_shipped_rule_has_words() -> None:
    for path in sorted(RULES.glob("*.yaml")):
        pack = validator(RulePack).validate_python(yaml.safe_load(path.read_text()))
        for rule in pack.rules:
            text = condition_text(rule.condition, dict(rule.parameters), None)
            assert text and len(text) < 4 * MAX_TEXT, (pack.full_id(rule), text)


def test_a_flag_rules_value_reads_in_words_on_the_card() -> None:
    """Through the Describer on the shipped telecom site: a device-offline alarm's value
    true/false reads as answering / not answering (a cleared card said "now ON"), a smoke
    detector's as smoke on / off; a rule over several flags or a measurement has none."""
    loaded = shipped.site("telecom_equipment_room")
    describe = Describer(loaded, list(shipped.packs().values()), [], {})
    assert describe.context("sensor_health.device_offline", "th-tx-a03", "tx-3f").flag_words \
        == ("not answering", "answering")
    assert describe.context("fire.smoke_detector", "smoke-tx-01.alarm", "tx-3f").flag_words \
        == ("smoke off", "smoke on")
    assert describe.context("fire.heat_fixed", "x.temperature", None).flag_words is None
    assert describe.context("explosion.gas_detector_failure", "h2-batt-01", None
                            ).flag_words is None
