"""A profile is parsed and validated once per process for the same text at the same path
(gateway.config.profiles.load_profile, issue 15); a changed file is read anew, a broken one is
reported every time and never kept."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.config.profiles import load_profile
from gateway.config.yamlfile import ConfigErrors

SHIPPED = Path(__file__).resolve().parents[2] / "hardware" / "profiles" / "generic_th_sensor.yaml"


def test_the_same_file_gives_the_same_profile(tmp_path: Path) -> None:
    path = tmp_path / SHIPPED.name
    shutil.copy(SHIPPED, path)
    first = load_profile(path)
    assert load_profile(path) is first
    assert load_profile(SHIPPED) == first  # another path: its own entry, the same content


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / SHIPPED.name
    text = SHIPPED.read_text()
    path.write_text(text)
    first = load_profile(path)
    assert "manufacturer:" in text
    path.write_text(text.replace("manufacturer:", "manufacturer: Other  #", 1))
    changed = load_profile(path)
    assert changed is not first and changed.manufacturer == "Other"
    path.write_text(text)
    assert load_profile(path) == first


def test_a_broken_file_fails_every_time_and_is_not_kept(tmp_path: Path) -> None:
    path = tmp_path / SHIPPED.name
    path.write_text(SHIPPED.read_text().replace(SHIPPED.stem, "some_other_id", 1))
    for _ in range(2):
        with pytest.raises(ConfigErrors, match="must match its file name"):
            load_profile(path)
    shutil.copy(SHIPPED, path)
    assert load_profile(path).id == SHIPPED.stem
