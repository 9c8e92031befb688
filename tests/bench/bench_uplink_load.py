"""The uplink's CPU at a steady 2,000 points a second (issue 15's p2000 load, uplink only).

`roomwarden run`'s p2000 load (tests/bench/bench_process.py: 10 Modbus TCP devices × 200 int16
holding registers at ×0.01, every value moving every second, the exception filter's deadband
0, `delivery: puback`) as the uplink sees it: every second, ten `Uplink.on_samples` batches of
200 samples (one per device poll, as the bus loop hands them over, a few ms apart), into a real
Mosquitto on a free loopback port through the durable SQLite outbox (WAL, synchronous=FULL, the
production commit interval). Each batch's samples are made just before it is handed over, as a
bus loop decodes them (their values drawn before the window); making them is part of the
feeding loop, measured alone and subtracted.

Measured over the window (default 30 s after 5 s of warm-up), in this process:
- CPU seconds of the whole process (`time.process_time()`: every thread) and per thread
  (`pthread_getcpuclockid`: the event loop, the uplink's writer, paho's network thread);
- CPU µs per point (sample in → row in the outbox → published → PUBACK → row gone);
- the same feeding loop with no uplink (what the feeding itself costs), subtracted;
- commits, writer wake-ups, points published.

Environment: BENCH_UPLINK_WINDOW (s, default 30), BENCH_UPLINK_WARMUP (s, default 5),
BENCH_UPLINK_DELIVERY (puback | ingest is not supported here: puback, as the p2000 load).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gateway.clock import SystemClock
from gateway.config.section import validator
from gateway.contract.wire import PointMeta
from gateway.field.sample import Quality, Sample
from gateway.uplink.publisher import Uplink
from gateway.uplink.settings import UplinkSettings
from tests.bench.common import emit_json, print_table
from tests.bench.services import mosquitto

DEVICES, POINTS = 10, 200
QUANTITIES = ("temperature", "phase_voltage", "phase_current")
GAP = 0.003
"""Seconds between two devices' batches within a second (one TCP bus polled in turn)."""


def catalog_points() -> dict[str, PointMeta]:
    return {f"d{d}.r{p}": PointMeta(device=f"d{d}", room=f"room-{d}",
                                    quantity=QUANTITIES[p % len(QUANTITIES)], unit="V")
            for d in range(DEVICES) for p in range(POINTS)}


NAMES = [[f"d{d}.r{p}" for p in range(POINTS)] for d in range(DEVICES)]


def seconds_of_values(count: int) -> list[list[list[float]]]:
    """`count` seconds of each device's values; every value moves every second (int16 × 0.01
    noise)."""
    rng = random.Random(15)
    return [[[round(rng.randint(2000, 2600) * 0.01 + c * 0.01, 2) for _ in range(POINTS)]
             for _ in range(DEVICES)] for c in range(count)]


def batch_of(device: int, values: list[float], ts: int) -> list[Sample]:
    """One poll's samples, made now (as a bus loop's decoder makes them)."""
    return [Sample(name, value, ts, Quality.GOOD)
            for name, value in zip(NAMES[device], values, strict=True)]


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each live thread of this process, by name."""
    out: dict[str, float] = {}
    for t in threading.enumerate():
        if t.ident is None:
            continue
        try:
            clock = time.pthread_getcpuclockid(t.ident)
            out[t.name] = out.get(t.name, 0.0) + time.clock_gettime(clock)
        except (OSError, ProcessLookupError):
            continue
    return out


async def feed(uplink: Uplink | None, work: list[list[list[float]]]) -> None:
    """One second's batches at the top of each second, `GAP` apart."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for second, devices in enumerate(work):
        for d, values in enumerate(devices):
            at = start + second + d * GAP
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            batch = batch_of(d, values, time.time_ns())
            if uplink is not None:
                uplink.on_samples(batch)


async def measure(port: int | None, state_dir: Path, window: float, warmup: float
                  ) -> dict[str, Any]:
    clock = SystemClock()
    uplink: Uplink | None = None
    task = None
    if port is not None:
        settings = validator(UplinkSettings).validate_python({
            "broker": "127.0.0.1", "port": port, "delivery": "puback",
            "exception": {"deadband": 0}})
        uplink = Uplink(settings, "bench", "bench-p2000", state_dir, clock, catalog_points())
        task = asyncio.create_task(uplink.run())
        deadline = time.monotonic() + 15
        while not (uplink.status().connected and uplink.status().published >= 2):
            if time.monotonic() > deadline:
                raise TimeoutError("uplink did not connect")
            await asyncio.sleep(0.02)
    work = seconds_of_values(int(warmup + window) + 1)
    try:
        await feed(uplink, work[:int(warmup)])
        before = (uplink.status().published, uplink.committer.commits,
                  uplink.committer.wakeups) if uplink is not None else (0, 0, 0)
        threads, cpu, wall = thread_cpu(), time.process_time(), time.monotonic()
        await feed(uplink, work[int(warmup):int(warmup) + int(window)])
        await asyncio.sleep(0.5)  # the last second's PUBACKs and commit
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        after = thread_cpu()
        by_thread = {name: after[name] - threads.get(name, 0.0) for name in after}
        figures: dict[str, Any] = {"cpu_seconds": cpu, "wall_seconds": wall,
                                   "by_thread": by_thread}
        if uplink is not None:
            status = uplink.status()
            figures.update(published=status.published - before[0],
                           commits=uplink.committer.commits - before[1],
                           wakeups=uplink.committer.wakeups - before[2],
                           depth=status.outbox.depth, passed=uplink.filter.passed)
    finally:
        if uplink is not None and task is not None:
            await uplink.close()
            task.cancel()
    return figures


def main() -> dict[str, Any]:
    logging.getLogger("roomwarden").setLevel(logging.WARNING)
    window = float(os.environ.get("BENCH_UPLINK_WINDOW", "30"))
    warmup = float(os.environ.get("BENCH_UPLINK_WARMUP", "5"))
    load = os.getloadavg()
    base = asyncio.run(measure(None, Path("."), window, warmup))
    with tempfile.TemporaryDirectory(prefix="roomwarden-bench-uplink-") as tmp, \
            mosquitto(Path(tmp) / "broker") as broker:
        figures = asyncio.run(measure(broker.port, Path(tmp) / "state", window, warmup))
    points = DEVICES * POINTS * int(window)
    net = figures["cpu_seconds"] - base["cpu_seconds"]
    figures.update(points=points, feed_cpu_seconds=base["cpu_seconds"], uplink_cpu_seconds=net,
                   us_per_point=1e6 * net / points, cpu_share=net / figures["wall_seconds"],
                   load_average=load)
    threads = ", ".join(f"{name} {sec * 1000:.0f} ms" for name, sec in
                        sorted(figures["by_thread"].items(), key=lambda kv: -kv[1]) if sec > 0)
    print_table(f"Uplink at {DEVICES * POINTS:,} points/s ({DEVICES} batches of {POINTS} a "
                f"second, every value moving, deadband 0, delivery puback, real Mosquitto), "
                f"{window:g} s window; load average {load[0]:.2f}", [
        ("uplink CPU seconds (process - feeding alone)", f"{net:.3f}",
         f"process {figures['cpu_seconds']:.3f}, feeding {base['cpu_seconds']:.3f}"),
        ("CPU µs per point", f"{figures['us_per_point']:.2f}", "target <= 2"),
        ("share of one core", f"{figures['cpu_share']:.2%}", ""),
        ("per thread", threads, ""),
        ("messages published (PUBACKed)", f"{figures['published']}",
         f"commits {figures['commits']}, writer wake-ups {figures['wakeups']}"),
        ("outbox depth at the end", f"{figures['depth']}", ""),
    ])
    emit_json("uplink_load_p2000", figures)
    return figures


if __name__ == "__main__":
    main()
