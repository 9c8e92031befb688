"""The flight recorder's instructions per sample at the whole-process benchmark's 2,000-point
load (`p2000` of tests/bench/bench_recorder.py: 10 blocks × 200 registers ×0.01, every value
moving every second), seals included: the same batches run twice under
`valgrind --tool=cachegrind` (`PYTHONHASHSEED=0`), once handed to `FlightRecorder.record` and
once not, and the difference of their instruction counts is divided by the samples. The batches
are made before either run records (the same work in both: only `record()` differs). 400
simulated seconds by default: every ring's `PROBE`th sample and its first three seals (CHUNK
128), the window (900 s) not yet full, so no chunk is dropped — a cost of a sample the same
whatever the window.

    .venv/bin/python -m tests.bench.bench_recorder_instructions            # ~2 × 2 min
    .venv/bin/python -m tests.bench.bench_recorder_instructions --seconds 600
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from gateway.recorder.ring import FlightRecorder
from tests.bench.bench_recorder import POINTS, SECONDS, registers
from tests.bench.common import REPO, emit_json, print_table

DEFAULT_SECONDS = 400


def run(seconds: int, record: bool) -> None:
    """The p2000 batches for `seconds`, recorded or not (what cachegrind counts)."""
    batches = list(registers(POINTS, seconds))
    gc.collect()
    recorder = FlightRecorder(float(SECONDS), interval_of=lambda point: 1.0)
    if record:
        for batch in batches:
            recorder.record(batch)


def instructions(seconds: int, record: bool) -> int:
    """Instructions of one `run` (the total of cachegrind's output file)."""
    with tempfile.TemporaryDirectory(prefix="roomwarden-bench-recorder-cg-") as tmp:
        out = Path(tmp) / "cg.out"
        subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no",
                        f"--cachegrind-out-file={out}", sys.executable, "-m",
                        "tests.bench.bench_recorder_instructions", "--run", str(seconds),
                        *(["--record"] if record else [])],
                       cwd=REPO, capture_output=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": "0"})
        totals = [line.split()[1] for line in out.read_text().splitlines()
                  if line.startswith("summary:")]
    return int(totals[0])


def main(seconds: int = DEFAULT_SECONDS) -> dict[str, Any]:
    without, with_ = instructions(seconds, False), instructions(seconds, True)
    samples = POINTS * seconds
    figures = {"seconds": seconds, "samples": samples, "instructions_without": without,
               "instructions_with": with_, "instructions_per_sample": (with_ - without) / samples}
    print_table("flight recorder, p2000, instructions (cachegrind)", [
        ("instructions per sample", f"{figures['instructions_per_sample']:,.0f}",
         f"record() of {POINTS:,} points × {seconds} s, seals included"),
    ])
    emit_json("recorder_instructions", figures)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=DEFAULT_SECONDS)
    parser.add_argument("--run", type=int, metavar="SECONDS", help=argparse.SUPPRESS)
    parser.add_argument("--record", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run is not None:
        run(args.run, args.record)
    else:
        main(args.seconds)
