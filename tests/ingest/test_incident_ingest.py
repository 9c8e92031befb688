"""The real ingest (against a real Mosquitto) takes incident chunks: a record's chunks out of
order and one of them twice are stored as one record; a forged chunk and a chunk of a record
that does not check are dead-lettered with the reason — and every delivery number still counts
towards the gateway's acknowledgement watermark, so nothing blocks the gateway's outbox."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.contract import wire as c
from gateway.ingest.incidents import CentralIncidents
from gateway.ingest.service import IngestService
from tests.fixtures.services import Broker, Subscriber, Victoria, wait_for
from tests.ingest.test_incident_store import GW, INCIDENT, SITE, chunks_of, record_file
from tests.ingest.test_service import Gateway, make_settings

STREAM = 77


def numbered(chunk: c.IncidentChunk, dseq: int) -> c.IncidentChunk:
    return chunk.model_copy(update={"stream": STREAM, "dseq": dseq})


def test_chunks_are_stored_once_and_bad_ones_dead_lettered(
        tmp_path: Path, broker: Broker, victoria: Victoria) -> None:
    settings = make_settings(tmp_path, broker, victoria)
    gateway = Gateway(broker)
    acks = Subscriber(broker.port, f"roomwarden/{SITE}/{GW}/ack")
    service = IngestService(settings)
    service.start()
    try:
        wait_for(lambda: bool(service.status()["subscribed"]), what="ingest subscribed")
        data = record_file(noise=300_000, gateway=GW)
        first, last = chunks_of(data, gateway=GW)
        bad = record_file("20261203T031201Z-batt-3f-4712", gateway="someone-else")
        [foreign] = chunks_of(bad, incident_id="20261203T031201Z-batt-3f-4712", gateway=GW)
        gateway.send(numbered(last, 1))
        gateway.send(numbered(first, 2))
        gateway.send(numbered(first, 2))  # a redelivery
        gateway.send(numbered(foreign, 3))  # names another gateway inside
        topic = f"roomwarden/{SITE}/{GW}/incidents"
        forged = json.loads(c.encode(numbered(first, 4)))
        forged["count"] = 3  # breaks the contract: dead-lettered at decode
        gateway.raw(topic, json.dumps(forged).encode())
        wait_for(lambda: service.status()["acked"] == 5, what="5 messages acknowledged")
        wait_for(lambda: any(c.decode(m.topic, m.payload).upto == 3  # type: ignore[union-attr]
                             for m in acks.snapshot()), what="watermark up to 3")
        assert service.status()["dead_lettered"] == 2
        records = [json.loads(x) for x in settings.dead_letter.read_text().splitlines()]
        assert [r["topic"] for r in records] == [topic] * 2
        assert "names 20261203T031201Z-batt-3f-4712 of lab/someone-else" in records[0]["reason"]
        assert "count 3 does not fit size" in records[1]["reason"]
        store = CentralIncidents(settings.incident_store, readonly=True)
        assert store.read(INCIDENT) == (SITE, GW, data)
        assert [r["id"] for r in store.summaries()] == [INCIDENT] and store.waiting() == []
        store.close()
    finally:
        service.stop()
        acks.close()
        gateway.close()
