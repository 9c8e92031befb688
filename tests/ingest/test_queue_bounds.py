"""What the ingest holds while its database is down (the central audit: 400 QoS 0 junk
payloads of 1 MiB on top of in-flight batches took it from 58 to 670 MB — the writer's queue
had no bound and QoS 0 is not flow-controlled by the broker). A dead message is held as its
dead-letter record will keep it (1 KiB of a large payload, with its length and SHA-256), and
QoS 0 messages (no gateway sends any) past the queue bound are dropped and counted. Real
Mosquitto and the real ingest; the database is an address nobody answers at (it is down)."""

from __future__ import annotations

import base64
import hashlib
import json
import types
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

import gateway.contract.wire as c
import gateway.ingest.writer as writer_module
from gateway.ingest.deadletter import PREFIX
from gateway.ingest.service import IngestService
from gateway.localservices import free_port
from tests.fixtures.services import Broker, wait_for
from tests.ingest.test_service import CATALOG, GW, SITE, Gateway, batch, make_settings


def publish_qos0(broker: Broker, topic: str, payloads: list[bytes]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="qos0-sender",
                         protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(topic, payload, qos=0).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_held_messages_are_bounded_while_the_database_is_down(
        tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module, "MAX_QOS0_BYTES", 64 * 1024)  # a small bound to reach
    down = types.SimpleNamespace(url=f"http://127.0.0.1:{free_port()}")  # nobody answers
    settings = make_settings(tmp_path, broker, down)  # type: ignore[arg-type]
    service = IngestService(settings)
    service.start()
    gateway = Gateway(broker)
    try:
        wait_for(lambda: bool(service.status()["subscribed"]), what="ingest subscribed")
        gateway.send(CATALOG)
        gateway.send(batch(1, 1))  # the writer retries this batch: nothing leaves the queue
        wait_for(lambda: service.metrics.write_retries._value.get() > 0,
                 what="the writer retrying")
        topic = str(c.Topic(SITE, GW, c.Channel.TELEMETRY))
        junk = [bytes([n]) * 2**20 for n in range(8)]  # 8 MiB of junk, QoS 0
        good = [c.encode(batch(10 + n, 10 + n)) for n in range(200)]  # well-formed, QoS 0
        publish_qos0(broker, topic, junk + good)
        queue = service._writer.queue
        dropped = service.metrics.dropped.labels(reason="qos0_queue_full")
        wait_for(lambda: dropped._value.get() > 0, what="QoS 0 past the bound dropped")
        held = queue.snapshot()
        dead = [item for item in held if item.dead_reason is not None]
        assert len(dead) == len(junk)  # junk waits for the writer to log it …
        assert all(len(item.payload) == PREFIX and item.cut is not None for item in dead)
        assert sum(len(item.payload) for item in held) < 2 * 64 * 1024  # … cut to its record
        assert service._writer._qos0_bytes <= 64 * 1024
        # a cut message's record still says what it was
        item = dead[0]
        record = json.loads(service._writer.dead.record(item.topic, item.payload, "why", 0,
                                                        item.cut))
        original = next(j for j in junk if j[:PREFIX] == item.payload)
        assert record["truncated"] and record["length"] == 2**20
        assert record["sha256"] == hashlib.sha256(original).hexdigest()
        assert base64.b64decode(record["payload"]) == original[:PREFIX]
    finally:
        gateway.close()
        service.stop()
