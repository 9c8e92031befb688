"""The README's `outputs:` example, pasted into the shipped telecom site as a technician would,
passes `roomwarden check`'s validation (its interlock names outputs the example defines)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from gateway.rules.config import load_checked_config

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"


def test_the_readmes_outputs_example_checks(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    found = re.search(r"```yaml\n(outputs:\n.*?)```", readme, re.S)
    assert found, "the README's outputs example is gone"
    example = yaml.safe_load(found.group(1))
    config = yaml.safe_load(SITE.read_text())
    config.update(example)  # its outputs and interlocks replace the site's
    config["profiles_dir"] = str(SITE.parent / config.get("profiles_dir", "../hardware"))
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    loaded = load_checked_config(path)
    assert [i.output for i in loaded.config.interlocks] == ["hvac-recirc"]
    assert {o.id for o in loaded.config.outputs} >= {"siren-3f", "fan-batt-3f", "hvac-recirc"}
