"""What a site's `recorder:` and `incidents:` sections are told when refused, and what they are
read as when accepted: each error with file, line, YAML path and reason, word for word. These
pin the user's view of the two sections across a change of their Python form (issue 15: plain
dataclasses instead of pydantic models, gateway.config.section): the same YAML must be accepted
or refused with the same messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config.loader import ConfigErrors, load_gateway_config

DATA = Path(__file__).resolve().parents[1] / "data"

REFUSED = [
    ("recorder: {max_points: 0}",
     ["13: recorder.max_points: Input should be greater than or equal to 1"]),
    ("recorder: {max_points: 100001, enabled: maybe}",
     ["13: recorder.enabled: Input should be a valid boolean, unable to interpret input",
      "13: recorder.max_points: Input should be less than or equal to 100000"]),
    ("recorder: {windw: 5m}",
     ["13: recorder.windw: unknown key (not part of the schema; check its spelling)"]),
    ("recorder:\n  window: 15m\n  max_pionts: 10",
     ["15: recorder.max_pionts: unknown key (not part of the schema; check its spelling)"]),
    ("recorder: {window: 5 minutes}",
     ["13: recorder.window: '5 minutes' is not a duration; write a number with a unit: 500ms, "
      "5s, 2m, 1h"]),
    ("recorder: {window: -1}", ["13: recorder.window: a duration cannot be negative"]),
    ("recorder: {window: 5s}", ["13: recorder: window must be between 10s and 6h"]),
    ("recorder: {window: 7h}", ["13: recorder: window must be between 10s and 6h"]),
    ("recorder: 5",
     ["13: recorder: Input should be a valid dictionary or instance of RecorderSettings"]),
    ("recorder:",
     ["13: recorder: Input should be a valid dictionary or instance of RecorderSettings"]),
    ("incidents:\n  severity: fatal",
     ["14: incidents.severity: Input should be 'critical', 'major', 'minor' or 'warning'"]),
    ("incidents: {max_bytes: 1024, max_incidents: 0}",
     ["13: incidents.max_bytes: Input should be greater than or equal to 65536",
      "13: incidents.max_incidents: Input should be greater than or equal to 1"]),
    ("incidents: {max_bytes: 1.5}",
     ["13: incidents.max_bytes: Input should be a valid integer, got a number with a fractional "
      "part"]),
    ("incidents: {pre: true}",
     ["13: incidents.pre: a duration is a number with a unit, e.g. 5s, 500ms, 2m"]),
    ("incidents: {pre: 1e9}",
     ["13: incidents.pre: '1e9' is not a duration; write a number with a unit: 500ms, 5s, 2m, "
      "1h"]),
    ("incidents: {post: 10m, max_duration: 5m}",
     ["13: incidents: max_duration must be at least post"]),
    ("incidents: {max_duration: 48h}", ["13: incidents: max_duration must be at most 24h"]),
    ("incidents: [major]",
     ["13: incidents: Input should be a valid dictionary or instance of IncidentSettings"]),
]

ACCEPTED = [
    ("recorder: {window: 5m, max_points: '12'}",
     {"recorder": {"enabled": True, "window": 300.0, "max_points": 12},
      "incidents": {"enabled": True, "severity": "major", "pre": 600.0, "post": 600.0,
                    "max_duration": 3600.0, "max_bytes": 64 * 2**20, "max_incidents": 500}}),
    ("incidents: {enabled: 'yes', severity: critical, pre: 90, post: 500ms, max_duration: 24h,"
     " max_bytes: 65536, max_incidents: 1}",
     {"recorder": {"enabled": True, "window": 900.0, "max_points": 20_000},
      "incidents": {"enabled": True, "severity": "critical", "pre": 90.0, "post": 0.5,
                    "max_duration": 86_400.0, "max_bytes": 65_536, "max_incidents": 1}}),
    ("recorder: {enabled: false, window: 6h}\nincidents: {enabled: 0}",
     {"recorder": {"enabled": False, "window": 21_600.0, "max_points": 20_000},
      "incidents": {"enabled": False, "severity": "major", "pre": 600.0, "post": 600.0,
                    "max_duration": 3600.0, "max_bytes": 64 * 2**20, "max_incidents": 500}}),
]


CHECKED = [
    ("recorder: {windw: 5m}",
     ["13: recorder.windw: unknown key (not part of the schema; check its spelling); did you "
      "mean 'window'?"]),
    ("incidents: {max_incident: 5, severty: major}",
     ["13: incidents.max_incident: unknown key (not part of the schema; check its spelling); "
      "did you mean 'max_incidents'?",
      "13: incidents.severty: unknown key (not part of the schema; check its spelling); did "
      "you mean 'severity'?"]),
    ("incidents: {post: 10m, max_duration: 5m}",
     ["13: incidents: max_duration must be at least post"]),
]
"""What `roomwarden check` adds: the key an unknown one was probably meant to be (the keys of
every section, gateway.config.check_all)."""


def _site(tmp_path: Path, section: str) -> Path:
    """tests/data/configs/valid.yaml (12 lines) with `section` from line 13 on."""
    text = (DATA / "configs" / "valid.yaml").read_text()
    text = text.replace("../profiles", str(DATA / "profiles"))
    assert len(text.splitlines()) == 12
    path = tmp_path / "site.yaml"
    path.write_text(f"{text}{section}\n")
    return path


@pytest.mark.parametrize(("section", "expected"), REFUSED, ids=[c[0] for c in REFUSED])
def test_a_refused_section_says_where_and_why(tmp_path: Path, section: str,
                                              expected: list[str]) -> None:
    path = _site(tmp_path, section)
    with pytest.raises(ConfigErrors) as caught:
        load_gateway_config(path)
    assert [str(e) for e in caught.value.errors] == [f"{path}:{line}" for line in expected]


@pytest.mark.parametrize(("section", "expected"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_an_accepted_section_is_read_as_written(
        tmp_path: Path, section: str, expected: dict[str, dict[str, object]]) -> None:
    """Every field (the expectations name them all: a field added or lost fails here)."""
    config = load_gateway_config(_site(tmp_path, section)).config
    for name, values in expected.items():
        settings = getattr(config, name)
        assert {key: getattr(settings, key) for key in values} == values
        assert sorted(values) == sorted(settings.__class__.__annotations__)


@pytest.mark.parametrize(("section", "expected"), CHECKED, ids=[c[0] for c in CHECKED])
def test_roomwarden_check_says_which_key_was_meant(tmp_path: Path, section: str,
                                                   expected: list[str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = _site(tmp_path, section)
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr()
    assert [line.strip() for line in (out.out + out.err).splitlines()] == [
        f"FAIL {path}: {len(expected)} error(s)", *(f"{path}:{line}" for line in expected)]
