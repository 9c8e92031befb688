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

What a save costs in time, each simulated minute (wall clock, `perf_counter`): the snapshot
on the event loop (`RateMemory.snapshot`: while it runs no poll, rule round or alarm does), the
write on the worker thread (`RateMemory.write`), and the longest gap between the ticks of a
1 ms timer on the loop from the snapshot to the write's end (the loop's worst wait: the
snapshot, or the worker holding the GIL for a switch interval). At the end, a restore of the
last file into a fresh engine, timed (it runs at the start, before the buses: `Gateway`).

Environment: BENCH_WARM_MINUTES (simulated minutes, default 65), BENCH_WARM_SAVE (0: no
saves, the reference), BENCH_WARM_AB (N: then N saves by each path in turn on the same
windows — the snapshot of before, decoding every window on the loop, and the copy — each
timed as above: an A/B in one process, less at the mercy of a busy machine than two runs).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from typing import Any

from gateway.clock import ManualClock
from gateway.rules.warm import RateMemory, fingerprints
from gateway.safety import SafetyCore
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


def _timed_write(memory: RateMemory, snapshot: Any) -> float:
    """`memory.write(snapshot)` on the worker thread: its milliseconds."""
    began = time.perf_counter()
    assert memory.write(snapshot)
    return (time.perf_counter() - began) * 1000.0


async def timed_save(memory: RateMemory, take: Callable[[], Any], writer: ThreadPoolExecutor
                     ) -> dict[str, float]:
    """A save as the gateway's `RateMemory.run` makes it — the snapshot (`take`) on the loop,
    the write on a thread — with a 1 ms timer ticking on the loop: the snapshot's and the
    write's milliseconds and the longest gap between two ticks (the loop's longest wait)."""
    ticks: list[float] = []
    writing = True

    async def tick() -> None:
        while writing:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.001)

    ticker = asyncio.get_running_loop().create_task(tick())
    await asyncio.sleep(0.005)
    began = time.perf_counter()
    snapshot = take()
    loop_ms = (time.perf_counter() - began) * 1000.0
    thread_ms = await asyncio.get_running_loop().run_in_executor(
        writer, _timed_write, memory, snapshot)
    del snapshot
    writing = False
    await ticker
    return {"loop_ms": loop_ms, "thread_ms": thread_ms,
            "stall_ms": max(b - a for a, b in pairwise(ticks)) * 1000.0}


def timed_restore(memory: RateMemory, core: SafetyCore, clock: ManualClock, work: Path
                  ) -> tuple[float, int]:
    """Milliseconds and samples of a restore of the saved file into a fresh engine of the same
    config, a second after the save (the same boot: the monotonic gap)."""
    clock.advance(1.0)
    fresh = SafetyCore(core.loaded, clock, work / "alarms-restored.db")
    try:
        began = time.perf_counter()
        taken = RateMemory(work, clock).restore(fresh.engine, core.loaded)
        return (time.perf_counter() - began) * 1000.0, taken
    finally:
        fresh.close()


def alternating(memory: RateMemory, core: SafetyCore, clock: ManualClock,
                writer: ThreadPoolExecutor, pairs: int) -> dict[str, list[dict[str, float]]]:
    """`pairs` saves by each path, alternating, on the same windows: the snapshot of before,
    which decoded every window on the loop (kept in tests/rules/test_warm_copy.py; its file is
    the same), and `RateMemory.snapshot`, which copies them as stored."""
    from tests.rules.test_warm_copy import decoding_snapshot

    sources = fingerprints(core.loaded)
    paths: dict[str, Callable[[], Any]] = {
        "decoded on the loop": lambda: decoding_snapshot(
            core.engine.rate_points(), sources, clock.now_ns(), clock.monotonic(),
            memory.boot_id),
        "copied on the loop": lambda: memory.snapshot(core.engine, core.loaded)}
    out: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
    for _ in range(pairs):
        for name, take in paths.items():
            clock.advance(0.001)  # a newer save each time (an older one is not written)
            out[name].append(asyncio.run(timed_save(memory, take, writer)))
    return out


def run(minutes: int, save: bool, pairs: int = 0) -> dict[str, Any]:
    clock = ManualClock()
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="roomwarden-bench-warm-") as tmp, \
            ThreadPoolExecutor(1) as writer:
        core, table, devices = build(LOADS[2], Path(tmp), clock)
        memory = RateMemory(Path(tmp), clock)
        memory.restore(core.engine, core.loaded)  # no file yet; the devices' fingerprints,
        # as the gateway makes them at its start (not in the first save's time)
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
                timing = {}
                if save:
                    timing = asyncio.run(timed_save(
                        memory, lambda: memory.snapshot(core.engine, core.loaded), writer))
                    writer.submit(int).result()  # the worker has let go of the snapshot
                used, kept = heap_mib()
                rows.append({**timing,
                    "rss_anon_mib": rss_anon_mib(), "heap_used_mib": used, "heap_kept_mib": kept,
                    "samples": sum(len(w.samples) for state in core.engine.rate_points().values()
                                   for w in state.rates),
                    "file_bytes": memory.path.stat().st_size if memory.path.exists() else 0})
            cpu_s = time.process_time() - began
            paths = alternating(memory, core, clock, writer, pairs) if save and pairs else {}
            restore_ms, restored = timed_restore(memory, core, clock, Path(tmp)) if save \
                else (0.0, 0)
        finally:
            core.close()
    return {"save": save, "minutes": rows, "cpu_s": cpu_s, "restore_ms": restore_ms,
            "restored_samples": restored, "alternating": paths}


def main() -> dict[str, Any]:
    minutes = int(os.environ.get("BENCH_WARM_MINUTES", "65"))
    save = os.environ.get("BENCH_WARM_SAVE", "1") != "0"
    result = run(minutes, save, int(os.environ.get("BENCH_WARM_AB", "0")))
    shown = [(i, row) for i, row in enumerate(result["minutes"], start=1)
             if i <= 5 or i % 5 == 0 or i == minutes]
    print_table(f"Rate windows' saves over {minutes} simulated minutes at 2,000 points "
                f"({'a save a minute' if save else 'no saves'}): RssAnon, glibc heap in use / "
                "kept free, samples in the windows, file", [
                    (f"minute {i}", f"{row['rss_anon_mib']:.1f} MiB",
                     f"{row['heap_used_mib']:.2f} / {row['heap_kept_mib']:.2f} MiB, "
                     f"{row['samples']:.0f} samples, {row['file_bytes']:.0f} B"
                     + (f"; on the loop {row['loop_ms']:.2f} ms, on the thread "
                        f"{row['thread_ms']:.1f} ms, loop's longest wait "
                        f"{row['stall_ms']:.1f} ms" if save else ""))
                    for i, row in shown])
    if save:
        first = min(61, len(result["minutes"]))  # from minute 61 the hour's windows are full
        full = result["minutes"][first - 1:]
        for key in ("loop_ms", "thread_ms", "stall_ms"):
            result[f"full_{key}"] = {"median": statistics.median(row[key] for row in full),
                                     "min": min(row[key] for row in full),
                                     "max": max(row[key] for row in full)}
        print_table(f"A save at minutes {first}-{minutes} ({full[-1]['samples']:.0f} samples in "
                    "the windows): median, min-max of the minutes", [
                        (label, f"{result[f'full_{key}']['median']:.2f} ms",
                         "{min:.2f}-{max:.2f} ms".format(**result[f"full_{key}"]))
                        for label, key in (("snapshot on the event loop", "loop_ms"),
                                           ("write on the worker thread", "thread_ms"),
                                           ("the loop's longest wait", "stall_ms"))]
                    + [("restore into a fresh engine", f"{result['restore_ms']:.0f} ms",
                        f"{result['restored_samples']} samples, on the loop before the buses")])
    if result["alternating"]:
        print_table("The same windows saved by each path in turn (median of "
                    f"{os.environ.get('BENCH_WARM_AB')}): on the loop, on the thread; the "
                    "loop's longest wait (median, max)", [
                        (name, f"{statistics.median(r['loop_ms'] for r in rows):.2f} ms",
                         f"{statistics.median(r['thread_ms'] for r in rows):.1f} ms; "
                         f"{statistics.median(r['stall_ms'] for r in rows):.1f} ms, "
                         f"{max(r['stall_ms'] for r in rows):.1f} ms")
                        for name, rows in result["alternating"].items()])
    emit_json("warm_save", result)
    return result


if __name__ == "__main__":
    main()
