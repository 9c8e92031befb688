"""Rule engine build cost: CPU time of `RuleEngine(...)` (binding every rule of the shipped
packs to a site's subjects, compiling the conditions, indexing the readers) for each shipped
site (firmware_configs/*.yaml) and for the 2,000-point site of the rules-round benchmark
(tests/bench/bench_rules_round.py, `p2000`), best of several builds, two ways:

* new config: the config and the packs loaded again before each build (a gateway start or a
  config apply: nothing shared with an earlier engine);
* same config: built again on the same loaded config and packs objects (what the tests do
  hundreds of times: gateway.rules.binding shares per-rule and per-config work between them).

Each figure includes a collection of the young generations after the build (the garbage
collector's share of the objects it made, which would otherwise fall on the next round).

Environment: BENCH_RULES_BUILD_RUNS (builds per site and way, default 7),
BENCH_RULES_BUILD_PROFILE=1 (cProfile the same-config builds of the last site, top 30 by own
time).
"""

from __future__ import annotations

import cProfile
import gc
import os
import pstats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from gateway.clock import ManualClock
from gateway.config.loader import LoadedConfig, load_gateway_config
from gateway.rules.config import ParameterOverrides, default_rules_dir, load_rule_packs
from gateway.rules.engine import RuleEngine
from tests.bench.bench_process import LOADS, holding_profile, site
from tests.bench.common import REPO, emit_json, print_table


def large_site_path(work: Path, key: str = "p2000") -> Path:
    """The rules-round benchmark's site of this load, written under `work`."""
    load = {load.key: load for load in LOADS}[key]
    profiles = work / "profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    (profiles / f"bench_hr{load.points}.yaml").write_text(
        yaml.safe_dump(holding_profile(load.points, load.scale), sort_keys=False))
    path = work / "site.yaml"
    path.write_text(yaml.safe_dump(site(load, profiles), sort_keys=False))
    return path


def large_site(work: Path, key: str = "p2000") -> LoadedConfig:
    return load_gateway_config(large_site_path(work, key))


def timed(build: Callable[[], RuleEngine], runs: int, profiler: cProfile.Profile | None
          ) -> tuple[float, RuleEngine]:
    """Best CPU seconds of `runs` builds (each with its young-generation collection)."""
    best, engine = float("inf"), None
    for _ in range(runs):
        engine = None
        gc.collect()
        if profiler is not None:
            profiler.enable()
        began = time.process_time()
        engine = build()
        gc.collect(1)
        best = min(best, time.process_time() - began)
        if profiler is not None:
            profiler.disable()
    assert engine is not None
    return best, engine


def measure(path: Path, runs: int, profiler: cProfile.Profile | None) -> dict[str, Any]:
    """One site's figures: builds on a new config and packs, then on the same objects again."""
    rules_dir = default_rules_dir()
    fresh = []
    for _ in range(runs):  # loaded ahead: only the build is timed
        loaded = load_gateway_config(path)
        packs = load_rule_packs(rules_dir)
        fresh.append((loaded, packs, ParameterOverrides.for_site(loaded, packs)))

    def new_config() -> RuleEngine:
        loaded, packs, overrides = fresh.pop()
        return RuleEngine(packs, loaded, ManualClock(), overrides)

    cold, engine = timed(new_config, runs, None)
    loaded = load_gateway_config(path)
    packs = load_rule_packs(rules_dir)
    overrides = ParameterOverrides.for_site(loaded, packs)

    def again() -> RuleEngine:
        return RuleEngine(packs, loaded, ManualClock(), overrides)

    warm, _ = timed(again, runs, profiler)
    return {"new_config_ms": cold * 1000, "same_config_ms": warm * 1000,
            "bindings": len(engine.bindings()), "points": len(engine.points())}


def main() -> dict[str, Any]:
    runs = int(os.environ.get("BENCH_RULES_BUILD_RUNS", "7"))
    profile = os.environ.get("BENCH_RULES_BUILD_PROFILE") == "1"
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="roomwarden-bench-build-") as tmp:
        paths = {path.stem: path for path in sorted((REPO / "firmware_configs").glob("*.yaml"))}
        paths["2,000 points (p2000)"] = large_site_path(Path(tmp))
        profiler = cProfile.Profile() if profile else None
        for name, path in paths.items():
            last = name == list(paths)[-1]
            results[name] = measure(path, runs, profiler if last else None)
        if profiler is not None:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    print_table(f"Rule engine build (CPU, best of {runs}): new config / same config again",
                [(name, f"{f['new_config_ms']:.1f} / {f['same_config_ms']:.1f} ms",
                  f"{f['bindings']} bindings, {f['points']} points")
                 for name, f in results.items()])
    emit_json("rules_build", results)
    return results


if __name__ == "__main__":
    main()
