"""The numbers a reading is computed with are refused by `roomwarden check` when they would
make it wrong without a word: a scale of 0 (a hydrogen detector read 0 %LEL at 60 %LEL, good,
no alarm — the config audit of 7 Dec 2026), a NaN or infinite scale, offset or bound, and a
valid range whose minimum is above its maximum (every reading invalid) — in a site's point
overrides and in a device profile's points, each named by file, line and path."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.check_all import check_config
from tests.shipped import FIRMWARE_CONFIGS, REPO

PROFILES = REPO / "hardware" / "profiles"

BASE = FIRMWARE_CONFIGS / "telecom_equipment_room.yaml"
H2 = '  - id: h2-batt-01\n    bus: rs485-env\n    unit: 41\n    profile: generic_h2_detector\n'


def _site_with_override(tmp_path: Path, override: str) -> Path:
    text = BASE.read_text()
    assert H2 in text
    path = tmp_path / "site.yaml"
    path.write_text(text.replace(H2, H2 + f"    points:\n      h2: {override}\n"))
    return path


@pytest.mark.parametrize(("override", "path", "reason"), [
    ("{scale: 0}", "points.h2.scale", "other than 0"),
    ("{scale: .nan}", "points.h2.scale", "other than 0"),
    ("{offset: .inf}", "points.h2.offset", "finite"),
    ("{valid_min: .nan}", "points.h2.valid_min", "finite"),
    ("{valid_min: 50, valid_max: 10}", "points.h2", "valid_min 50.0 is above valid_max 10.0"),
])
def test_a_site_override_that_would_falsify_readings_is_refused(
        tmp_path: Path, override: str, path: str, reason: str) -> None:
    errors = [str(e) for e in check_config(_site_with_override(tmp_path, override)).errors]
    assert any(f"devices[h2-batt-01].{path}" in e and reason in e for e in errors), errors


def test_the_same_site_with_a_sane_override_checks_clean(tmp_path: Path) -> None:
    site = _site_with_override(tmp_path, "{scale: 0.2, offset: -1, valid_min: 0, valid_max: 90}")
    assert check_config(site).errors == []


@pytest.mark.parametrize(("replace", "reason"), [
    (("    scale: 0.1\n", "    scale: 0\n"), "other than 0"),
    (("    valid: {min: 0, max: 100}\n", "    valid: {min: 100, max: 0}\n"), "min 100.0 is above"),
    (("    valid: {min: 0, max: 100}\n", "    valid: {min: .nan, max: 100}\n"), "finite"),
])
def test_a_profile_point_that_would_falsify_readings_is_refused(
        tmp_path: Path, replace: tuple[str, str], reason: str) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    text = (PROFILES / "generic_h2_detector.yaml").read_text()
    assert text.count(replace[0]) >= 1
    (profiles / "generic_h2_detector.yaml").write_text(text.replace(replace[0], replace[1], 1))
    site = tmp_path / "site.yaml"  # (the site's own profiles come before the shipped ones)
    site.write_text(f"profiles_dir: {profiles}\n" + BASE.read_text())
    errors = [str(e) for e in check_config(site).errors]
    assert any("generic_h2_detector" in e and reason in e for e in errors), errors
