"""Flight-recorder benchmark: 2,000 points sampled every second for 15 minutes (the default
window), a plausible mix — 40 % contacts and flags (a rare change), 30 % scaled analog values
(0.1 steps of a random walk), 20 % status codes (constant), 10 % counters — with 0-30 ms of
poll-time jitter on every timestamp. Then the worst case: every value random noise.

Memory is what the recorder holds (`sys.getsizeof` of every ring, array, point name and the
dict) and, as an upper bound, the process's resident-set growth while it fills (which also
counts the allocator's freed-but-kept heap and the benchmark's own batches); CPU is
`record()`'s process time per 1,000 samples — at 1 s per sample, also milliseconds of CPU per
second per 1,000 points. Target: ≤ 8 MiB.
"""

from __future__ import annotations

import gc
import os
import random
import time

from gateway.field.sample import Quality, Sample, Value
from gateway.recorder.ring import FlightRecorder
from tests.bench.common import emit_json, print_table

POINTS = 2000
SECONDS = 900
T0 = 1_700_000_000_000_000_000
TARGET_MIB = 8.0


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def fill(points: int, seconds: int, noise: bool) -> tuple[FlightRecorder, float, int]:
    """The recorder after `seconds` of `points`; CPU seconds in `record`; RSS growth."""
    rng = random.Random(1)
    names = [f"dev{i // 20}.p{i}" for i in range(points)]
    kinds = [i % 10 for i in range(points)]
    state: list[float] = [20.0 + i % 7 for i in range(points)]
    gc.collect()
    before = rss_bytes()
    recorder = FlightRecorder(float(seconds), interval_of=lambda point: 1.0)
    cpu = 0.0
    for second in range(seconds):
        base = T0 + second * 1_000_000_000
        batch = []
        for i in range(points):
            kind = kinds[i]
            value: Value
            if noise:
                value = rng.random() * 1000.0
            elif kind < 4:
                value = rng.random() < 0.001
            elif kind < 7:
                state[i] = round(state[i] + rng.choice((-0.1, 0.0, 0.0, 0.1)), 1)
                value = state[i]
            elif kind < 9:
                value = 2
            else:
                state[i] += rng.randint(0, 3)
                value = int(state[i])
            batch.append(Sample(names[i], value, base + rng.randint(0, 30_000_000),
                                Quality.GOOD))
        began = time.process_time()
        recorder.record(batch)
        cpu += time.process_time() - began
    gc.collect()
    return recorder, cpu, rss_bytes() - before


def main(points: int = POINTS, seconds: int = SECONDS) -> dict[str, float]:
    recorder, cpu, grown = fill(points, seconds, noise=False)
    samples = points * seconds
    began = time.process_time()
    room = [recorder.samples(p, T0 + (seconds - 600) * 10**9) for p in list(recorder.rings)[:50]]
    read_s = time.process_time() - began
    assert all(len(r) >= 590 for r in room)
    figures = {
        "points": points, "seconds": seconds,
        "rss_growth_mib": grown / 2**20,
        "live_mib": recorder.live_bytes() / 2**20,
        "bytes_per_sample": recorder.live_bytes() / samples,
        "cpu_ms_per_1000_samples": cpu / samples * 1e6,
        "read_10min_50_points_ms": read_s * 1000,
    }
    noisy, _, _ = fill(points // 10, seconds, noise=True)
    figures["worst_case_bytes_per_sample"] = noisy.live_bytes() / (points // 10 * seconds)
    figures["worst_case_mib_scaled"] = figures["worst_case_bytes_per_sample"] * samples / 2**20
    del noisy
    print_table("flight recorder (2,000 points at 1 s, 15 min)", [
        ("memory held", f"{figures['live_mib']:.2f} MiB", f"≤ {TARGET_MIB} MiB"),
        ("process RSS growth", f"{figures['rss_growth_mib']:.2f} MiB", "upper bound"),
        ("bytes per sample", f"{figures['bytes_per_sample']:.2f}", ""),
        ("CPU per 1,000 samples", f"{figures['cpu_ms_per_1000_samples']:.2f} ms",
         "= ms CPU/s per 1,000 points at 1 s"),
        ("read 10 min of 50 points", f"{figures['read_10min_50_points_ms']:.1f} ms", ""),
        ("worst case (random noise)", f"{figures['worst_case_mib_scaled']:.1f} MiB",
         "scaled from 200 points"),
    ])
    emit_json("recorder", figures)
    return figures


if __name__ == "__main__":
    main()
