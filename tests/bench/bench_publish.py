"""Gateway publish path: samples → `Uplink.on_samples` → exception filter → committer →
SQLite outbox (WAL, synchronous=FULL, production commit interval) → QoS-1 publish to a real
mosquitto on a free loopback port → PUBACK → outbox ack.

A site of 50 devices × 40 points (2,000 points); every device poll is one `on_samples` batch,
as the bus loops deliver them, and every value changes each cycle (so everything passes the
filter and is published; the polls of one commit interval share a message, up to 4,096 rows).
Cycles are prepared ahead (acquisition is not measured here) and fed as fast as the path takes
them, with at most `MAX_UNACKED` messages buffered or not yet acknowledged (the daemon's
bounded memory queue, not a flood of the event loop). Timed from the first
batch to the last PUBACK; CPU is `time.process_time()` of this process (every thread: event
loop, committer, paho's network thread); mosquitto runs in its own process. Target: ≥ 10,000
points per CPU second (one core).

Two runs: `puback` (an entry leaves the outbox on the broker's PUBACK) and `ingest` (the
end-to-end acknowledgement: a real `roomwarden ingest` process writes into a real
VictoriaMetrics and publishes its watermark; an entry leaves when the watermark covers it —
timed from the first batch to the last entry covered). The ingest and the database run in
their own processes; their CPU is not the gateway's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.clock import SystemClock
from gateway.config.section import validator
from gateway.contract.wire import PointMeta
from gateway.field.sample import Quality, Sample
from gateway.uplink.publisher import Uplink
from gateway.uplink.settings import UplinkSettings
from tests.bench.common import emit_json, print_table
from tests.bench.services import mosquitto, stop_process, victoria_metrics, wait_until

DEVICES, POINTS_PER_DEVICE = 50, 40
QUANTITIES = ("temperature", "relative_humidity", "phase_voltage", "active_power",
              "energy_kwh")
MAX_UNACKED = 50
"""Messages buffered or in the outbox (not yet acknowledged): the feeder waits above this."""


def catalog_points() -> dict[str, PointMeta]:
    return {f"dev-{d:02d}.p{p:02d}": PointMeta(device=f"dev-{d:02d}", room=f"room-{d % 5}",
                                               quantity=QUANTITIES[p % len(QUANTITIES)],
                                               unit="V")
            for d in range(DEVICES) for p in range(POINTS_PER_DEVICE)}


def cycles(count: int, start_ns: int) -> list[list[list[Sample]]]:
    """`count` poll cycles, each a list of per-device batches; every value moves each cycle."""
    out = []
    for c in range(count):
        ts = start_ns + c * 1_000_000_000
        out.append([[Sample(f"dev-{d:02d}.p{p:02d}", 200.0 + p + 0.37 * c + 0.01 * d,
                            ts + d * 1_000_000, Quality.GOOD)
                     for p in range(POINTS_PER_DEVICE)] for d in range(DEVICES)])
    return out


async def until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


@contextlib.contextmanager
def ingest_process(broker_port: int, vm_url: str, workdir: Path) -> Iterator[None]:
    """`roomwarden ingest` in its own process, subscribed before the gateway publishes."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "central.yaml"
    config.write_text(
        f"mqtt: {{host: 127.0.0.1, port: {broker_port}, client_id: bench-ingest, "
        f"shared_group: null}}\n"
        f"influx: {{url: '{vm_url}', token: t, org: o, bucket: b, flush_interval: 200ms}}\n"
        f"catalog_store: {workdir / 'catalogs.sqlite'}\n"
        f"dead_letter: {workdir / 'dead.jsonl'}\n"
        f"http: {{bind: 127.0.0.1, port: 0}}\n")
    log = (workdir / "ingest.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "ingest", "--config",
                             str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: b"event=mqtt_subscribed" in (workdir / "ingest.log").read_bytes(),
                   30, "the ingest's SUBACK", proc)
        yield
    finally:
        stop_process(proc)
        log.close()


async def run(port: int, state_dir: Path, n_cycles: int, **overrides: Any) -> dict[str, Any]:
    settings = validator(UplinkSettings).validate_python({"broker": "127.0.0.1", "port": port,
                                             "delivery": "puback", **overrides})
    clock = SystemClock()
    uplink = Uplink(settings, "bench-site", "bench-gw", state_dir, clock, catalog_points())
    work = cycles(n_cycles, clock.now_ns())
    task = asyncio.create_task(uplink.run())
    try:
        await until(lambda: uplink.status().connected and uplink.status().published >= 2,
                    15, "uplink connected (birth and catalog acknowledged)")
        base = uplink.status().published
        fed_polls = fed_points = 0

        def waiting() -> int:
            status = uplink.status()
            return status.queued + status.outbox.depth

        wall, cpu = time.perf_counter(), time.process_time()
        for cycle in work:
            for batch in cycle:
                uplink.on_samples(batch)
                fed_polls += 1
                fed_points += len(batch)
            await asyncio.sleep(0)
            await until(lambda: waiting() <= MAX_UNACKED, 60, "the broker acknowledging")
        # every batch acknowledged (`ingest`: covered by the ingest's watermark) and removed
        # from the outbox by the commit after (≤ commit_interval)
        await until(lambda: waiting() == 0, 120, "every batch delivered")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        fed_messages = uplink.status().published - base
        passed, seen = uplink.filter.passed, uplink.filter.seen
    finally:
        await uplink.close()
        task.cancel()
    return {"delivery": settings.delivery, "resent": uplink.status().resent,
            "points": fed_points, "polls": fed_polls, "messages": fed_messages,
            "passed_filter": passed,
            "seen_by_filter": seen, "seconds": wall, "cpu_seconds": cpu,
            "points_per_second": fed_points / wall,
            "points_per_cpu_second": fed_points / cpu,
            "cpu_seconds_per_1000_points": 1000 * cpu / fed_points,
            "messages_per_second": fed_messages / wall,
            "cpu_share": cpu / wall}


def main(n_cycles: int = 100) -> dict[str, Any]:
    logging.getLogger("roomwarden").setLevel(logging.WARNING)
    out: dict[str, Any] = {}
    for delivery in ("puback", "ingest"):
        with tempfile.TemporaryDirectory(prefix="roomwarden-bench-publish-") as tmp:
            work = Path(tmp)
            with mosquitto(work / "broker") as broker:
                if delivery == "puback":
                    figures = asyncio.run(run(broker.port, work / "state", n_cycles))
                else:
                    with victoria_metrics(work / "vm") as vm, \
                            ingest_process(broker.port, vm.url, work / "ingest"):
                        figures = asyncio.run(run(broker.port, work / "state", n_cycles,
                                                  delivery="ingest"))
        out[delivery] = report(figures, n_cycles)
    return out


def report(figures: dict[str, Any], n_cycles: int) -> dict[str, Any]:
    figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    until_what = ("the ingest's watermark (end-to-end)" if figures["delivery"] == "ingest"
                  else "PUBACK")
    print_table(f"Uplink publish path, delivery={figures['delivery']}: {DEVICES} devices × "
                f"{POINTS_PER_DEVICE} points, {n_cycles} cycles, every value changing; filter "
                f"→ outbox (WAL, FULL) → QoS 1 → {until_what}", [
        ("points per second (to the last entry delivered)",
         f"{figures['points_per_second']:,.0f}", f"re-sent {figures['resent']}"),
        ("points per CPU second", f"{figures['points_per_cpu_second']:,.0f}",
         "target >= 10,000 per core"),
        ("CPU s per 1,000 points", f"{figures['cpu_seconds_per_1000_points']:.4f}", ""),
        ("messages per second", f"{figures['messages_per_second']:,.0f}",
         f"{figures['points'] / max(1, figures['messages']):,.0f} points each"),
        ("CPU share of one core", f"{figures['cpu_share']:.0%}", ""),
        ("points acknowledged", f"{figures['points']:,.0f}",
         f"filter passed {figures['passed_filter']:,.0f}"),
        ("peak RSS of the process", f"{figures['peak_rss_mib']:.1f} MiB", ""),
    ])
    emit_json(f"uplink_publish_{figures['delivery']}", figures)
    return figures


if __name__ == "__main__":
    main()
