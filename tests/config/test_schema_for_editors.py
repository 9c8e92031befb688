"""The JSON schema editors use (`roomwarden schema`), checked by a real JSON-Schema validator
against every shipped config; every key described; docs/config-reference.md current."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gateway.config import reference

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "firmware_configs").glob("*.yaml"))
SCHEMA_FILE = REPO / "docs" / "roomwarden.schema.json"
EDITOR_LINE = "# yaml-language-server: $schema=../docs/roomwarden.schema.json"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "gateway", "schema"], capture_output=True,
                         text=True, timeout=60, check=True)
    loaded: dict[str, Any] = json.loads(out.stdout)
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded


def errors(schema: dict[str, Any], data: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(data)]


def test_there_are_shipped_configs() -> None:
    assert len(SHIPPED) >= 3


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_config_is_valid_for_editors(schema: dict[str, Any], path: Path) -> None:
    text = path.read_text()
    assert text.startswith(f"{EDITOR_LINE}\n"), "the editor line is missing"
    assert errors(schema, yaml.safe_load(text)) == []


def test_a_broken_config_is_rejected(schema: dict[str, Any]) -> None:
    data = yaml.safe_load(SHIPPED[0].read_text())
    data["devices"][0]["pol_interval"] = "1s"  # misspelled key
    data["buses"][0]["timeout"] = "5 seconds"  # not a duration
    del data["rooms"]
    found = errors(schema, data)
    assert any("pol_interval" in e for e in found), found
    assert any(e.startswith("buses/0") and "5 seconds" in e for e in found), found
    assert any("'rooms' is a required property" in e for e in found), found


def test_durations_with_units_are_accepted(schema: dict[str, Any]) -> None:
    data = yaml.safe_load(SHIPPED[0].read_text())
    for text in ("500ms", "5s", "2m", "1h", "1.5s", 3):
        data["buses"][0]["timeout"] = text
        assert errors(schema, data) == [], text


def test_the_shipped_schema_file_is_current(schema: dict[str, Any]) -> None:
    """What the example configs' editor line points at is `roomwarden schema`'s output."""
    assert json.loads(SCHEMA_FILE.read_text()) == schema, (
        "docs/roomwarden.schema.json is out of date: roomwarden schema > "
        "docs/roomwarden.schema.json")


def test_every_key_is_described() -> None:
    assert reference.undescribed() == []


def test_the_reference_is_current() -> None:
    doc = REPO / "docs" / "config-reference.md"
    assert doc.read_text() == reference.render(), (
        "docs/config-reference.md is out of date: python -m gateway.config.reference > "
        "docs/config-reference.md")
