"""The real ingest (behind a real Mosquitto, writing to VictoriaMetrics) with small incident
budgets — `max_bytes` 2 MiB, `max_incidents` 10 — and two gateways: gw-bad's first chunks of
records that never complete (3 MiB) and its 30 small records push out nothing of gw-good's;
gw-good's next record is stored, nothing is dead-lettered, and every delivery number of both
gateways counts towards their acknowledgement watermarks.

The central audit, before the budgets were shared out per gateway: gw-bad's waiting chunks
pruned gw-good's complete record (`incident_pruned … reason=disk_budget`) and gw-good's next
record was dead-lettered as "store is full" — acknowledged, so the gateway let go of it, and
the dead-letter log keeps 1 KiB of a chunk: the record was lost."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import yaml

from gateway.contract import wire as c
from gateway.ingest.incidents import CentralIncidents
from gateway.ingest.settings import load_settings
from tests.fixtures.services import Broker, Subscriber, Victoria, wait_for
from tests.ingest.test_incident_shares import MiB, first_chunk, held, ident, record, used
from tests.ingest.test_incident_store import SITE, chunks_of
from tests.ingest.test_service import Gateway, make_settings, subscribed

STREAMS = {"gw-good": 501, "gw-bad": 502}


def test_one_gateway_pushes_out_nothing_of_anothers(tmp_path: Path, broker: Broker,
                                                    victoria: Victoria) -> None:
    settings = make_settings(tmp_path, broker, victoria, incidents={
        "max_bytes": 2 * MiB, "max_incidents": 10})
    gateway = Gateway(broker)
    acks = Subscriber(broker.port, f"roomwarden/{SITE}/+/ack")
    numbers = {gw: itertools.count(1) for gw in STREAMS}
    sent = dict.fromkeys(STREAMS, 0)

    def send(chunk: c.IncidentChunk) -> None:
        gw = chunk.gateway
        sent[gw] = next(numbers[gw])
        gateway.send(chunk.model_copy(update={"stream": STREAMS[gw], "dseq": sent[gw]}))

    def send_record(gw: str, n: int, noise: int = 0) -> None:
        incident_id, data = record(gw, n, noise)
        for chunk in chunks_of(data, incident_id=incident_id, gateway=gw):
            send(chunk)

    def watermark(gw: str) -> int:
        return max((ack.upto for m in acks.snapshot() if m.topic.split("/")[2] == gw
                    if isinstance(ack := c.decode(m.topic, m.payload), c.DeliveryAck)
                    and ack.stream == STREAMS[gw]), default=0)

    try:
        with subscribed(settings) as service:
            good_id, good = record("gw-good", 1, 300_000)
            send_record("gw-good", 1, 300_000)  # 2 chunks, 336 KB
            wait_for(lambda: service.status()["acked"] == sent["gw-good"], what="good record")
            for k in range(12):  # first chunks of 3-chunk records: 3 MiB that never completes
                send(first_chunk("gw-bad", 100 + k, 600_000))
            for k in range(30):  # small complete records
                send_record("gw-bad", 200 + k)
            send_record("gw-good", 2, 300_000)
            total = sum(sent.values())
            wait_for(lambda: service.status()["acked"] == total, timeout=60,
                     what=f"{total} messages acknowledged")
            for gw in STREAMS:
                wait_for(lambda gw=gw: watermark(gw) == sent[gw],  # type: ignore[misc]
                         what=f"{gw}'s watermark up to {sent[gw]}")
            assert service.status()["dead_lettered"] == 0
        store = CentralIncidents(settings.incident_store, readonly=True)
        try:
            kept = held(store)
            assert kept["gw-good"] == [good_id, ident(2)]
            assert store.read(good_id, "gw-good") == (SITE, "gw-good", good)
            assert kept["gw-bad"] == [ident(200 + k) for k in range(22, 30)]  # its newest 8
            assert used(store) <= 2 * MiB
        finally:
            store.close()
    finally:
        acks.close()
        gateway.close()


def test_a_record_too_large_for_its_share_is_dead_lettered_and_kept_whole(
        tmp_path: Path, broker: Broker, victoria: Victoria) -> None:
    """max_bytes 1 MiB between two gateways: gw-bad's 780 KB record does not fit its share.
    Its chunks are dead-lettered (reason: the quarantine) and acknowledged — the gateway's
    outbox goes on — and the record is kept whole in the quarantine, readable like any other
    (`roomwarden incident list --central` marks it); gw-good's record is untouched."""
    config = tmp_path / "central.yaml"
    config.write_text(yaml.safe_dump({
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "protocol": "5",
                 "client_id": "ingest-quarantine", "shared_group": "ingest"},
        "influx": {"url": victoria.url, "token": "t", "org": "o", "bucket": "b",
                   "flush_interval": "200ms", "retry_max_wait": "1s"},
        "dead_letter": "dead.jsonl", "catalog_store": "catalogs.sqlite",
        "incidents": {"max_bytes": MiB}}))
    settings = load_settings(config)
    gateway = Gateway(broker)
    acks = Subscriber(broker.port, f"roomwarden/{SITE}/gw-bad/ack")
    try:
        with subscribed(settings) as service:
            good_id, good = record("gw-good", 1)
            [one] = chunks_of(good, incident_id=good_id, gateway="gw-good")
            gateway.send(one)
            big_id, big = record("gw-bad", 10, 700_000)
            chunks = chunks_of(big, incident_id=big_id, gateway="gw-bad")
            for dseq, chunk in enumerate(chunks, 1):
                gateway.send(chunk.model_copy(update={"stream": STREAMS["gw-bad"],
                                                      "dseq": dseq}))
            wait_for(lambda: any(
                isinstance(ack := c.decode(m.topic, m.payload), c.DeliveryAck)
                and ack.upto == len(chunks) for m in acks.snapshot()),
                what=f"gw-bad's watermark up to {len(chunks)}")
            assert service.status()["dead_lettered"] == len(chunks)
            reasons = [json.loads(line)["reason"]
                       for line in settings.dead_letter.read_text().splitlines()]
            assert all("kept whole in the quarantine" in r for r in reasons), reasons
        store = CentralIncidents(settings.incident_store, readonly=True)
        try:
            assert store.read(big_id, "gw-bad") == (SITE, "gw-bad", big)
            assert store.read(good_id, "gw-good") == (SITE, "gw-good", good)
            assert {(r["gateway"], r["quarantined"]) for r in store.summaries()} == {
                ("gw-good", 0), ("gw-bad", 1)}
        finally:
            store.close()
        listing = subprocess.run(
            [sys.executable, "-m", "gateway", "incident", "list", "--central", str(config)],
            capture_output=True, text=True, timeout=120, check=True).stdout.splitlines()
        assert [line.endswith("[quarantined]") for line in listing if "lab/gw-" in line] == [
            False, True], listing  # by trigger time, then id: gw-good's, then gw-bad's
    finally:
        acks.close()
        gateway.close()
