"""`roomwarden check` names each rule parameter override by its own index and line, and says
what kind of value a rule's parameter takes.

The audit (m19): with three overrides on consecutive lines, the first with a bad value, the
second and third were reported one index and one line too early (`rules.parameters[0]` for
the second, `[1]` for the third): the entry set aside for its schema error was dropped from
`rules.parameters` before the rules were checked, and only top-level lists (`devices` …) had
their indexes mapped back to the file. And `set: {limit: "60C"}` on `fire.heat_fixed` said
"'60C' is not a duration" (of a temperature limit) while `limit: 5m` passed as 300 °C.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.check_all import check_config
from gateway.config.loader import ConfigError, ConfigErrors
from gateway.rules.config import load_checked_config
from tests.shipped import FIRMWARE_CONFIGS

BASE = FIRMWARE_CONFIGS / "telecom_equipment_room.yaml"
ANCHOR = "    - {rule: power.branch_overload, device: meter-ac-main, set: {rating_a: 100}}\n"
"""The shipped site's last override (rules.parameters[1]): new ones go after it."""


def _site(tmp_path: Path, *overrides: str, name: str = "m19.yaml") -> tuple[Path, int]:
    """The shipped telecom site with `overrides` added under `rules: parameters:` (after its
    own two); the file and the line of the first one added."""
    text = BASE.read_text()
    assert ANCHOR in text
    added = "".join(f"    - {o}\n" for o in overrides)
    text = text.replace(ANCHOR, ANCHOR + added)
    path = tmp_path / name
    path.write_text(text)
    first = text.splitlines().index(f"    - {overrides[0]}") + 1
    return path, first


def _errors(path: Path) -> list[ConfigError]:
    return check_config(path).errors


def test_the_base_site_checks_clean(tmp_path: Path) -> None:
    path, _ = _site(tmp_path, "{rule: fire.heat_fixed, set: {limit: 60, deadband: 3}}")
    assert _errors(path) == []


def test_every_override_after_a_broken_one_keeps_its_own_index_and_line(tmp_path: Path) -> None:
    path, first = _site(tmp_path,
                        '{rule: fire.heat_fixed, set: {limit: "60C"}}',
                        "{rule: fire.heat_fixed, set: {deadband: true}}",
                        "{rule: fire.heat_fixd, set: {limit: 60}}")
    errors = _errors(path)
    where = {(str(e.path_text), e.line) for e in map(_Shown, errors)}
    assert where == {("rules.parameters[2].set.limit", first),
                     ("rules.parameters[3].set.deadband", first + 1),
                     ("rules.parameters[4].rule", first + 2)}, [str(e) for e in errors]
    lines = path.read_text().splitlines()
    for error in errors:  # each error's line is its own entry's
        assert error.line is not None
        entry = lines[error.line - 1]
        assert ("heat_fixd" in entry) == (error.path[-1] == "rule"), str(error)
        assert str(error.path[-1]) in entry, str(error)


def test_several_broken_overrides_in_a_row_and_one_after(tmp_path: Path) -> None:
    """Two entries set aside (indexes 2 and 4 of the file): the check of the rules still
    names the entries after each by their place in the file."""
    path, first = _site(tmp_path,
                        '{rule: fire.heat_fixed, set: {limit: "hot"}}',
                        "{rule: fire.heat_fixed, room: tx-4f, set: {limit: 60}}",
                        '{rule: fire.heat_fixed, set: {deadband: "2 K"}}',
                        "{rule: fire.heat_fixed, device: nowhere-1, set: {limit: 60}}")
    shown = {(_Shown(e).path_text, e.line) for e in _errors(path)}
    assert shown == {("rules.parameters[2].set.limit", first),
                     ("rules.parameters[3].room", first + 1),
                     ("rules.parameters[4].set.deadband", first + 2),
                     ("rules.parameters[5].device", first + 3)}, shown


@pytest.mark.parametrize(("value", "reason"), [
    ('"60C"', "fire.heat_fixed's limit is a number (a threshold in the point's unit); "
              "write 60, not '60C'"),
    ("5m", "fire.heat_fixed's limit is a number (a threshold in the point's unit), not a "
           "duration '5m'"),
    ("true", "fire.heat_fixed's limit is a number (a threshold in the point's unit), not true"),
    ('"hot"', "fire.heat_fixed's limit is a number (a threshold in the point's unit); write "
              "a number, not 'hot'"),
])
def test_a_threshold_of_the_wrong_kind_is_one_clear_error(tmp_path: Path, value: str,
                                                           reason: str) -> None:
    path, first = _site(tmp_path, f"{{rule: fire.heat_fixed, set: {{limit: {value}}}}}")
    errors = _errors(path)
    assert [(_Shown(e).path_text, e.line, e.reason) for e in errors] == [
        ("rules.parameters[2].set.limit", first, reason)], [str(e) for e in errors]


@pytest.mark.parametrize("value", ["30s", "2m", "90", "1.5m", "0"])
def test_a_duration_takes_a_unit_or_seconds(tmp_path: Path, value: str) -> None:
    path, _ = _site(tmp_path, f"{{rule: explosion.h2_alarm, set: {{delay: {value}}}}}")
    assert _errors(path) == []


@pytest.mark.parametrize(("value", "reason"), [
    ('"5 minutes"', "explosion.h2_alarm's delay is a duration (on_delay); write a number with "
                    "a unit (500ms, 5s, 2m, 1h) or a number of seconds, not '5 minutes'"),
    ("true", "explosion.h2_alarm's delay is a duration (on_delay): a number with a unit "
             "(500ms, 5s, 2m, 1h) or a number of seconds, not true"),
    ("-5", "explosion.h2_alarm's delay is a duration (on_delay): a duration cannot be "
           "negative"),
])
def test_a_duration_of_the_wrong_kind_is_one_clear_error(tmp_path: Path, value: str,
                                                          reason: str) -> None:
    path, first = _site(tmp_path, f"{{rule: explosion.h2_alarm, set: {{delay: {value}}}}}")
    errors = _errors(path)
    assert [(_Shown(e).path_text, e.line, e.reason) for e in errors] == [
        ("rules.parameters[2].set.delay", first, reason)], [str(e) for e in errors]


def test_the_kind_follows_where_the_condition_uses_the_parameter(tmp_path: Path) -> None:
    """A rate rule's `window` is a duration, its threshold a rate; a coincidence's count a
    number; a rating in A: each named for what it is."""
    path, _ = _site(tmp_path,
                    "{rule: fire.heat_rate_of_rise, set: {window: 2m, rate_c_per_min: 5m}}",
                    '{rule: fire.smoke_coincidence, room: tx-3f, set: {detectors: "2x"}}',
                    "{rule: power.branch_overload, device: meter-ac-main, set: {rating_a: 100A}}")
    reasons = {_Shown(e).path_text: e.reason for e in _errors(path)}
    assert reasons == {
        "rules.parameters[2].set.rate_c_per_min":
            "fire.heat_rate_of_rise's rate_c_per_min is a number (a rate threshold in the "
            "point's unit per minute), not a duration '5m'",
        "rules.parameters[3].set.detectors":
            "fire.smoke_coincidence's detectors is a number (how many, a whole number); "
            "write 2, not '2x'",
        "rules.parameters[4].set.rating_a":
            "power.branch_overload's rating_a is a number (a current rating in A); write 100, "
            "not '100A'"}


def test_the_loader_of_a_config_to_apply_says_the_same(tmp_path: Path) -> None:
    """`roomwarden config apply` / flash (load_checked_config) stop at the schema; the value's
    error is restated with the rule's kind there too, and `5m` for a limit is refused."""
    path, first = _site(tmp_path, '{rule: fire.heat_fixed, set: {limit: "60C"}}')
    with pytest.raises(ConfigErrors) as caught:
        load_checked_config(path)
    assert [str(e) for e in caught.value.errors] == [
        f"{path}:{first}: rules.parameters[2].set.limit: fire.heat_fixed's limit is a number "
        f"(a threshold in the point's unit); write 60, not '60C'"]
    path, first = _site(tmp_path, "{rule: fire.heat_fixed, set: {limit: 5m}}", name="b.yaml")
    with pytest.raises(ConfigErrors) as caught:
        load_checked_config(path)
    assert [str(e) for e in caught.value.errors] == [
        f"{path}:{first}: rules.parameters[2].set.limit: fire.heat_fixed's limit is a number "
        f"(a threshold in the point's unit), not a duration '5m'"]


def test_a_reference_in_a_reason_names_the_item_of_the_file(tmp_path: Path) -> None:
    """The same for `devices[N]` in a reason: a device set aside for its own schema error
    does not shift the device another error refers to."""
    text = BASE.read_text()
    first = "  - id: th-tx-a03\n    bus: rs485-env\n    unit: 1\n"
    assert first in text
    # th-tx-a03 (devices[0]) gets a unit past 247 and is set aside; th-tx-b06 (devices[1])
    # takes unit 3, already th-batt-01's (devices[2])
    text = text.replace(first, first.replace("unit: 1", "unit: 999"), 1)
    text = text.replace("    unit: 2\n", "    unit: 3\n", 1)
    path = tmp_path / "units.yaml"
    path.write_text(text)
    reasons = [str(e) for e in _errors(path)]
    assert any("devices[th-batt-01].unit" in r and "devices[th-tx-b06]" in r
               for r in reasons), reasons


class _Shown:
    """An error's path as `roomwarden check` prints it."""

    def __init__(self, error: ConfigError) -> None:
        text = str(error)
        self.path_text = text.split(": ", 2)[1]
        self.line = error.line
