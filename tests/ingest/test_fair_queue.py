"""The writer's per-gateway queues (central audit, findings 5 and 8), through a real mosquitto
into a real VictoriaMetrics: with one gateway's telemetry backlog queued in the ingest, another
gateway's alarm is written first (one FIFO wrote it after the whole backlog), and what one
gateway has queued is bounded (Mosquitto 2.0.11 sends past the Receive Maximum once
acknowledgements flow: the audit's flood left 89,640 messages, 351 MB, in the ingest)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.alarms.events import EventKind
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.contract import wire as c
from gateway.field.sample import Quality, Sample
from gateway.ingest.fairqueue import ITEM_OVERHEAD
from gateway.ingest.service import IngestService
from tests.fixtures.services import Broker, Subscriber, Victoria, wait_for
from tests.ingest.test_service import NOW, SITE, Gateway, make_settings

FLOODER, QUIET = "gw-flood", "gw-quiet"
BACKLOG = 150
BATCH = 10
"""Points a write takes at most (`influx.batch_size`): the backlog is 15 writes."""


@pytest.fixture
def gateway(broker: Broker) -> Iterator[Gateway]:
    gw = Gateway(broker)  # one client publishing both gateways' topics (no ACL here)
    yield gw
    gw.close()


def batch(seq: int, points: int = 1) -> c.TelemetryBatch:
    ts = NOW + seq * 10**9
    return c.TelemetryBatch.from_samples(
        site=SITE, gateway=FLOODER, seq=seq, produced=ts,
        samples=[Sample(f"d.p{i}", float(seq), ts, Quality.GOOD) for i in range(points)]
    ).model_copy(update={"stream": 3, "dseq": seq})


def alarm() -> c.AlarmEventMessage:
    return c.AlarmEventMessage(
        site=SITE, gateway=QUIET, seq=1, ts=NOW, kind=EventKind.ALARM,
        rule="fire.smoke_coincidence", subject="room-1", state=AlarmState.ACTIVE_UNACKNOWLEDGED,
        previous_state=AlarmState.NORMAL, severity=Severity.CRITICAL, actor="system",
        room="battery-1", title="Fire", stream=5, dseq=1)


def test_another_gateways_alarm_is_written_before_a_queued_backlog(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway) -> None:
    settings = make_settings(tmp_path, broker, victoria)
    settings = settings.model_copy(update={"influx": settings.influx.model_copy(
        update={"batch_size": BATCH})})
    acks = Subscriber(broker.port, f"roomwarden/{SITE}/+/ack")
    service = IngestService(settings)
    service.start()
    try:
        wait_for(lambda: bool(service.status()["subscribed"]), what="ingest subscribed")
        victoria.kill()  # the database is down: the backlog queues in the ingest
        for seq in range(1, BACKLOG + 1):
            gateway.send(batch(seq))
        gateway.send(alarm())
        wait_for(lambda: service.status()["received"] == BACKLOG + 1,
                 what="the backlog and the alarm received")
        victoria.start()
        wait_for(lambda: service.status()["acked"] == BACKLOG + 1, timeout=60,
                 what="everything written and acknowledged")
        wait_for(lambda: any(m.topic.endswith(f"/{QUIET}/ack") for m in acks.snapshot()),
                 what="the quiet gateway's ack")
    finally:
        service.stop()
        acks.close()
    # the flooder's watermark when the quiet gateway's alarm was acknowledged (in the order
    # the ingest published them): at most the batch the writer held while the database was
    # down and the one written with the alarm
    flooder_upto = 0
    for m in acks.snapshot():
        ack = json.loads(m.payload)
        if m.topic.endswith(f"/{QUIET}/ack"):
            assert ack["upto"] == 1
            break
        flooder_upto = max(flooder_upto, ack["upto"])
    assert flooder_upto <= 2 * BATCH, (
        f"the alarm waited behind {flooder_upto} of the flooder's {BACKLOG} batches")
    written = [v for s in victoria.export(f'{{__name__="unclassified_value",'
                                          f'gateway="{FLOODER}"}}') for v in s["values"]]
    assert sorted(written) == [float(n) for n in range(1, BACKLOG + 1)]


def test_what_one_gateway_has_queued_is_bounded(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway) -> None:
    bound = 64 * 1024
    settings = make_settings(tmp_path, broker, victoria,
                             queue={"per_gateway_bytes": bound, "total_bytes": 4 * bound})
    service = IngestService(settings)
    service.start()
    n, points = 200, 20
    try:
        wait_for(lambda: bool(service.status()["subscribed"]), what="ingest subscribed")
        victoria.kill()
        for seq in range(1, n + 1):  # ≈ 4 KB each as queued
            gateway.client.publish(str(c.Topic(SITE, FLOODER, c.Channel.TELEMETRY)),
                                   c.encode(batch(seq, points)), qos=1)
        queue = service._writer.queue
        seen: list[tuple[int, int]] = []

        def waiting_with_some_held() -> bool:
            # (the writer takes what is held out to retry the dead database: between its
            # takes the gateway's share can be empty while the ingest waits for room)
            held, size = queue.held((SITE, FLOODER))
            if queue.waits > 0 and held > 0:
                seen.append((held, size))
            return bool(seen)

        wait_for(waiting_with_some_held, what="the ingest waiting for room")
        held, size = seen[0]
        each = size // held
        assert each > ITEM_OVERHEAD + 2000
        assert size <= bound and held < bound // each + 1
        assert service.status()["pending"] < n // 2  # (before: all 200)
        victoria.start()
        wait_for(lambda: service.status()["acked"] == n, timeout=60,
                 what="everything written once the database is back")
        assert service.metrics.queue_waits._value.get() >= 1
    finally:
        service.stop()
    written = [v for s in victoria.export(f'{{__name__="unclassified_value",'
                                          f'gateway="{FLOODER}"}}') for v in s["values"]]
    assert sorted(written) == sorted(float(k) for k in range(1, n + 1) for _ in range(points))


def test_an_outage_longer_than_the_keepalive_keeps_the_connection(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway) -> None:
    """A full queue holds paho's network thread, which then sends no PINGREQ: the wait yields
    after half the keepalive, so a database outage does not cost the broker connection (and a
    redelivery of everything unacknowledged)."""
    settings = make_settings(tmp_path, broker, victoria,
                             queue={"per_gateway_bytes": 64 * 1024, "total_bytes": 256 * 1024})
    settings = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(
        update={"keepalive": 2.0})})  # the broker drops a client silent for 3 s
    service = IngestService(settings)
    service.start()
    n, points = 200, 20
    try:
        wait_for(lambda: bool(service.status()["subscribed"]), what="ingest subscribed")
        victoria.kill()
        for seq in range(1, n + 1):
            gateway.client.publish(str(c.Topic(SITE, FLOODER, c.Channel.TELEMETRY)),
                                   c.encode(batch(seq, points)), qos=1)
        wait_for(lambda: service._writer.queue.overruns > 0, what="a wait that yielded")
        time.sleep(8)  # well past 1.5 x the keepalive
        victoria.start()
        wait_for(lambda: service.status()["acked"] == n, timeout=60, what="all written")
        status = service.status()
        assert status["not_acked_reconnected"] == 0 and status["duplicates"] == 0
        assert status["received"] == n
    finally:
        service.stop()
    assert "ingest-test has exceeded timeout" not in broker.log.read_text()
    written = [v for s in victoria.export(f'{{__name__="unclassified_value",'
                                          f'gateway="{FLOODER}"}}') for v in s["values"]]
    assert sorted(written) == sorted(float(k) for k in range(1, n + 1) for _ in range(points))
