"""What kind of value each rule parameter takes, from where the rule's condition refers to it:
a parameter in a threshold slot (`above`, `outside`, `deadband` …) is a number, one in a
duration slot (`on_delay`, `stale`, a flatline or rate window …) a duration. A pack default
or a site override of the wrong kind is one clear error; the engine still gets numbers of
seconds (`ParamValue`).

The audit: `set: {limit: 5m}` on `fire.heat_fixed` passed as 300 (°C), and `limit: "60C"` was
"not a duration"."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from gateway.config.loader import ConfigErrors
from gateway.config.section import validator
from gateway.rules.config import ParameterOverrides
from gateway.rules.model import Rule, RulePack, load_pack
from gateway.rules.section import ParameterOverride
from tests.shipped import packs


def _rules() -> dict[str, Rule]:
    return {pack.full_id(rule): rule for pack in packs().values() for rule in pack.rules}


def test_every_parameter_of_every_shipped_rule_has_a_kind() -> None:
    from gateway.rules.model import parameter_kinds

    for pack in packs().values():
        for rule in pack.rules:
            kinds = parameter_kinds(rule)
            assert set(kinds) == set(rule.parameters), pack.full_id(rule)


@pytest.mark.parametrize(("rule_id", "name", "kind"), [
    ("fire.heat_fixed", "limit", "number"),
    ("fire.heat_fixed", "deadband", "number"),
    ("explosion.h2_alarm", "delay", "duration"),            # on_delay
    ("fire.heat_rate_of_rise", "window", "duration"),       # rate window
    ("fire.heat_rate_of_rise", "rate_c_per_min", "number"),
    ("environment.temperature_rate", "min_span", "duration"),
    ("environment.temperature_rate", "confidence", "number"),
    ("sensor_health.stale", "max_age", "duration"),         # stale
    ("sensor_health.flatline", "window", "duration"),       # flatline window
    ("sensor_health.flatline", "epsilon", "number"),
    ("sensor_health.implausible", "duration", "duration"),  # invalid_for
    ("fire.smoke_coincidence", "detectors", "number"),      # at_least count
    ("power.branch_overload", "rating_a", "number"),        # load_pct rating
    ("power.mains_voltage", "low_v", "number"),             # outside [low, high]
])
def test_the_kind_is_the_slot_the_condition_uses_it_in(rule_id: str, name: str,
                                                       kind: str) -> None:
    from gateway.rules.model import parameter_kinds

    rule = _rules()[rule_id]
    assert parameter_kinds(rule)[name].kind == kind


@pytest.mark.parametrize(("kind", "written", "problem"), [
    (("number", "a threshold"), 60, None),
    (("number", "a threshold"), -9.5, None),
    (("number", "a threshold"), None, None),          # null: not configured
    (("number", "a threshold"), "5m", "is a number (a threshold), not a duration '5m'"),
    (("number", "a threshold"), "60C", "is a number (a threshold); write 60, not '60C'"),
    (("number", "a threshold"), "-1.5 V", "is a number (a threshold); write -1.5, "
                                                   "not '-1.5 V'"),
    (("number", "a threshold"), False, "is a number (a threshold), not false"),
    (("duration", "on_delay"), 30, None),
    (("duration", "on_delay"), 0.5, None),
    (("duration", "on_delay"), "500ms", None),
    (("duration", "on_delay"), "2m", None),
    (("duration", "on_delay"), "2 minutes",
     "is a duration (on_delay); write a number with a unit (500ms, 5s, 2m, 1h) or a number of "
     "seconds, not '2 minutes'"),
    (("duration", "on_delay"), -1, "is a duration (on_delay): a duration cannot be "
                                            "negative"),
    (("duration", "on_delay"), True,
     "is a duration (on_delay): a number with a unit (500ms, 5s, 2m, 1h) or a number of "
     "seconds, not true"),
    (("flag", ""), True, None),
    (("flag", ""), 1, "is true or false, not 1"),
])
def test_a_value_as_written_is_judged_by_its_kind(kind: tuple[str, str], written: object,
                                                 problem: str | None) -> None:
    from gateway.rules.model import ParamKind

    assert ParamKind(kind[0], kind[1]).problem(written) == problem  # type: ignore[arg-type]


def test_the_engine_still_gets_numbers_of_seconds() -> None:
    """The check reads the value as written; the runtime type is unchanged."""
    override = validator(ParameterOverride).validate_python(
        {"rule": "explosion.h2_alarm", "set": {"delay": "2m", "alarm_lel": 20}})
    assert override.set == {"delay": 120.0, "alarm_lel": 20.0}
    assert override.written("delay") == "2m" and override.written("alarm_lel") == 20
    resolved = ParameterOverrides([override]).resolve(
        "explosion.h2_alarm", {"alarm_lel": 25.0, "deadband": 2.0, "delay": 2.0},
        device=None, room=None, room_type=None)
    assert resolved == {"alarm_lel": 20.0, "deadband": 2.0, "delay": 120.0}
    assert all(type(v) is float for v in resolved.values())


def test_a_neutral_reason_where_the_rule_is_not_known() -> None:
    """The schema alone does not know the rule's kinds: it no longer calls '60C' "not a
    duration" (the check restates it with the kind, tests/config)."""
    with pytest.raises(ValueError, match="'60C' is neither a number nor a duration"):
        validator(ParameterOverride).validate_python({"rule": "fire.heat_fixed",
                                                      "set": {"limit": "60C"}})


PACK = """\
pack: kinds
title: Kinds of parameters
rules:
  - id: hot
    title: Too hot
    severity: major
    basis: vendor default, for the test
    parameters: {{limit: {limit}, deadband: 2, delay: {delay}}}
    select: {{quantity: temperature}}
    condition: {{above: $limit, deadband: $deadband, on_delay: $delay}}
{extra}"""


def _pack(tmp_path: Path, limit: str = "57", delay: str = "5s", extra: str = "") -> Path:
    path = tmp_path / "kinds.yaml"
    path.write_text(PACK.format(limit=limit, delay=delay, extra=extra))
    return path


def _errors(path: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load_pack(path)
    return [str(e) for e in caught.value.errors]


def test_a_pack_with_defaults_of_their_kinds_loads(tmp_path: Path) -> None:
    pack = load_pack(_pack(tmp_path, limit="57", delay="90"))
    assert isinstance(pack, RulePack)
    assert pack.rules[0].parameters == {"limit": 57.0, "deadband": 2.0, "delay": 90.0}
    assert load_pack(_pack(tmp_path, delay="1.5m")).rules[0].parameters["delay"] == 90.0


@pytest.mark.parametrize(("limit", "delay", "reason"), [
    ("5m", "5s", "rules[0].parameters.limit: limit is a number (a threshold in the point's "
                 "unit), not a duration '5m'"),
    ("true", "5s", "rules[0].parameters.limit: limit is a number (a threshold in the point's "
                   "unit), not true"),
    ("57", "false", "rules[0].parameters.delay: delay is a duration (on_delay): a number with "
                    "a unit (500ms, 5s, 2m, 1h) or a number of seconds, not false"),
    ("57", "-5", "rules[0].parameters.delay: delay is a duration (on_delay): a duration "
                 "cannot be negative"),
])
def test_a_pack_default_of_the_wrong_kind_is_one_error_with_its_line(
        tmp_path: Path, limit: str, delay: str, reason: str) -> None:
    path = _pack(tmp_path, limit=limit, delay=delay)
    assert _errors(path) == [f"{path}:8: {reason}"]


def test_a_chemistry_default_of_the_wrong_kind_is_an_error(tmp_path: Path) -> None:
    extra = dedent("""\
        chemistry:
          vrla: {set: {limit: 50}, basis: "manual, for the test"}
          lfp:
            set: {limit: 10m}
            basis: "manual, for the test"
    """)
    path = _pack(tmp_path, extra="    " + extra.replace("\n", "\n    ").rstrip() + "\n")
    assert _errors(path) == [
        f"{path}:14: rules[0].chemistry.lfp.set.limit: limit is a number (a threshold in the "
        f"point's unit), not a duration '10m'"]


def test_a_parameter_used_as_a_number_and_as_a_duration_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "kinds.yaml"
    path.write_text(PACK.format(limit="57", delay="5s", extra="").replace(
        "on_delay: $delay", "on_delay: $limit").replace(", delay: 5s", ""))
    assert _errors(path) == [
        f"{path}:8: rules[0].parameters.limit: $limit is used as a number (a threshold in the "
        f"point's unit) and as a duration (on_delay); use two parameters"]
