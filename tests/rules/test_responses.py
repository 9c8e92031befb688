"""What to do when an alarm sounds (gateway.rules.responses): every shipped rule says it, a
site's own text wins, an escalated output alarm says its escalation's, and a site naming a rule
that does not exist is told so with file, path and line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.actions.supervision import NO_FEEDBACK_RULE, UNEXPECTED_FEEDBACK_RULE
from gateway.clock import ManualClock
from gateway.config.loader import ConfigErrors
from gateway.config.section import replaced, validator
from gateway.rules.config import load_checked_config
from gateway.rules.faults import EVALUATION_FAILED_RULE
from gateway.rules.responses import BUILTIN_RESPONSES, Responses, response_ids
from gateway.rules.section import MAX_RESPONSE, RulesSection
from gateway.safety import OUTPUT_FAILURE_RULE
from tests import shipped
from tests.actions.test_supervision import _h2_alarm, _run, _supervisor

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"


def test_every_shipped_rule_and_escalation_says_what_to_do() -> None:
    items: list[tuple[str, str | None]] = []
    for pack in shipped.packs().values():
        items += [(pack.full_id(rule), rule.response) for rule in pack.rules]
        items += [(f"{pack.pack}.{e.id}", e.response) for e in pack.escalations]
    assert [name for name, text in items if text is None] == []
    texts = [text for _, text in items]
    assert all(t is not None and 10 <= len(t) <= MAX_RESPONSE for t in texts)


def test_the_gateways_own_alarms_say_what_to_do() -> None:
    assert set(BUILTIN_RESPONSES) == {NO_FEEDBACK_RULE, UNEXPECTED_FEEDBACK_RULE,
                                      OUTPUT_FAILURE_RULE, EVALUATION_FAILED_RULE}
    responses = Responses(())
    for rule in BUILTIN_RESPONSES:
        assert responses.response(rule, "any title") == BUILTIN_RESPONSES[rule]
    assert responses.response("fire.no_such_rule") is None


def test_a_sites_own_text_replaces_the_packs() -> None:
    packs = shipped.packs().values()
    fire = shipped.packs()["fire"].rule("smoke_coincidence")
    assert fire is not None and fire.response is not None
    mine = "Call the guard room, ext. 2100, then evacuate by stair B."
    responses = Responses(packs, {"fire.smoke_coincidence": mine})
    assert responses.response("fire.smoke_coincidence") == mine
    assert Responses(packs).response("fire.smoke_coincidence") == fire.response
    heat = shipped.packs()["fire"].rule("heat_fixed")
    assert heat is not None and responses.response("fire.heat_fixed") == heat.response


def test_an_escalated_fan_alarm_says_what_its_escalation_says() -> None:
    """Through the real output supervisor: a fan without airflow while hydrogen is present
    is escalated (its title is the escalation's); the gas gone, it is the plain output
    alarm again, with the plain response."""
    escalation = next(e for e in shipped.packs()["explosion"].escalations
                      if e.id == "exhaust_fan_failed_with_gas")
    responses = Responses(shipped.packs().values())
    clock = ManualClock()
    sup = _supervisor(clock)
    escalated = _run(sup, clock, 21, True, False, [_h2_alarm(True)])[NO_FEEDBACK_RULE]
    assert escalation.response is not None
    assert responses.response(escalated.rule, escalated.title) == escalation.response
    plain = _run(sup, clock, 1, True, False, [_h2_alarm(False)])[NO_FEEDBACK_RULE]
    assert responses.response(plain.rule, plain.title) == BUILTIN_RESPONSES[NO_FEEDBACK_RULE]
    site = Responses(shipped.packs().values(),
                     {"explosion.exhaust_fan_failed_with_gas": "Open the louvres by hand."})
    assert site.response(escalated.rule, escalated.title) == "Open the louvres by hand."


def test_a_site_may_name_every_rule_escalation_and_own_alarm() -> None:
    ids = response_ids(shipped.packs().values())
    assert "fire.smoke_coincidence" in ids and "explosion.exhaust_fan_failed_with_gas" in ids
    assert OUTPUT_FAILURE_RULE in ids


def _site_with(tmp_path: Path, responses: object) -> Path:
    config = yaml.safe_load(SITE.read_text())
    config.setdefault("rules", {})["responses"] = responses
    config["profiles_dir"] = str(SITE.parent / config.get("profiles_dir", "../hardware"))
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def test_a_site_response_for_an_unknown_rule_is_an_error_naming_where(tmp_path: Path) -> None:
    path = _site_with(tmp_path, {"fire.smoke_coincidence": "Call the guard room first.",
                                 "fire.smoke_coincidense": "Call the guard room first."})
    with pytest.raises(ConfigErrors) as caught:
        load_checked_config(path)
    errors = caught.value.errors
    assert [(e.file, e.path) for e in errors] == [
        (str(path), ("rules", "responses", "fire.smoke_coincidense"))]
    assert "no rule or escalation 'fire.smoke_coincidense'" in errors[0].reason
    assert errors[0].line is not None


def test_a_site_response_is_one_paragraph_of_bounded_length() -> None:
    read = validator(RulesSection).validate_python
    with pytest.raises(ValueError, match="one paragraph"):
        read({"responses": {"fire.heat_fixed": "Evacuate.\nCall 119."}})
    with pytest.raises(ValueError, match="at most 400"):
        read({"responses": {"fire.heat_fixed": "x" * 401}})
    good = read({"responses": {"fire.heat_fixed": "Evacuate, call 119."}})
    assert good.responses == {"fire.heat_fixed": "Evacuate, call 119."}


def test_a_loaded_site_keeps_its_responses(tmp_path: Path) -> None:
    path = _site_with(tmp_path, {"fire.smoke_coincidence": "Call the guard room first."})
    loaded = load_checked_config(path)
    assert loaded.config.rules.responses == {
        "fire.smoke_coincidence": "Call the guard room first."}


def test_check_warns_of_a_bound_rule_that_says_nothing_to_do(tmp_path: Path) -> None:
    """A site's own pack whose rule has no response: `check` warns (a rule that does not bind
    at the site, or one the site answers itself, does not); the shipped packs give none."""
    from gateway.rules.coverage import check_warnings

    loaded = load_checked_config(SITE)
    packs = shipped.packs()
    assert not [w for w in check_warnings(loaded, packs) if "has no response" in w]
    fire = packs["fire"]
    silent = replaced(fire, rules=tuple(
        replaced(r, response=None) if r.id in ("smoke_coincidence", "heat_fixed")
        else r for r in fire.rules))
    explosion = packs["explosion"]  # its BMS rules bind no point of the telecom site
    unbound = replaced(explosion, rules=tuple(
        replaced(r, response=None) if r.id == "bms_fire_input" else r
        for r in explosion.rules))
    warned = [w for w in check_warnings(loaded, {**packs, "fire": silent,
                                                 "explosion": unbound})
              if "has no response" in w]
    assert [w.split()[1] for w in warned] == ["fire.heat_fixed", "fire.smoke_coincidence"]
    answered = _site_with(tmp_path, {"fire.smoke_coincidence": "Call the guard room first."})
    warned = [w for w in check_warnings(load_checked_config(answered), {**packs, "fire": silent})
              if "has no response" in w]
    assert [w.split()[1] for w in warned] == ["fire.heat_fixed"]
