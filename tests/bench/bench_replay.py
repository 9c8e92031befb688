"""Outbox replay after a (re)connect: a committed backlog published to a real mosquitto.

The backlog is a 2-hour outage of a 200-point site polled every second with every value
changing (7,200 telemetry batches of 200 points, encoded with the contract and committed into
the outbox file the uplink opens, as an outage leaves it). Then an `Uplink` connects: birth and
catalog go out live, the backlog through `replay.take` and the `ReplayPacer`, QoS 1, each
message acknowledged in the outbox on its PUBACK (default `max_inflight` 20).

1. Pacer limits raised to the settings' maxima (100,000 messages/s, 1 GB/s): what the path
   itself sustains — timed from the start of the uplink to the last PUBACK of the backlog.
2. The default pacer (20 messages/s, 64 KiB/s of payload): what a site sees; its rate over a
   steady window (after the first second's burst), and the time a 30-minute and the whole
   backlog take at it.
3. As 1, with the end-to-end acknowledgement: a real `roomwarden ingest` process writes the
   backlog into a real VictoriaMetrics and publishes its watermark; timed to the last batch
   the watermark covers (the entries leave the outbox only then).

1 and 2 run with `delivery: puback` (an entry leaves on its PUBACK), as before the
end-to-end acknowledgement existed; the backlog carries delivery numbers either way.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, TypedDict

from gateway.clock import SystemClock
from gateway.config.section import validator
from gateway.contract.wire import MessageKind, PointMeta, TelemetryBatch, encode
from gateway.field.sample import Quality, Sample
from gateway.uplink.outbox import Outbox
from gateway.uplink.publisher import Uplink
from gateway.uplink.settings import UplinkSettings
from tests.bench.bench_publish import ingest_process
from tests.bench.common import emit_json, print_table
from tests.bench.services import mosquitto, victoria_metrics

SITE, GATEWAY = "bench-site", "bench-gw"
POINTS = 200
TOPIC = f"roomwarden/{SITE}/{GATEWAY}/telemetry"
OUTBOX = "uplink/outbox.sqlite"  # the settings' default path under the state directory


class Replayed(TypedDict):
    """A whole backlog replayed (`replay_all`): the delivery mode and the figures."""

    delivery: str
    resent: int
    messages: int
    seconds: float
    cpu_seconds: float
    messages_per_second: float
    points_per_second: float
    cpu_seconds_per_1000_points: float


def catalog_points() -> dict[str, PointMeta]:
    return {f"dev-{p // 20:02d}.p{p:03d}": PointMeta(device=f"dev-{p // 20:02d}", room="room",
                                                     quantity="temperature", unit="°C")
            for p in range(POINTS)}


def build_backlog(path: Path, batches: int) -> dict[str, float]:
    """`batches` committed telemetry batches of POINTS points, one per second of the outage."""
    clock = SystemClock()
    names = list(catalog_points())
    start = clock.now_ns() - batches * 1_000_000_000
    total_bytes = 0
    with Outbox(path, clock=clock) as ob:
        stream = ob.stream
        for b in range(batches):
            ts = start + b * 1_000_000_000
            samples = [Sample(name, 20.0 + 0.01 * p + 0.1 * (b % 50), ts + p * 10_000,
                              Quality.GOOD) for p, name in enumerate(names)]
            seq = ob.next_seq("telemetry")
            dseq = ob.next_seq("delivery")
            payload = encode(TelemetryBatch.from_samples(
                site=SITE, gateway=GATEWAY, seq=seq, produced=ts, samples=samples
            ).model_copy(update={"stream": stream, "dseq": dseq}))
            total_bytes += len(payload)
            ob.put(MessageKind.TELEMETRY, TOPIC, payload, created_ns=ts, dseq=dseq)
            if ob.flush_due():
                ob.flush()
    return {"messages": batches, "points": batches * POINTS, "payload_bytes": total_bytes}


async def until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


def make_uplink(port: int, state_dir: Path, replay: dict[str, float],
                delivery: str = "puback") -> Uplink:
    settings = validator(UplinkSettings).validate_python({"broker": "127.0.0.1", "port": port,
                                             "replay": replay, "delivery": delivery})
    return Uplink(settings, SITE, GATEWAY, state_dir, SystemClock(), catalog_points())


async def replay_all(port: int, state_dir: Path, backlog: int,
                     delivery: str = "puback") -> Replayed:
    """Raised pacer limits: time from start to the backlog's last PUBACK (`puback`) or to the
    last batch covered by the ingest's watermark (`ingest`)."""
    uplink = make_uplink(port, state_dir, {"messages_per_s": 100_000, "bytes_per_s": 1e9},
                         delivery)
    births = 2  # the online state and the catalog, live, before any backlog
    wall, cpu = time.perf_counter(), time.process_time()
    task = asyncio.create_task(uplink.run())
    try:
        await until(lambda: uplink.status().published >= backlog + births, 120,
                    "backlog replayed")
        if delivery == "ingest":
            await until(lambda: uplink.status().covered >= backlog, 300, "backlog covered")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        await until(lambda: uplink.status().outbox.depth == 0, 10, "outbox empty")
    finally:
        await uplink.close()
        task.cancel()
    return {"delivery": delivery, "resent": uplink.status().resent,
            "messages": backlog, "seconds": wall, "cpu_seconds": cpu,
            "messages_per_second": backlog / wall,
            "points_per_second": backlog * POINTS / wall,
            "cpu_seconds_per_1000_points": 1000 * cpu / (backlog * POINTS)}


async def replay_default(port: int, state_dir: Path, backlog: int,
                         window: float) -> dict[str, float]:
    """Default pacer: rate over `window` seconds, after the first second's burst."""
    uplink = make_uplink(port, state_dir, {})
    task = asyncio.create_task(uplink.run())
    try:
        await until(lambda: uplink.status().published >= 2, 15, "connected")
        await asyncio.sleep(1.5)  # the bucket starts full: skip its one-second burst
        first, began = uplink.status().published, time.perf_counter()
        await asyncio.sleep(window)
        sent, seconds = uplink.status().published - first, time.perf_counter() - began
    finally:
        await uplink.close()
        task.cancel()
    rate = sent / seconds
    return {"messages": sent, "seconds": seconds, "messages_per_second": rate,
            "points_per_second": rate * POINTS,
            "messages_per_s_limit": uplink.pacer.messages_per_s,
            "bytes_per_s_limit": uplink.pacer.bytes_per_s,
            "backlog_minutes_at_this_rate": backlog / rate / 60 if rate else float("inf"),
            "half_hour_minutes_at_this_rate": 1800 / rate / 60 if rate else float("inf")}


def main(backlog: int = 7200, window: float = 10.0) -> dict[str, Any]:
    logging.getLogger("roomwarden").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="roomwarden-bench-replay-") as tmp:
        work = Path(tmp)
        built = build_backlog(work / "backlog.sqlite", backlog)
        for name in ("fast", "paced", "acked"):
            (work / name / OUTBOX).parent.mkdir(parents=True)
            shutil.copy(work / "backlog.sqlite", work / name / OUTBOX)
        with mosquitto(work / "broker") as broker:
            fast = asyncio.run(replay_all(broker.port, work / "fast", backlog))
            paced = asyncio.run(replay_default(broker.port, work / "paced", backlog, window))
            with victoria_metrics(work / "vm") as vm, \
                    ingest_process(broker.port, vm.url, work / "ingest"):
                acked = asyncio.run(replay_all(broker.port, work / "acked", backlog, "ingest"))
    per_message = built["payload_bytes"] / backlog
    print_table(f"Outbox replay: backlog of {backlog:,} batches × {POINTS} points "
                f"({per_message / 1024:.1f} KiB each: {backlog / 3600:g} h of a {POINTS}-point "
                f"site at 1 s), QoS 1, 20 in flight", [
        ("pacer raised: messages/s", f"{fast['messages_per_second']:,.0f}", ""),
        ("pacer raised: points/s", f"{fast['points_per_second']:,.0f}", ""),
        ("pacer raised: whole backlog", f"{fast['seconds']:.1f} s",
         f"30 min of backlog: {fast['seconds'] * 1800 / backlog:.1f} s"),
        ("pacer raised: CPU s per 1,000 points", f"{fast['cpu_seconds_per_1000_points']:.4f}",
         ""),
        ("end-to-end ack: messages/s (to the last covered)",
         f"{acked['messages_per_second']:,.0f}",
         f"ingest → VictoriaMetrics → watermark; re-sent {acked['resent']}"),
        ("end-to-end ack: points/s", f"{acked['points_per_second']:,.0f}", ""),
        ("end-to-end ack: CPU s per 1,000 points (gateway)",
         f"{acked['cpu_seconds_per_1000_points']:.4f}", ""),
        ("default pacer: messages/s", f"{paced['messages_per_second']:,.1f}",
         f"limits {paced['messages_per_s_limit']:g} msg/s, "
         f"{paced['bytes_per_s_limit'] / 1024:g} KiB/s"),
        ("default pacer: points/s", f"{paced['points_per_second']:,.0f}", "what a site sees"),
        ("default pacer: 30 min of backlog",
         f"{paced['half_hour_minutes_at_this_rate']:.1f} min",
         f"whole backlog {paced['backlog_minutes_at_this_rate']:.1f} min (extrapolated)"),
    ])
    figures = {"backlog": built, "raised": fast, "default": paced, "acked": acked}
    emit_json("uplink_replay", figures)
    return figures


if __name__ == "__main__":
    main()
