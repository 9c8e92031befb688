"""Instructions of the safety core's rule rounds: `SafetyCore.ingest` and `SafetyCore.step`
on bench_rules_round's site and batches (the same loop, the same manual clock), counted with
valgrind's callgrind inside those two calls only — immune to a shared machine's noise.

The measured seconds call `ingest` and `step` through `sys.call_tracing` (which, with no
tracer set, calls them as they are), and callgrind collects only inside that C function
(`--toggle-collect=sys_call_tracing`): the simulator, the decoding and the warm-up are not
counted. `--callgrind` runs this module under valgrind and prints the count (a few minutes:
the warm-up runs under valgrind too); `--out FILE` keeps callgrind's file for
`callgrind_annotate`. Without `--callgrind` it runs the loop natively (a quick check).

    .venv/bin/python -m tests.bench.bench_rules_instructions --callgrind [--load p2000]
        [--warmup 60] [--seconds 30] [--out /tmp/rules.cg]
"""

from __future__ import annotations

import argparse
import gc
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from gateway.clock import ManualClock
from tests.bench.bench_process import LOADS
from tests.bench.bench_rules_round import BATCHES_PER_ROUND, REPLY_BEFORE_NS, batch, build

REPO = Path(__file__).resolve().parents[2]


def run(load_key: str, warmup: int, seconds: int) -> int:
    """The loop; the binding evaluations of the measured seconds."""
    load = {load.key: load for load in LOADS}[load_key]
    clock = ManualClock()
    counted = sys.call_tracing  # the measured calls: callgrind's toggle
    with tempfile.TemporaryDirectory(prefix="roomwarden-bench-round-cg-") as tmp:
        core, table, devices = build(load, Path(tmp), clock)
        step = 1.0 / len(devices)
        per_round = BATCHES_PER_ROUND if len(devices) > 1 else 1
        gc.collect()
        evaluated = 0
        for second in range(warmup + seconds):
            measuring = second >= warmup
            if second == warmup:
                evaluated = core.engine.evaluated
            for index, device in enumerate(devices):
                made = batch(device, table, clock.now_ns() - REPLY_BEFORE_NS)
                if measuring:
                    counted(core.ingest, (made,))
                else:
                    core.ingest(made)
                if (index + 1) % per_round == 0 or index == len(devices) - 1:
                    if measuring:
                        counted(core.step, ())
                    else:
                        core.step()
                clock.advance(step)
        evaluated = core.engine.evaluated - evaluated
        core.close()
    return evaluated


def callgrind(load: str, warmup: int, seconds: int, out: str | None) -> int:
    """Instructions callgrind collected inside the measured calls of one run."""
    with tempfile.TemporaryDirectory(prefix="roomwarden-bench-round-cg-") as tmp:
        command = ["valgrind", "--tool=callgrind", "--toggle-collect=sys_call_tracing",
                   f"--callgrind-out-file={out or tmp + '/cg.out'}", sys.executable, "-m",
                   "tests.bench.bench_rules_instructions", "--load", load, "--warmup",
                   str(warmup), "--seconds", str(seconds)]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    found = re.search(r"Collected\s*:\s*([\d,]+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in callgrind's output:\n{done.stderr}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", default="p2000", choices=("p200", "p2000", "p2000w"))
    parser.add_argument("--warmup", type=int, default=60)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.callgrind:
        count = callgrind(args.load, args.warmup, args.seconds, args.out)
        print(f"{args.load}: ingest + step, {args.seconds} s after {args.warmup} s: "
              f"{count:,} instructions")
    else:
        print(f"{args.load}: {run(args.load, args.warmup, args.seconds):,} evaluations "
              f"in the measured {args.seconds} s")


if __name__ == "__main__":
    main()
