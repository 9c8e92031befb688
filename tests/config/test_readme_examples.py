"""Every YAML example the README and docs/ give a technician is one the gateway accepts: a
whole config checks as a file; a fragment (outputs, operators, rooms, rules, panel, uplink …)
merged into the shipped telecom site as a technician pastes it checks too; one of the ingest's
central.yaml merged into the shipped central example validates; a rule-pack excerpt is a
valid rule. (DESIGN principle 11: what users copy is executed. The drill example is run by
tests/drills/test_drill_names.py.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config.section import validator
from gateway.ingest.settings import load_settings
from gateway.rules.config import load_checked_config
from gateway.rules.model import RulePack

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"
CENTRAL = REPO / "central" / "central.example.yaml"
CENTRAL_ONLY = {"mqtt", "influx", "dead_letter", "catalog_store", "dedup_store", "ack_store"}
"""Top-level keys only the central ingest's settings have."""
CENTRAL_INCIDENTS = {"store", "max_record_bytes", "partial_ttl"}
"""`incidents:` keys of the ingest's settings (a gateway's `incidents:` has others)."""


def is_central(data: dict[str, Any]) -> bool:
    incidents = data.get("incidents")
    return bool(CENTRAL_ONLY & set(data)) or (
        isinstance(incidents, dict) and bool(CENTRAL_INCIDENTS & set(incidents)))
NOT_GATEWAY = {"scrape_configs", "drill"}
"""Blocks of other files: Prometheus' scrape config (promtool checks the shipped one) and a
drill (run by its own test)."""


DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def readme_blocks() -> list[tuple[str, str]]:
    """(`file:line`, text) of every YAML block of the README and docs/."""
    out = []
    for doc in DOCS:
        text = doc.read_text()
        out += [(f"{doc.relative_to(REPO)}:{text[:m.start()].count(chr(10)) + 2}", m.group(1))
                for m in re.finditer(r"```yaml\n(.*?)```", text, re.S)]
    return out


def merge(base: Any, fragment: Any) -> Any:
    """`fragment` pasted into `base`: mappings merge key by key; a list of items with ids
    replaces the items of the same id and adds the others; anything else replaces."""
    if isinstance(base, dict) and isinstance(fragment, dict):
        return {**base, **{k: merge(base.get(k), v) for k, v in fragment.items()}}
    if isinstance(base, list) and isinstance(fragment, list) and all(
            isinstance(i, dict) and "id" in i for i in (*base, *fragment)):
        ids = {item["id"]: item for item in fragment}
        kept = [ids.pop(item["id"]) if item["id"] in ids else item for item in base]
        return kept + list(ids.values())
    return fragment


BLOCKS = readme_blocks()
ELIDED_HASH = ("scrypt$16384$8$1$GJooIsA8aT+mnyli1J3Iqw==$"
               "RmGdjVhyYPib3UAH05MZzcOlxdAngIgeCTAmx1rDfHc=")
"""A whole hash for an example's `password_hash: "scrypt$16384$8$1$…"` (elided, as a hash
is unreadable): the check parses it as the panel does."""


@pytest.mark.parametrize(("line", "block"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_a_readme_example_is_accepted(line: str, block: str, tmp_path: Path) -> None:
    data = yaml.safe_load(block)
    if data is None:  # comments only (an editor's schema line)
        return
    if isinstance(data, list):  # an excerpt of a rule pack's rules
        pack = validator(RulePack).validate_python({"pack": "example", "title": "README example",
                                        "rules": data})
        assert pack.rules
        return
    assert isinstance(data, dict), f"{line}: not a mapping"
    if NOT_GATEWAY & set(data):
        return
    if is_central(data):  # the ingest's central.yaml
        path = tmp_path / "central.yaml"
        path.write_text(yaml.safe_dump(merge(yaml.safe_load(CENTRAL.read_text()), data)))
        load_settings(path)
        return
    site = yaml.safe_load(SITE.read_text())
    whole = {"gateway", "rooms", "buses", "devices"} <= set(data)
    config = data if whole else merge(site, data)
    config["profiles_dir"] = str(REPO / "hardware" / "profiles")
    for user in (config.get("panel") or {}).get("users") or ():
        if str(user.get("password_hash", "")).endswith("…"):  # elided: what `passwd` prints
            user["password_hash"] = ELIDED_HASH
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    load_checked_config(path)  # raises ConfigErrors naming what the example gets wrong
