"""The whole-process benchmark's ablation loads (tests/bench/bench_process.py,
`BENCH_PROCESS_ABLATE`): each gateway config they run is accepted and turns off exactly the
part its figure is said to leave out."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.config.loader import load_gateway_config
from tests.bench.bench_process import ABLATIONS, LOADS, gateway_config_of, holding_profile, site

BY_KEY = {load.key: load for load in LOADS}
OFF = {"p2000": set(), "p2000norec": {"recorder"}, "p2000norules": {"rules"},
       "p2000local": {"uplink"}, "p2000field": {"recorder", "rules", "uplink"},
       "p2000uplink": {"recorder", "rules"}}


@pytest.mark.parametrize("key", ["p2000", *ABLATIONS])
def test_an_ablation_load_turns_off_its_part_and_nothing_else(tmp_path: Path, key: str) -> None:
    load = BY_KEY[key]
    assert load.ablation is (key != "p2000")
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / f"bench_hr{load.points}.yaml").write_text(
        yaml.safe_dump(holding_profile(load.points, load.scale)))
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(gateway_config_of(load, site(load, profiles), 20_001,
                                                     "ingest")))
    config = load_gateway_config(path).config
    off = {part for part, is_off in (("recorder", not config.recorder.enabled),
                                     ("rules", config.rules.packs == ()),
                                     ("uplink", config.uplink is None)) if is_off}
    assert off == OFF[key]
    assert len(config.devices) == 10


def test_the_default_table_runs_no_ablation() -> None:
    assert {load.key for load in LOADS if not load.ablation} == {
        "p1", "p200", "p2000", "p2000w", "p200f", "p1local"}
    assert set(ABLATIONS) == {load.key for load in LOADS if load.ablation}
