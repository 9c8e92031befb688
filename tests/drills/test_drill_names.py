"""A drill names only what its site has (gateway.drills.sitecheck): a typo in a step or an
expectation is an error naming file, line, path and the nearest real name — not a MISS that
blames the rules. And the drill the README shows runs as written and passes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.cli import check_file
from gateway.config.loader import ConfigErrors
from gateway.drills.runner import run_drill

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"


def readme_drill() -> str:
    """The drill file the README shows, its site path made absolute (it is written
    relative to edge_rules/drills/)."""
    readme = (REPO / "README.md").read_text()
    found = re.search(r"```yaml\n(drill: h2_buildup .*?)```", readme, re.S)
    assert found, "the README's drill example is gone"
    text = found.group(1)
    assert "site: ../../firmware_configs/telecom_equipment_room.yaml" in text
    return text.replace("site: ../../firmware_configs/", f"site: {REPO}/firmware_configs/")


def test_the_readmes_drill_runs_as_written_and_passes(tmp_path: Path) -> None:
    path = tmp_path / "readme_drill.yaml"
    path.write_text(readme_drill())
    report = run_drill(path)
    assert report.ok, report.render()
    assert len(report.checks) >= 4  # alarms, the fan, the coil writes: each was judged


def test_names_the_site_does_not_have_are_errors_with_line_and_nearest_name(
        tmp_path: Path) -> None:
    text = readme_drill()
    text = text.replace("output: fan-batt-3f,", "output: fan-batt,")
    text = text.replace("alarm: explosion.h2_alarm,", "alarm: explosion.h2_alarn,")
    text = text.replace("fault: {device: th-batt-01,", "fault: {device: th-bat-01,")
    text = text.replace("stick: {point: do-tx-01.do3,", "stick: {point: do-tx-01.do9,")
    text = text.replace("release: [h2-batt-01.h2]", "release: [h2-batt-01.h3]")
    text = text.replace("set: {h2-batt-01.h2:", "set: {h2-batt-1.h2:")
    path = tmp_path / "typos.yaml"
    path.write_text(text)
    with pytest.raises(ConfigErrors) as caught:
        run_drill(path)
    lines = text.splitlines()
    found = {e.path: e for e in caught.value.errors}
    assert set(found) == {
        ("steps", 0, "set", "h2-batt-1.h2"), ("steps", 1, "fault", "device"),
        ("steps", 3, "release", 0), ("steps", 4, "stick", "point"),
        ("expect", 1, "output"), ("expect", 2, "alarm")}
    output = found[("expect", 1, "output")]
    assert output.file == str(path)
    assert output.reason == ("no output 'fan-batt' on the drill's site; did you mean "
                             "'fan-batt-3f'?")
    assert output.line is not None and "fan-batt," in lines[output.line - 1]
    assert "did you mean 'explosion.h2_alarm'?" in found[("expect", 2, "alarm")].reason
    assert "did you mean 'h2-batt-01.h2'?" in found[("steps", 0, "set", "h2-batt-1.h2")].reason
    assert "no coil 'do-tx-01.do9'" in found[("steps", 4, "stick", "point")].reason


def test_flags_of_a_register_and_coils_are_names_a_drill_may_use(tmp_path: Path) -> None:
    """`device.point.flag` (a status word's bit) is a point a drill may set; a coil is what
    `writes` counts — the shipped drills use both."""
    path = tmp_path / "flags.yaml"
    path.write_text(f"""drill: ups_flag
title: a UPS status flag and a coil
site: {SITE}
duration: 30s
steps:
  - {{at: 1s, set: {{ups-tx-01.status.utility_fail: true}}}}
expect:
  - {{writes: do-tx-01.do1, at_most: 10, after: 0s, within: 20s}}
allow: ["*"]
""")
    assert run_drill(path).ok


def test_check_knows_a_drill_or_profile_outside_their_folders(tmp_path: Path) -> None:
    """`roomwarden check /tmp/my_drill.yaml` checks it as a drill (with its names), not as a
    gateway config with fourteen "unknown key" errors; a profile copied elsewhere likewise."""
    good = tmp_path / "readme_drill.yaml"
    good.write_text(readme_drill())
    assert check_file(good) == "drill h2_buildup, 5 steps, 5 expectations"
    bad = tmp_path / "bad.yaml"
    bad.write_text(readme_drill().replace("output: fan-batt-3f,", "output: fan-batt,"))
    with pytest.raises(ConfigErrors) as caught:
        check_file(bad)
    assert [e.path for e in caught.value.errors] == [("expect", 1, "output")]
    profile = tmp_path / "eastron_sdm630.yaml"  # a copy on a USB stick
    profile.write_text((REPO / "hardware" / "profiles" / "eastron_sdm630.yaml").read_text())
    assert check_file(profile).startswith("profile eastron_sdm630,")
