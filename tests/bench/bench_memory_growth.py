"""What grows after warm-up, in-process: the safety core (rules engine + alarm manager with its
journal) and a flight recorder fed the same batches, on the whole-process benchmark's sites
(`tests/bench/bench_rules_round.py` builds them and makes the samples), on a manual clock, so
simulated minutes pass in seconds of CPU. tracemalloc (started after the build) is read once a
simulated minute; from minute BENCH_GROWTH_FROM on, each reading is compared with that one and
the lines whose held memory changed most are listed (their file and line: where the memory
was allocated).

The whole process's RSS over real minutes is `BENCH_PROCESS_SOAK` in bench_process.py; this
says which of its parts grows (docs/performance.md, "Flat after warm-up").

Environment: BENCH_GROWTH_LOAD (p200, p2000; default p2000), BENCH_GROWTH_MINUTES (simulated
minutes, default 10), BENCH_GROWTH_FROM (minute of the reference reading, default 3),
BENCH_GROWTH_TOP (lines listed a minute, default 6), BENCH_GROWTH_RECORDER (0: no recorder).
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from gateway.clock import ManualClock
from gateway.recorder.ring import FlightRecorder
from tests.bench.bench_process import LOADS, Load
from tests.bench.bench_rules_round import BATCHES_PER_ROUND, batch, build
from tests.bench.common import emit_json, print_table


def run(load: Load, *, minutes: int, start: int, top: int, recorder_on: bool
        ) -> dict[str, Any]:
    clock = ManualClock()
    with tempfile.TemporaryDirectory(prefix="roomwarden-bench-growth-") as tmp:
        core, table, devices = build(load, Path(tmp), clock)
        recorder = FlightRecorder(900.0, interval_of=lambda point: 1.0) if recorder_on else None
        per_round = BATCHES_PER_ROUND if len(devices) > 1 else 1
        step = 1.0 / len(devices)

        def simulate(seconds: int) -> None:
            for _ in range(seconds):
                for index, device in enumerate(devices):
                    made = batch(device, table, clock.now_ns())
                    core.ingest(made)
                    if recorder is not None:
                        recorder.record(made)
                    if (index + 1) % per_round == 0 or index == len(devices) - 1:
                        core.step()
                    clock.advance(step)

        tracemalloc.start(1)
        began = time.process_time()
        traced: list[float] = []
        lines: dict[int, list[str]] = {}
        reference: tracemalloc.Snapshot | None = None
        try:
            for minute in range(1, minutes + 1):
                simulate(60)
                gc.collect()
                traced.append(tracemalloc.get_traced_memory()[0] / 2**20)
                if minute == start:
                    reference = tracemalloc.take_snapshot()
                elif reference is not None:
                    diff = tracemalloc.take_snapshot().compare_to(reference, "lineno")
                    lines[minute] = [str(stat) for stat in diff[:top]
                                     if abs(stat.size_diff) >= 4096]
        finally:
            tracemalloc.stop()
            core.close()
    return {"load": load.title, "recorder": recorder_on, "traced_mib_per_minute": traced,
            "growth_from_reference_mib": traced[-1] - traced[start - 1] if minutes >= start
            else None, "lines_per_minute": lines, "cpu_s": time.process_time() - began}


def main() -> dict[str, Any]:
    loads = {load.key: load for load in LOADS}
    load = loads[os.environ.get("BENCH_GROWTH_LOAD", "p2000")]
    minutes = int(os.environ.get("BENCH_GROWTH_MINUTES", "10"))
    start = int(os.environ.get("BENCH_GROWTH_FROM", "3"))
    top = int(os.environ.get("BENCH_GROWTH_TOP", "6"))
    recorder_on = os.environ.get("BENCH_GROWTH_RECORDER", "1") != "0"
    result = run(load, minutes=minutes, start=start, top=top, recorder_on=recorder_on)
    rows = [(f"minute {i}", f"{mib:.2f} MiB", "  |  ".join(result["lines_per_minute"].get(i, [])))
            for i, mib in enumerate(result["traced_mib_per_minute"], start=1)]
    print_table(f"Held by the safety core{' and the flight recorder' if recorder_on else ''} "
                f"after each simulated minute ({load.title}; lines: change since minute "
                f"{start})", rows)
    emit_json("memory_growth", result)
    return result


if __name__ == "__main__":
    main()
