"""docs/rules.md is generated from the packs and checked against them (by the generator's own
command, as a maintainer runs it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from gateway.config.section import validator
from gateway.rules import model as m
from gateway.rules.config import default_rules_dir, load_rule_packs
from gateway.rules.doc import _Params, detection_time

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "rules.md"


def _doc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.rules.doc", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)


def test_docs_rules_md_matches_the_packs() -> None:
    result = _doc("--check", str(DOC))
    assert result.returncode == 0, result.stderr


def test_every_rule_is_in_the_doc_with_its_detection_time() -> None:
    text = DOC.read_text(encoding="utf-8")
    for pack in load_rule_packs(default_rules_dir()).values():
        for rule in pack.rules:
            heading = f"### `{pack.full_id(rule)}`"
            assert heading in text
            section = text.split(heading, 1)[1].split("\n### ", 1)[0]
            assert "**Minimum detection time:**" in section and rule.severity in section


def test_a_changed_pack_makes_the_check_fail(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(default_rules_dir(), rules, ignore=shutil.ignore_patterns("drills"))
    pack = rules / "fire.yaml"
    pack.write_text(pack.read_text(encoding="utf-8").replace("limit: 57", "limit: 58"),
                    encoding="utf-8")
    result = _doc("--rules-dir", str(rules), "--check", str(DOC))
    assert result.returncode == 1 and "out of date" in result.stderr


def test_detection_times() -> None:
    packs = load_rule_packs(default_rules_dir())

    def of(rule_id: str, warm: bool = False) -> float | None:
        pack_id, short = rule_id.split(".")
        rule = packs[pack_id].rule(short)
        assert rule is not None
        return detection_time(rule.condition, _Params(rule.parameters), warm)

    assert of("environment.temperature_rate") == 300.0  # min_span 5 min, no delay
    assert of("explosion.cell_temperature_rise") == 150.0  # 30 s span + 2 min sustain
    assert of("fire.heat_rate_of_rise") == 15.0  # a quarter of the 1 min window
    # after a restart with the trend in the saved window: no span to wait for, delays stay
    assert of("environment.temperature_rate", warm=True) == 0.0
    assert of("explosion.cell_temperature_rise", warm=True) == 120.0
    assert of("explosion.gas_detector_failure", warm=True) == 10.0
    assert of("explosion.gas_detector_failure") == 10.0  # the quicker of any
    assert of("power.branch_overload") == 10.0  # (once a rating is set per site)
    compare = validator(m.Compare).validate_python({"above": 1, "on_delay": "$d"})
    assert detection_time(compare, _Params({"d": 7.0})) == 7.0
    assert detection_time(compare, _Params({"d": None})) is None  # a delay set per site
