"""What the rate windows' periodic save (`gateway.rules.warm`) leaves in the process over the
hour its one-hour windows take to fill: the whole-process benchmark's 2,000-point site (938
rate windows, 268 of an hour) run in-process on a manual clock, the safety core fed as
`bench_memory_growth` feeds it (no flight recorder), a save every simulated minute — the
snapshot on this thread, the write on a worker thread, as the gateway's `asyncio.to_thread`
does. Once a simulated minute: RssAnon (/proc/self/status) and glibc's heap (`mallinfo2`:
bytes in use, and free but kept).

A save used to copy every window into arrays of its own and build the ages in a growing
array on glibc's heap: those temporaries grew with the windows for an hour, and glibc kept
what each save freed (RssAnon +2.4 MiB from minute 1 to 60, 4 Dec 2026). Now the samples go to
mappings of their own (`warm_file.room`), returned whole after each save.

Environment: BENCH_WARM_MINUTES (simulated minutes, default 65), BENCH_WARM_SAVE (0: no
saves, the reference).
"""

from __future__ import annotations

import ctypes
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gateway.clock import ManualClock
from gateway.rules.warm import RateMemory
from tests.bench.bench_process import LOADS
from tests.bench.bench_rules_round import BATCHES_PER_ROUND, batch, build
from tests.bench.common import emit_json, print_table


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def heap_mib() -> tuple[float, float]:
    """glibc's heap (every arena): MiB in use and MiB free but kept (0, 0 without glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2
    except (OSError, AttributeError):
        return 0.0, 0.0
    info = libc.mallinfo2()
    return info.uordblks / 2**20, info.fordblks / 2**20


def rss_anon_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run(minutes: int, save: bool) -> dict[str, Any]:
    clock = ManualClock()
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="roomwarden-bench-warm-") as tmp, \
            ThreadPoolExecutor(1) as writer:
        core, table, devices = build(LOADS[2], Path(tmp), clock)
        memory = RateMemory(Path(tmp), clock)
        step = 1.0 / len(devices)
        began = time.process_time()
        try:
            for _ in range(minutes):
                for _ in range(60):
                    for index, device in enumerate(devices):
                        core.ingest(batch(device, table, clock.now_ns()))
                        if (index + 1) % BATCHES_PER_ROUND == 0 or index == len(devices) - 1:
                            core.step()
                        clock.advance(step)
                if save:
                    writer.submit(memory.write, memory.snapshot(core.engine, core.loaded)
                                  ).result()
                    writer.submit(int).result()  # the worker has let go of the snapshot
                used, kept = heap_mib()
                rows.append({
                    "rss_anon_mib": rss_anon_mib(), "heap_used_mib": used, "heap_kept_mib": kept,
                    "samples": sum(len(w.samples) for state in core.engine.rate_points().values()
                                   for w in state.rates),
                    "file_bytes": memory.path.stat().st_size if memory.path.exists() else 0})
        finally:
            core.close()
    return {"save": save, "minutes": rows, "cpu_s": time.process_time() - began}


def main() -> dict[str, Any]:
    minutes = int(os.environ.get("BENCH_WARM_MINUTES", "65"))
    save = os.environ.get("BENCH_WARM_SAVE", "1") != "0"
    result = run(minutes, save)
    shown = [(i, row) for i, row in enumerate(result["minutes"], start=1)
             if i <= 5 or i % 5 == 0 or i == minutes]
    print_table(f"Rate windows' saves over {minutes} simulated minutes at 2,000 points "
                f"({'a save a minute' if save else 'no saves'}): RssAnon, glibc heap in use / "
                "kept free, samples in the windows, file", [
                    (f"minute {i}", f"{row['rss_anon_mib']:.1f} MiB",
                     f"{row['heap_used_mib']:.2f} / {row['heap_kept_mib']:.2f} MiB, "
                     f"{row['samples']:.0f} samples, {row['file_bytes']:.0f} B")
                    for i, row in shown])
    emit_json("warm_save", result)
    return result


if __name__ == "__main__":
    main()
