"""Outbox benchmarks (gateway.uplink.outbox), on the local disk with the production settings
(WAL, synchronous=FULL, commits at most every second or per 1,000 messages).

1. put(): telemetry batches of 100 samples, encoded with the contract and put, flat out for a
   few seconds, committed as the uplink's writer does (when `flush_due()`: a second old or
   1,000 waiting), fsync in the path: messages/s, samples/s, CPU s per 1,000 samples. Also
   put() alone with pre-encoded payloads.
2. Alarm events put and committed one by one (the writer commits each at once): events/s and
   latency.
3. Replay: the stored backlog read back in windows of 100 and acknowledged (next_batch + ack +
   the commits of the acks), unpaced: messages/s and samples/s.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.clock import SystemClock
from gateway.contract.wire import MessageKind, TelemetryBatch, encode
from gateway.field.sample import Quality, Sample
from gateway.uplink.outbox import Outbox
from tests.bench.common import cpu_seconds, emit_json, print_table

SAMPLES_PER_BATCH = 100
TOPIC = "roomwarden/bench-site/bench-gw/telemetry"


def batch(seq: int, now: int) -> TelemetryBatch:
    return TelemetryBatch.from_samples(
        site="bench-site", gateway="bench-gw", seq=seq, produced=now, catalog="0123456789abcdef",
        samples=[Sample(f"dev-{i // 10:02d}.p{i}", (2000 + i + seq % 7) * 0.1,
                        now + i * 1_000_000, Quality.GOOD) for i in range(SAMPLES_PER_BATCH)])


def bench_put(path: Path, seconds: float, encode_in_loop: bool) -> dict[str, float]:
    clock = SystemClock()
    ob = Outbox(path, clock=clock)
    payload = encode(batch(0, clock.now_ns()))
    n = 0
    wall, cpu = time.perf_counter(), cpu_seconds()
    while time.perf_counter() - wall < seconds:
        seq = ob.next_seq()
        data = encode(batch(seq, clock.now_ns())) if encode_in_loop else payload
        ob.put(MessageKind.TELEMETRY, TOPIC, data)
        if ob.flush_due():
            ob.flush()
        n += 1
    ob.flush()
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    ob.close()
    samples = n * SAMPLES_PER_BATCH
    return {"messages": n, "seconds": wall, "messages_per_second": n / wall,
            "samples_per_second": samples / wall,
            "cpu_seconds_per_1000_samples": 1000 * cpu / samples,
            "bytes_per_message": len(payload)}


def bench_alarms(path: Path, count: int) -> dict[str, float]:
    ob = Outbox(path, clock=SystemClock())
    payload = b'{"v":1,"kind":"alarm"}' + b" " * 300
    latencies = []
    for _ in range(count):
        began = time.perf_counter()
        ob.put(MessageKind.ALARM, "roomwarden/bench-site/bench-gw/alarms", payload)
        ob.flush()
        latencies.append(time.perf_counter() - began)
    ob.close()
    latencies.sort()
    return {"events_per_second": count / sum(latencies),
            "median_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)]}


def bench_replay(path: Path) -> dict[str, float]:
    ob = Outbox(path, clock=SystemClock())
    ob.start_session()
    total = ob.depth(MessageKind.TELEMETRY)
    n = 0
    wall, cpu = time.perf_counter(), cpu_seconds()
    while True:
        window = ob.next_batch(100)
        if not window:
            break
        n += len(window)
        ob.ack(m.id for m in window)
        ob.maybe_flush()
    ob.flush()
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    left = ob.depth()
    ob.close()
    return {"messages": n, "stored": total, "left": left, "seconds": wall,
            "messages_per_second": n / wall,
            "samples_per_second": n * SAMPLES_PER_BATCH / wall,
            "cpu_seconds_per_1000_samples": 1000 * cpu / (n * SAMPLES_PER_BATCH)}


def main(seconds: float = 3.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="roomwarden-bench-outbox-") as tmp:
        work = Path(tmp)
        put = bench_put(work / "put.db", seconds, encode_in_loop=True)
        raw = bench_put(work / "raw.db", seconds, encode_in_loop=False)
        alarms = bench_alarms(work / "alarms.db", 200)
        replay = bench_replay(work / "put.db")
        disk = (work / "put.db").stat().st_size
    print_table(f"Outbox put(): telemetry batches of {SAMPLES_PER_BATCH} samples "
                f"({put['bytes_per_message']:.0f} B), WAL + synchronous=FULL, {seconds:g} s", [
        ("encode + put, messages/s", f"{put['messages_per_second']:,.0f}", ""),
        ("encode + put, samples/s", f"{put['samples_per_second']:,.0f}",
         "a typical site makes ~12"),
        ("CPU s per 1,000 samples", f"{put['cpu_seconds_per_1000_samples']:.4f}", ""),
        ("put only, messages/s", f"{raw['messages_per_second']:,.0f}", ""),
        ("put only, samples/s", f"{raw['samples_per_second']:,.0f}", ""),
        ("put only, CPU s per 1,000 samples", f"{raw['cpu_seconds_per_1000_samples']:.4f}", ""),
    ])
    print_table("Outbox alarm events (each committed with fsync at once)", [
        ("events/s", f"{alarms['events_per_second']:,.0f}", ""),
        ("put latency, median", f"{alarms['median_ms']:.2f} ms", ""),
        ("put latency, p99", f"{alarms['p99_ms']:.2f} ms", ""),
    ])
    print_table("Outbox replay: next_batch(100) + ack, unpaced", [
        ("messages/s", f"{replay['messages_per_second']:,.0f}", ""),
        ("samples/s", f"{replay['samples_per_second']:,.0f}", ""),
        ("CPU s per 1,000 samples", f"{replay['cpu_seconds_per_1000_samples']:.4f}", ""),
        ("left after replay", f"{replay['left']:.0f}", "expected 0"),
    ])
    figures = {"put": put, "put_only": raw, "alarms": alarms, "replay": replay,
               "disk_bytes": disk,
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    emit_json("outbox", figures)
    return figures


if __name__ == "__main__":
    main()
