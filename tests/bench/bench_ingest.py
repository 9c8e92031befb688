"""Ingest throughput: a queued backlog of telemetry from a real mosquitto into a real
VictoriaMetrics (InfluxDB v2 write API) through `IngestService`.

The ingest's persistent MQTT 5 session is created first (its client id, clean_start=False, a
session expiry, its own subscriptions — `$share/<group>/roomwarden/+/+/<channel>`), then the
client goes away and a gateway stand-in publishes `BATCHES` telemetry batches of 200 points
(10 gateways, one batch per gateway-second, 5 quantities) at QoS 1 into the queued session.
The catalogs are in each worker's catalog store already (as after an earlier run). Then the
ingest starts and is timed from `start()` to its last acknowledgement: decode, line protocol,
5,000-point writes, acks. Each worker is a process of its own (as deployed: two instances
of one Python process would share one GIL), reporting its own CPU time.

1. One worker. 2. Two workers on one shared subscription (the broker splits the stream): total
and per worker. Afterwards the stored samples are counted in VictoriaMetrics (export API):
the work was really done. Target: ≥ 50,000 points/s per worker.

Every process shares the 2 cores of the bench machine: the broker and the database, which do
real work here too, are reported with their CPU seconds.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import tempfile
import threading
import time
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.contract.wire import Channel as Ch
from gateway.contract.wire import PointCatalog, PointMeta, TelemetryBatch, Topic, encode
from gateway.field.sample import Quality, Sample
from gateway.ingest.catalogs import CatalogStore
from gateway.ingest.service import IngestService, subscriptions
from gateway.ingest.settings import IngestSettings
from tests.bench.common import emit_json, print_table
from tests.bench.services import (
    mosquitto,
    process_cpu_seconds,
    victoria_metrics,
    wait_until,
)

GATEWAYS, POINTS = 10, 200
QUANTITIES = ("temperature", "relative_humidity", "phase_voltage", "active_power",
              "energy_kwh")
GROUP = "bench-ingest"


def catalogs(site: str) -> list[PointCatalog]:
    out = []
    for g in range(GATEWAYS):
        points = {f"dev-{p // 20:02d}.p{p:03d}": PointMeta(
            device=f"dev-{p // 20:02d}", room=f"room-{p // 50}",
            quantity=QUANTITIES[p % len(QUANTITIES)], unit="u") for p in range(POINTS)}
        out.append(PointCatalog.build(site=site, gateway=f"gw-{g:02d}", produced=0,
                                      points=points))
    return out


def backlog(site: str, cats: list[PointCatalog], batches: int) -> list[tuple[str, bytes]]:
    """(topic, payload) of `batches` telemetry batches, round-robin over the gateways."""
    start = (time.time_ns() // 10**9 - 2 * batches) * 10**9
    out = []
    for b in range(batches):
        cat = cats[b % GATEWAYS]
        second = b // GATEWAYS
        ts = start + second * 10**9
        samples = [Sample(point, 20.0 + 0.01 * p + 0.1 * (second % 70), ts + p * 1000,
                          Quality.GOOD) for p, point in enumerate(cat.points)]
        batch = TelemetryBatch.from_samples(site=site, gateway=cat.gateway, seq=second + 1,
                                            produced=ts, samples=samples, catalog=cat.catalog)
        out.append((str(Topic(site, cat.gateway, Ch.TELEMETRY)), encode(batch)))
    return out


def settings(port: int, vm_url: str, workdir: Path, client_id: str) -> dict[str, Any]:
    """Production defaults (MQTT 5, shared group, 5,000-point writes, 1 s flush), files in a
    state directory of the instance's own."""
    return {"mqtt": {"host": "127.0.0.1", "port": port, "protocol": "5",
                     "client_id": client_id, "shared_group": GROUP},
            "influx": {"url": vm_url, "token": "bench", "org": "bench", "bucket": "bench"},
            # a state directory per instance (its catalog store, and the stores kept next to it)
            "dead_letter": str(workdir / client_id / "dead-letter.jsonl"),
            "catalog_store": str(workdir / client_id / "catalogs.sqlite")}


def create_session(raw: dict[str, Any]) -> None:
    """Connect once with the ingest's client id and subscriptions (persistent session), wait
    for the SUBACK and leave: the broker queues everything from now on for this session."""
    s = IngestSettings.model_validate(raw)
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=s.mqtt.client_id,
                         protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, *_a: c.subscribe([(f, 1) for f in subscriptions(s)])
    client.on_subscribe = lambda *_a: subscribed.set()
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = int(s.mqtt.session_expiry)
    client.connect("127.0.0.1", s.mqtt.port, clean_start=False, properties=props)
    client.loop_start()
    try:
        if not subscribed.wait(10):
            raise TimeoutError("ingest session: no SUBACK")
    finally:
        client.disconnect()
        client.loop_stop()


def publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    """QoS 1, every PUBACK awaited: the broker holds all of them for the ingest's session."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-gateways",
                         protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()


def worker(raw: dict[str, Any], ready: Event, go: Event, stop: Event,
           acked: Synchronized[int], result: Any) -> None:
    """One ingest instance in its own process: started on `go`, reports acks as they happen,
    and its CPU seconds, written points and time to its last ack when `stop` is set."""
    logging.basicConfig(level=logging.WARNING)
    service = IngestService(IngestSettings.model_validate(raw))
    ready.set()
    go.wait()
    cpu, began = time.process_time(), time.perf_counter()
    service.start()
    last, last_at = 0, began
    while not stop.is_set():
        n = int(service.status()["acked"])
        if n != last:
            last, last_at = n, time.perf_counter()
            acked.value = n
        time.sleep(0.005)
    cpu = time.process_time() - cpu
    status = service.status()
    service.stop()
    result.put({"client_id": raw["mqtt"]["client_id"], "cpu_seconds": cpu,
                "seconds": last_at - began, "acked": int(status["acked"]),
                "written_points": int(status["written_points"]),
                "dead_lettered": int(status["dead_lettered"]),
                "write_retries": int(status["write_retries"])})


def run(workers: int, broker_port: int, vm: Any, broker_pid: int, workdir: Path,
        batches: int) -> dict[str, Any]:
    site = f"bench-{workers}w"
    cats = catalogs(site)
    raws = [settings(broker_port, vm.url, workdir, f"{site}-ingest-{i}")
            for i in range(workers)]
    for raw in raws:
        store = CatalogStore(Path(raw["catalog_store"]))
        for cat in cats:
            store.add(cat)
        store.close()
        create_session(raw)
    publish(broker_port, backlog(site, cats, batches))

    ctx = mp.get_context("spawn")
    go, stop = ctx.Event(), ctx.Event()
    result = ctx.Queue()
    procs, readies, counters = [], [], []
    for raw in raws:
        ready, acked = ctx.Event(), ctx.Value("q", 0)
        p = ctx.Process(target=worker, args=(raw, ready, go, stop, acked, result),
                        name=raw["mqtt"]["client_id"])
        p.start()
        procs.append(p)
        readies.append(ready)
        counters.append(acked)
    try:
        for ready in readies:
            if not ready.wait(60):
                raise TimeoutError("ingest worker did not start")
        broker_cpu, vm_cpu = process_cpu_seconds(broker_pid), process_cpu_seconds(vm.process.pid)
        began = time.perf_counter()
        go.set()
        wait_until(lambda: sum(int(c.value) for c in counters) >= batches, 120,
                   "every batch acknowledged")
        seconds = time.perf_counter() - began
        broker_cpu = process_cpu_seconds(broker_pid) - broker_cpu
        vm_cpu = process_cpu_seconds(vm.process.pid) - vm_cpu
        stop.set()
        results = sorted((result.get(timeout=30) for _ in procs),
                         key=lambda r: str(r["client_id"]))
    finally:
        stop.set()
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.terminate()
    points = batches * POINTS
    stored = vm.count_samples(f'{{site="{site}"}}')
    for r in results:
        r["points_per_second"] = r["written_points"] / r["seconds"] if r["seconds"] else 0.0
        r["points_per_cpu_second"] = (r["written_points"] / r["cpu_seconds"]
                                      if r["cpu_seconds"] else 0.0)
    return {"workers": workers, "batches": batches, "points": points, "seconds": seconds,
            "points_per_second": points / seconds, "stored_samples": stored,
            "dead_lettered": sum(r["dead_lettered"] for r in results),
            "broker_cpu_seconds": broker_cpu, "db_cpu_seconds": vm_cpu,
            "per_worker": results}


def main(batches: int = 2000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="roomwarden-bench-ingest-") as tmp:
        work = Path(tmp)
        with victoria_metrics(work) as vm:
            # a broker per run: an offline persistent session stays a member of its shared
            # group and would be handed its share of the next run's messages
            with mosquitto(work / "broker-1") as broker:
                one = run(1, broker.port, vm, broker.process.pid, work, batches)
            with mosquitto(work / "broker-2") as broker:
                two = run(2, broker.port, vm, broker.process.pid, work, batches)
    rows: list[tuple[str, str, str]] = []
    for fig in (one, two):
        n = fig["workers"]
        label = "1 worker" if n == 1 else f"{n} workers, shared subscription"
        rows.append((f"{label}: points/s, total", f"{fig['points_per_second']:,.0f}",
                     f"{fig['points']:,} points in {fig['seconds']:.1f} s"))
        for i, r in enumerate(fig["per_worker"]):
            rows.append((f"  worker {i + 1}: points/s", f"{r['points_per_second']:,.0f}",
                         "target >= 50,000 per worker" if i == 0 else
                         f"{r['written_points']:,} points"))
            rows.append((f"  worker {i + 1}: points per CPU second",
                         f"{r['points_per_cpu_second']:,.0f}",
                         f"{r['cpu_seconds']:.1f} CPU s"))
        rows.append(("  broker / database CPU s",
                     f"{fig['broker_cpu_seconds']:.1f} / {fig['db_cpu_seconds']:.1f}", ""))
        rows.append(("  samples stored in VictoriaMetrics", f"{fig['stored_samples']:,}",
                     f"expected {fig['points']:,}, dead-lettered {fig['dead_lettered']}"))
    print_table(f"Ingest: {batches:,} queued telemetry batches × {POINTS} points "
                f"({GATEWAYS} gateways) → IngestService → VictoriaMetrics", rows)
    figures = {"one_worker": one, "two_workers": two}
    emit_json("ingest", figures)
    return figures


if __name__ == "__main__":
    main()
