"""Shared benchmark plumbing: generated sites, a simulator in its own process, result tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]

BENCH_METER: dict[str, Any] = {
    # 40 points in one 76-register read: floats, scaled int16 and word-swapped uint32
    "kind": "modbus", "id": "bench_meter", "manufacturer": "bench", "model": "bench meter",
    "generic": True,
    "points": (
        [{"name": f"f{i}", "register": "input", "address": 2 * i, "type": "float32",
          "quantity": "phase_voltage", "unit": "V", "valid": {"min": -1e9, "max": 1e9}}
         for i in range(24)]
        + [{"name": f"s{i}", "register": "input", "address": 50 + i, "type": "int16",
            "scale": 0.1, "quantity": "temperature", "unit": "°C"} for i in range(8)]
        + [{"name": f"u{i}", "register": "input", "address": 60 + 2 * i, "type": "uint32",
            "order": "CDAB", "quantity": "energy_kwh"} for i in range(8)]
    ),
}


def write_profiles(directory: Path) -> Path:
    """Bench profiles plus the shipped ones, in one directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for shipped in (REPO / "hardware" / "profiles").glob("*.yaml"):
        (directory / shipped.name).write_text(shipped.read_text())
    (directory / "bench_meter.yaml").write_text(yaml.safe_dump(BENCH_METER, sort_keys=False))
    return directory


@contextmanager
def simulator(config: Path, workdir: Path) -> Iterator[Path]:
    """Run `roomwarden simulate` in its own process; yield the config pointed at it."""
    sim_config = workdir / f"{config.stem}.sim.yaml"
    sim_config.unlink(missing_ok=True)
    log = (workdir / f"{config.stem}.sim.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "simulate", str(config),
         "--write-config", str(sim_config)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not sim_config.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"simulator did not start; see {log.name}")
            time.sleep(0.05)
        yield sim_config
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def print_table(title: str, rows: list[tuple[str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"\n== {title}")
    for name, value, target in rows:
        print(f"  {name:<{width}}  {value:>14}   {target}")


def emit_json(name: str, figures: dict[str, Any]) -> None:
    print(json.dumps({"bench": name, **figures}, sort_keys=True))


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system
