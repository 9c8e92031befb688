"""Rule rounds in-process: the safety core (rules engine + alarm manager with its journal) on
the whole-process benchmark's sites (tests/bench/bench_process.py: 200 points @1 s on one
device; 2,000 points @1 s on ten devices in rooms of five types, with the noise moving every
value, and in whole units), driven by the simulator's own healthy-room signals on a manual
clock, so only the rules' and alarms' CPU is measured — none of the polling, the outbox or MQTT.

Each device polls once a simulated second, the ten devices 0.1 s apart; a round runs after
every second batch (the daemon's evaluator ran 4.6–5.7 rounds a second at 2,000 points), and
after the one batch at 200 points; between batches, a round at each of the safety core's
deadlines, as the daemon's evaluator runs them (`timer_rounds`). Samples are made as the
gateway makes them: the signal's value to an int16 register (`raw = round(value / scale)`),
decoded by
`gateway.field.readings.point_samples`, plus the device's `online` point, stamped
`REPLY_BEFORE_NS` before the rules take them (the poller stamps a reply when it arrives, and
the batch reaches the rules after the decoding; stamped at the rules' own instant, about half
the samples would be clamped to the engine's now, which a real gateway never sees, and would
keep their rate windows' times as doubles: gateway.rules.rate_samples). After a warm-up
(the rate windows fill: a one-minute window is full after 60 s, the hour's window holds more
samples every 15 s) the process CPU time of `SafetyCore.ingest` and `SafetyCore.step` over
the measured seconds is the rules' share of a core at that load.

Environment: BENCH_RULES_ROUND_LOADS (p200, p2000, p2000w; default all),
BENCH_RULES_ROUND_WARMUP (simulated s, default 120), BENCH_RULES_ROUND_SECONDS (measured
simulated s, default 60), BENCH_RULES_ROUND_PROFILE=1 (cProfile the measured part, top 25 by
own time), BENCH_RULES_ROUND_MEMORY=1 (tracemalloc: what was allocated under gateway/rules and
gateway/alarms and is still held after the warm-up), BENCH_RULES_ROUND_MEMORY_TOP=N (with
MEMORY: the N source lines holding most of it, each allocation counted at its innermost
gateway/rules or gateway/alarms frame), BENCH_RULES_ROUND_EVICT_MIB=N (default 0: before each
batch, outside the timed part, one byte of every 64-byte line of an N-MiB buffer is written, so
the rules' objects come back from further out, as in the daemon, where the other devices'
batches, the flight recorder and the uplink run between one device's polls; on a machine whose
last-level cache other tenants share, that is what a busy neighbour does to them).
"""

from __future__ import annotations

import cProfile
import gc
import os
import pstats
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.clock import ManualClock
from gateway.config.loader import load_gateway_config
from gateway.field.points import BoundPoint, bind_points
from gateway.field.readings import point_samples
from gateway.field.sample import Quality, Sample
from gateway.safety import SafetyCore
from gateway.sim.signals import SignalTable, define_points
from tests.bench.bench_process import LOADS, Load, holding_profile, site
from tests.bench.common import emit_json, print_table

EVICT_LINE = 64
"""Bytes per cache line (x86-64, and the Cortex-A72/A76 of a Raspberry Pi 4/5)."""
ROUND_LOADS = ("p200", "p2000", "p2000w")
REPLY_BEFORE_NS = 1_000_000
"""A batch's samples are stamped 1 ms before the rules take them (see the module docstring)."""
BATCHES_PER_ROUND = 2
"""At 2,000 points (ten devices), a round after every second batch."""


@dataclass
class Device:
    id: str
    points: list[BoundPoint]
    offset: float
    """Seconds into each simulated second at which it is polled."""


def build(load: Load, work: Path, clock: ManualClock
          ) -> tuple[SafetyCore, SignalTable, list[Device]]:
    profiles = work / "profiles"
    profiles.mkdir(parents=True)
    (profiles / f"bench_hr{load.points}.yaml").write_text(
        yaml.safe_dump(holding_profile(load.points, load.scale), sort_keys=False))
    path = work / "site.yaml"
    path.write_text(yaml.safe_dump(site(load, profiles), sort_keys=False))
    loaded = load_gateway_config(path)
    core = SafetyCore(loaded, clock, work / "alarms.db")
    table = SignalTable(clock)
    devices = []
    for index, device in enumerate(loaded.config.devices):
        points = bind_points(device, loaded.profile_of(device))
        define_points(table, points)
        devices.append(Device(device.id, points, index / len(loaded.config.devices)))
    return core, table, devices


def batch(device: Device, table: SignalTable, ts: int) -> list[Sample]:
    out = [Sample(f"{device.id}.online", True, ts, Quality.GOOD)]
    for point in device.points:
        value = table.value(point.id)
        assert isinstance(value, int | float)
        raw = max(-32768, min(32767, round(float(value) / point.scale)))
        point_samples(point, raw, ts, out)
    return out


def rules_heap(top: int = 0) -> tuple[int, list[tuple[str, int, int]]]:
    """Bytes tracemalloc sees held by allocations made under gateway/rules and gateway/alarms
    (any of the 12 innermost frames: the rules' and alarms' run-time state, their rule models
    included, and what generated `__init__`s and the standard library made for them); and
    the `top` lines holding most (line, bytes, blocks) by the innermost such frame."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces([
        tracemalloc.Filter(True, "*/gateway/rules/*", all_frames=True),
        tracemalloc.Filter(True, "*/gateway/alarms/*", all_frames=True)])
    lines: dict[str, list[int]] = {}
    for trace in snapshot.traces:
        for frame in reversed(trace.traceback):  # innermost first
            name = frame.filename
            if "/gateway/rules/" in name or "/gateway/alarms/" in name:
                held = lines.setdefault(f"{name.rsplit('/gateway/', 1)[1]}:{frame.lineno}",
                                        [0, 0])
                held[0] += trace.size
                held[1] += 1
                break
    biggest = sorted(lines.items(), key=lambda item: -item[1][0])[:top]
    return (sum(trace.size for trace in snapshot.traces),
            [(line, size, count) for line, (size, count) in biggest])


def timer_rounds(core: SafetyCore, clock: ManualClock, until: float) -> int:
    """The rounds the daemon's evaluator (gateway/evaluator.py) runs with no new sample before
    `until` (monotonic): one at each of the safety core's deadlines — a rule's timer, a rate
    window's oldest sample leaving it; their number. (Until 7 Dec the loop ran rounds only
    after batches, and a window's departure was judged there, never at its own time as in the
    gateway.)"""
    count = 0
    while (due := core.next_deadline()) is not None and due < until and count < 1000:
        clock.advance(max(0.0, due - clock.monotonic()))
        core.step()
        count += 1
    return count


def run(load: Load, *, warmup: int, seconds: int, profile: bool, memory: bool, top: int = 0,
        evict_mib: int = 0) -> dict[str, Any]:
    clock = ManualClock()
    evict = bytearray(evict_mib << 20)
    evicted = bytes(len(evict) // EVICT_LINE)
    with tempfile.TemporaryDirectory(prefix="roomwarden-bench-round-") as tmp:
        if memory:
            tracemalloc.start(12)
        core, table, devices = build(load, Path(tmp), clock)
        bindings = len(core.engine.bindings())
        profiler = cProfile.Profile() if profile else None
        cpu = 0.0
        rounds = samples = timer_only = 0
        evaluated = 0
        step = 1.0 / len(devices)
        per_round = BATCHES_PER_ROUND if len(devices) > 1 else 1
        gc.collect()
        for second in range(warmup + seconds):
            measuring = second >= warmup
            if measuring and second == warmup:
                evaluated = core.engine.evaluated
                if memory:
                    heap, lines = rules_heap(top)
                    tracemalloc.stop()
                if profiler is not None:
                    profiler.enable()
            for index, device in enumerate(devices):
                made = batch(device, table, clock.now_ns() - REPLY_BEFORE_NS)
                if evict:  # (a C-level strided store: one byte a line)
                    evict[::EVICT_LINE] = evicted
                began = time.process_time()
                core.ingest(made)
                stepped = (index + 1) % per_round == 0 or index == len(devices) - 1
                if stepped:
                    core.step()
                    if measuring:
                        rounds += 1
                next_batch = clock.monotonic() + step
                # (a batch without its round waits for the next batch's: the rounds coalesce)
                timers = timer_rounds(core, clock, next_batch) if stepped else 0
                if measuring:
                    cpu += time.process_time() - began
                    samples += len(made)
                    rounds += timers
                    timer_only += timers
                clock.advance(next_batch - clock.monotonic())
        if profiler is not None:
            profiler.disable()
        evaluated = core.engine.evaluated - evaluated
        active = len(core.alarms.active())
        core.close()
    figures: dict[str, Any] = {
        "load": load.title, "bindings": bindings, "simulated_seconds": seconds,
        "warmup_seconds": warmup, "samples_per_s": samples / seconds,
        "rounds_per_s": rounds / seconds, "timer_rounds_per_s": timer_only / seconds,
        "evaluations_per_s": evaluated / seconds,
        "cpu_pct_of_core": cpu / seconds * 100, "ms_per_round": cpu / rounds * 1000,
        "alarms_active": active, "evict_mib": evict_mib,
    }
    if memory:
        figures["rules_heap_mib"] = heap / 2**20
        figures["heap_per_binding_bytes"] = heap / bindings
        if lines:
            figures["heap_lines"] = lines
    if profiler is not None:
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(45)
    return figures


def main() -> dict[str, Any]:
    keys = [k for k in os.environ.get("BENCH_RULES_ROUND_LOADS", ",".join(ROUND_LOADS)
                                      ).split(",") if k]
    warmup = int(os.environ.get("BENCH_RULES_ROUND_WARMUP", "120"))
    seconds = int(os.environ.get("BENCH_RULES_ROUND_SECONDS", "60"))
    profile = os.environ.get("BENCH_RULES_ROUND_PROFILE") == "1"
    memory = os.environ.get("BENCH_RULES_ROUND_MEMORY") == "1"
    top = int(os.environ.get("BENCH_RULES_ROUND_MEMORY_TOP", "0"))
    evict_mib = int(os.environ.get("BENCH_RULES_ROUND_EVICT_MIB", "0"))
    loads = {load.key: load for load in LOADS}
    results: dict[str, Any] = {}
    for key in keys:
        results[key] = run(loads[key], warmup=warmup, seconds=seconds, profile=profile,
                           memory=memory, top=top, evict_mib=evict_mib)
    rows = []
    for f in results.values():
        rows.append((f"{f['load']}: CPU of a core", f"{f['cpu_pct_of_core']:.2f} %",
                     f"{f['ms_per_round']:.2f} ms × {f['rounds_per_s']:.1f} rounds/s "
                     f"({f['timer_rounds_per_s']:.1f} for timers alone), "
                     f"{f['evaluations_per_s']:,.0f} evaluations/s of {f['bindings']} "
                     f"bindings, {f['alarms_active']} alarms"))
        if "rules_heap_mib" in f:
            rows.append((f"{f['load']}: rules' and alarms' heap", f"{f['rules_heap_mib']:.1f} MiB",
                         f"{f['heap_per_binding_bytes']:,.0f} B per binding"))
            rows.extend((f"  {line}", f"{size / 2**20:.3f} MiB", f"{count:,} blocks")
                        for line, size, count in f.get("heap_lines", ()))
    evicted = f", {evict_mib} MiB written between batches" if evict_mib else ""
    print_table(f"Rule rounds in-process (safety core on a manual clock, {seconds} s after "
                f"{warmup} s{evicted})", rows)
    emit_json("rules_round", results)
    return results


if __name__ == "__main__":
    main()
