"""Fleet scale: N gateways' real uplinks → Mosquitto → one or two ingest workers → VictoriaMetrics.

One process runs N `gateway.uplink.publisher.Uplink` instances (the real publisher: exception
filter, durable SQLite outbox with its committer thread, MQTT 5 session, end-to-end delivery),
each with its own client id, state directory and outbox, on one event loop. Every gateway
reports P points every 10 s (its ticks spread over the 10 s, values always changing, so every
point passes the exception filter). The ingest workers are processes of their own (one
shared-subscription group), writing VictoriaMetrics through the v2 API with the production
defaults (5,000-point writes, 1 s flush).

Site-to-database latency is measured end to end on the real acknowledgement path: a batch's
latency is from the moment its samples were produced until the ingest's `DeliveryAck` for that
gateway covers it — the ingest publishes it only after the database accepted the write — as
seen by a subscriber in the fleet process (one broker hop more than "stored"). Each gateway
feeds exactly one telemetry batch per tick, so its k-th batch has delivery sequence k (checked:
every gateway's final watermark equals its tick count).

For each (N, workers) the run reports p50/p99/max latency, points/s, and each component's CPU
(fleet process, broker, each worker, database) as a share of one core; the largest N whose p99
stays ≤ 2 s is the answer, and the component nearest a full core (or the machine's two cores
in total) is the limit. `python -m tests.bench.bench_fleet [N ...]`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.clock import SystemClock
from gateway.config.section import validator
from gateway.contract.wire import DeliveryAck, PointMeta, decode
from gateway.field.sample import Quality, Sample
from gateway.ingest.service import IngestService
from gateway.ingest.settings import IngestSettings
from gateway.uplink.publisher import Uplink
from gateway.uplink.settings import UplinkSettings
from tests.bench.common import emit_json
from tests.bench.services import mosquitto, process_cpu_seconds, victoria_metrics, wait_until

PERIOD = 10.0
POINTS = 100
WARMUP, MEASURE = 10.0, 30.0
FLUSH = "250ms"
"""The ingest's flush_interval here (default 1 s: a lone batch waits that long for company,
which alone would put a quiet fleet's p99 near 2 s; see docs/scaling.md)."""
P99_TARGET = 2.0
SITE = "bench-fleet"


def catalog(points: int) -> dict[str, PointMeta]:
    return {f"dev-{p // 20:02d}.p{p:03d}": PointMeta(
        device=f"dev-{p // 20:02d}", room=f"room-{p // 50}", quantity="temperature", unit="°C")
        for p in range(points)}


def worker(raw: dict[str, Any], ready: Event, stop: Event, result: Any) -> None:
    """One ingest instance in its own process, until `stop`; reports its CPU seconds."""
    logging.basicConfig(level=logging.WARNING)
    service = IngestService(IngestSettings.model_validate(raw))
    cpu = time.process_time()
    service.start()
    wait_until(lambda: bool(service.status()["connected"]), 30, "ingest connected")
    ready.set()
    pending = 0
    while not stop.wait(0.2):
        pending = max(pending, int(service.status()["pending"]))
    cpu = time.process_time() - cpu
    status = service.status()
    service.stop()
    result.put({"cpu_seconds": cpu, "written_points": int(status["written_points"]),
                "max_pending": pending,
                "dead_lettered": int(status["dead_lettered"])})


class Acks:
    """Subscribes to every gateway's `ack` topic: per gateway, (time, upto) as they come."""

    def __init__(self, port: int) -> None:
        self.seen: dict[str, list[tuple[float, int]]] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-acks",
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_a: c.subscribe(f"roomwarden/{SITE}/+/ack", 0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        ack = decode(msg.topic, bytes(msg.payload))
        if isinstance(ack, DeliveryAck):
            with self._lock:
                self.seen.setdefault(ack.gateway, []).append((now, ack.upto))

    def first_covering(self, gateway: str, dseq: int) -> float | None:
        with self._lock:
            return next((t for t, upto in self.seen.get(gateway, []) if upto >= dseq), None)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


SHARD = 80
"""Gateways per fleet process: paho's network loop uses select(), which cannot watch a file
descriptor above 1,023, and each uplink holds about nine (socket, wake-up pair, SQLite files);
beyond ~110 uplinks in one process the newest never see their CONNACK. A real gateway runs one
uplink in its own process, so sharding changes nothing the bench measures."""


async def _shard(first: int, n: int, total: int, port: int, workdir: Path, ready: Event,
                 start_at: Any, done: Event) -> dict[str, Any]:
    """Gateways first … first+n-1 of a fleet of `total`: connect, then from `start_at`
    (monotonic, shared by all shards) feed for WARMUP + MEASURE s; the production times."""
    clock, points = SystemClock(), catalog(POINTS)
    names = list(points)
    uplinks = []
    for i in range(first, first + n):
        settings = validator(UplinkSettings).validate_python({
            "broker": "127.0.0.1", "port": port, "protocol": "5",
            "client_id": f"bench-gw-{i:04d}", "delivery": "ingest",
            "exception": {"deadband": 0.0, "max_interval": "5m"}, "state_interval": "5m"})
        uplinks.append(Uplink(settings, SITE, f"gw-{i:04d}", workdir / f"gw-{i:04d}", clock,
                              points))
    tasks = [asyncio.create_task(u.run()) for u in uplinks]
    produced: dict[str, list[float]] = {u.gateway_id: [] for u in uplinks}
    cpu = time.process_time()
    waiting = [0]

    async def watch() -> None:  # entries not yet acknowledged, summed over the shard
        while True:
            await asyncio.sleep(1.0)
            waiting[0] = max(waiting[0], sum(u.status().outbox.depth for u in uplinks))

    tasks.append(asyncio.create_task(watch()))
    try:
        began = time.monotonic()
        while not all(u.status().connected for u in uplinks):
            assert time.monotonic() - began < 90, "uplinks did not connect"
            await asyncio.sleep(0.1)
        ready.set()
        while start_at.value == 0.0:  # noqa: ASYNC110 (set by another process)
            await asyncio.sleep(0.05)
        start = float(start_at.value)
        end = start + WARMUP + MEASURE
        plan = sorted(((first + j) / total + k, j) for j in range(n)
                      for k in range(int((WARMUP + MEASURE) / PERIOD) + 1))
        for offset, j in plan:  # gateway i ticks at start + (i/total + k)·PERIOD
            at = start + offset * PERIOD
            if at >= end:
                continue
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            tick = len(produced[uplinks[j].gateway_id])
            uplinks[j].on_samples([Sample(p, 20.0 + 0.01 * tick + q * 1e-4, clock.now_ns(),
                                          Quality.GOOD) for q, p in enumerate(names)])
            produced[uplinks[j].gateway_id].append(time.monotonic())
        while not done.is_set():  # noqa: ASYNC110 (the main process decides)
            await asyncio.sleep(0.2)
    finally:
        for u in uplinks:
            await u.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"produced": produced, "cpu_seconds": time.process_time() - cpu,
            "max_outbox": waiting[0]}


def shard(first: int, n: int, total: int, port: int, workdir: str, ready: Event,
          start_at: Any, done: Event, result: Any) -> None:
    logging.basicConfig(level=logging.ERROR)
    result.put(asyncio.run(_shard(first, n, total, port, Path(workdir), ready, start_at,
                                  done)))


def _fleet(ctx: Any, n: int, port: int, workdir: Path, acks: Acks) -> dict[str, Any]:
    """The fleet in shards of SHARD gateways; latencies of the measured ticks."""
    start_at, done, result = ctx.Value("d", 0.0), ctx.Event(), ctx.Queue()
    procs, readies = [], []
    for first in range(0, n, SHARD):
        ready = ctx.Event()
        proc = ctx.Process(target=shard, args=(first, min(SHARD, n - first), n, port,
                                               str(workdir), ready, start_at, done, result))
        proc.start()
        procs.append(proc)
        readies.append(ready)
    try:
        for ready in readies:
            assert ready.wait(120), "a fleet shard did not connect"
        start = time.monotonic() + 1.0
        start_at.value = start
        time.sleep(WARMUP + MEASURE + 1.0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(
                acks.first_covering(f"gw-{i:04d}", int((WARMUP + MEASURE) / PERIOD))
                for i in range(n)):
            time.sleep(0.2)
    finally:
        done.set()
    outs = [result.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
    latencies, missing = [], 0
    for out in outs:
        for gateway, times in out["produced"].items():
            for dseq, t in enumerate(times, start=1):
                if t < start + WARMUP:
                    continue
                acked = acks.first_covering(gateway, dseq)
                if acked is None:
                    missing += 1
                else:
                    latencies.append(acked - t)
    return {"latencies": sorted(latencies), "missing": missing,
            "batches": sum(len(t) for o in outs for t in o["produced"].values()),
            "cpu_seconds": sum(o["cpu_seconds"] for o in outs),
            "max_outbox_entries": sum(o["max_outbox"] for o in outs)}


def _machine_busy() -> float:
    """CPU seconds the whole machine spent busy so far (/proc/stat: all but idle and iowait),
    to tell this pipeline's share from other work on the machine."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def run(n: int, workers: int, workdir: Path) -> dict[str, Any]:
    with mosquitto(workdir / "mq") as mq, victoria_metrics(workdir / "vm") as vm:
        ctx = mp.get_context("spawn")
        stop, result = ctx.Event(), ctx.Queue()
        procs, readies = [], []
        for w in range(workers):
            raw = {"mqtt": {"host": "127.0.0.1", "port": mq.port, "protocol": "5",
                            "client_id": f"fleet-ingest-{w}", "shared_group": "fleet"},
                   "influx": {"url": vm.url, "token": "b", "org": "b", "bucket": "b",
                              "flush_interval": FLUSH},
                   "dead_letter": str(workdir / f"w{w}" / "dead.jsonl"),
                   "catalog_store": str(workdir / f"w{w}" / "catalogs.sqlite"),
                   # one group on one host shares its watermarks (else each instance's
                   # watermark stops at the other's numbers until the gateway re-sends)
                   "ack_store": str(workdir / "acks.sqlite")}
            ready = ctx.Event()
            proc = ctx.Process(target=worker, args=(raw, ready, stop, result))
            proc.start()
            procs.append(proc)
            readies.append(ready)
        acks = Acks(mq.port)
        try:
            for ready in readies:
                assert ready.wait(60), "ingest worker did not start"
            machine0 = _machine_busy()
            cpu0 = {"broker": process_cpu_seconds(mq.process.pid),
                    "database": process_cpu_seconds(vm.process.pid)}
            wall = time.monotonic()
            fleet = _fleet(ctx, n, mq.port, workdir / "gateways", acks)
            wall = time.monotonic() - wall
            machine = (_machine_busy() - machine0) / wall
            cpu = {"fleet": fleet["cpu_seconds"],
                   "broker": process_cpu_seconds(mq.process.pid) - cpu0["broker"],
                   "database": process_cpu_seconds(vm.process.pid) - cpu0["database"]}
        finally:
            stop.set()
            acks.close()
        outs = [result.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(30)
    lat = fleet["latencies"]
    shares = {k: v / wall for k, v in cpu.items()}
    for w, out in enumerate(outs):
        shares[f"ingest-{w}"] = out["cpu_seconds"] / wall
    busiest = max(shares, key=lambda k: shares[k])
    return {"gateways": n, "points_per_gateway": POINTS, "workers": workers,
            "load_average_1m": round(os.getloadavg()[0], 1),
            "points_per_s": n * POINTS / PERIOD, "batches": fleet["batches"],
            "measured": len(lat), "missing": fleet["missing"],
            "p50_s": round(quantile(lat, 0.5), 3), "p99_s": round(quantile(lat, 0.99), 3),
            "max_s": round(lat[-1], 3) if lat else None,
            "cpu_cores": {k: round(v, 2) for k, v in shares.items()},
            "cpu_total_cores": round(sum(shares.values()), 2), "busiest": busiest,
            "machine_busy_cores": round(machine, 2),
            "max_outbox_entries": fleet["max_outbox_entries"],
            "max_ingest_pending": max(o["max_pending"] for o in outs),
            "dead_lettered": sum(o["dead_lettered"] for o in outs),
            "ingest_cpu_ms_per_1000_points": round(1e6 * sum(o["cpu_seconds"] for o in outs)
                                                   / max(1, sum(o["written_points"] for o in outs)),
                                                   1)}


SIZES = (200, 400, 800, 1200, 1600, 2400)


def main(sizes: tuple[int, ...] = SIZES, workers: tuple[int, ...] = (1, 2)) -> None:
    logging.basicConfig(level=logging.ERROR)
    rows = []
    for w in workers:
        for n in sizes:
            with tempfile.TemporaryDirectory(prefix="rw-fleet-") as tmp:
                r = run(n, w, Path(tmp))
            rows.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
            if r["p99_s"] != r["p99_s"] or r["p99_s"] > P99_TARGET * 2 or r["missing"]:
                break  # well past the target: larger fleets only take longer to fail
    print("\n== fleet: N gateways x 100 points / 10 s -> mosquitto -> ingest workers -> "
          "VictoriaMetrics (site -> database-acknowledged latency)")
    print(f"{'workers':>7} {'gateways':>8} {'points/s':>9} {'p50 s':>6} {'p99 s':>6} "
          f"{'max s':>6} {'missing':>7}  CPU cores (busiest first)")
    for r in rows:
        cores = sorted(r["cpu_cores"].items(), key=lambda kv: -kv[1])
        print(f"{r['workers']:>7} {r['gateways']:>8} {r['points_per_s']:>9,.0f} "
              f"{r['p50_s']:>6} {r['p99_s']:>6} {r['max_s']!s:>6} {r['missing']:>7}  "
              + ", ".join(f"{k} {v:.2f}" for k, v in cores))
    best = {w: max((r["gateways"] for r in rows if r["workers"] == w
                    and r["p99_s"] <= P99_TARGET and not r["missing"]), default=0)
            for w in workers}
    emit_json("fleet", {"runs": rows, "largest_fleet_p99_le_2s": best,
                        "cpus": os.cpu_count()})


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:]) or SIZES)
