"""End to end: contract messages → real mosquitto → IngestService → real VictoriaMetrics."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.alarms.events import EventKind
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.contract import wire as c
from gateway.contract.base import Upstream
from gateway.field.sample import Quality, Sample
from gateway.ingest.service import IngestService
from gateway.ingest.settings import IngestSettings
from tests.fixtures.services import Broker, Subscriber, Victoria, wait_for

SITE, GW = "bj-idc", "gw-1"
NOW = (time.time_ns() // 10**9 - 3600) * 10**9  # whole seconds, an hour ago


def make_settings(tmp_path: Path, broker: Broker, vm: Victoria, protocol: str = "5",
                  client_id: str = "ingest-test", **extra: object) -> IngestSettings:
    return IngestSettings.model_validate({
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "protocol": protocol,
                 "client_id": client_id, "shared_group": "ingest"},
        "influx": {"url": vm.url, "token": "t", "org": "o", "bucket": "b", "batch_size": 500,
                   "flush_interval": "200ms", "retry_max_wait": "1s"},
        "dead_letter": str(tmp_path / "dead.jsonl"),
        "catalog_store": str(tmp_path / "catalogs.sqlite"), **extra})


@contextlib.contextmanager
def subscribed(settings: IngestSettings) -> Iterator[IngestService]:
    """An ingest service started, once the broker granted its subscriptions; stopped after."""
    service = IngestService(settings)
    service.start()
    try:
        wait_for(lambda: bool(service.status()["subscribed"]), what="ingest subscribed")
        yield service
    finally:
        service.stop()


class Gateway:
    """A publishing gateway stand-in: QoS 1, waits for every PUBACK."""

    def __init__(self, broker: Broker) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gw-sim",
                                  protocol=mqtt.MQTTv5)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def send(self, message: c.Message) -> None:
        assert isinstance(message, Upstream), message  # what a gateway sends names its site
        topic = c.Topic(message.site, message.gateway, c.channel_of(message))
        self.raw(str(topic), c.encode(message), retain=topic.spec.retain)

    def raw(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def gateway(broker: Broker) -> Iterator[Gateway]:
    gw = Gateway(broker)
    yield gw
    gw.close()


CATALOG = c.PointCatalog.build(site=SITE, gateway=GW, produced=NOW, points={
    "th-1.temperature": c.PointMeta(device="th-1", room="battery-1", quantity="temperature",
                                    unit="°C"),
    "h2-1.concentration": c.PointMeta(device="h2-1", room="battery-1", quantity="hydrogen",
                                      unit="ppm"),
    "door-1.open": c.PointMeta(device="door-1", room="battery-1", quantity="door"),
})


def batch(seq: int, second: int, temp: float = 24.5) -> c.TelemetryBatch:
    ts = NOW + second * 10**9
    return c.TelemetryBatch.from_samples(
        site=SITE, gateway=GW, seq=seq, produced=ts, catalog=CATALOG.catalog, samples=[
            Sample("th-1.temperature", temp, ts, Quality.GOOD),
            Sample("h2-1.concentration", 12, ts, Quality.GOOD),
            Sample("door-1.open", second % 2 == 0, ts, Quality.GOOD)])


def values(vm: Victoria, metric: str) -> dict[int, float]:
    """timestamp (ms) → value of the one series `metric`; fails on a second sample per time."""
    series = vm.export(f'{{__name__="{metric}"}}')
    out: dict[int, float] = {}
    for s in series:
        for t, v in zip(s["timestamps"], s["values"], strict=True):
            assert t not in out, f"{metric} has two samples at {t}"
            out[t] = v
    return out


def ms(second: int) -> int:
    return (NOW + second * 10**9) // 10**6


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_end_to_end(tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway,
                    protocol: str) -> None:
    service = IngestService(make_settings(tmp_path, broker, victoria, protocol))
    service.start()
    try:
        wait_for(lambda: bool(service.status()["subscribed"]), what="ingest subscribed")
        gateway.send(CATALOG)
        gateway.send(batch(1, 0, 24.5))
        gateway.send(batch(2, 1, 25.0))
        gateway.send(c.AlarmEventMessage(
            site=SITE, gateway=GW, seq=41, ts=NOW + 2 * 10**9, kind=EventKind.ALARM,
            rule="h2_high", subject="h2-1.concentration", state=AlarmState.ACTIVE_UNACKNOWLEDGED,
            previous_state=AlarmState.NORMAL, value=12, severity=Severity.CRITICAL,
            actor="system", room="battery-1", title="Hydrogen high"))
        gateway.send(c.GatewayState(
            site=SITE, gateway=GW, status="online", ts=NOW + 3 * 10**9,
            outbox=c.OutboxStatus(depth=3, bytes=100, budget=1000),
            dropped={c.MessageKind.TELEMETRY: 2}, devices_online=11, devices_total=12))
        wait_for(lambda: service.status()["acked"] == 5, what="5 messages acknowledged")
        assert values(victoria, "temperature_value") == {ms(0): 24.5, ms(1): 25.0}
        assert values(victoria, "hydrogen_value") == {ms(0): 12.0, ms(1): 12.0}
        assert values(victoria, "door_value") == {ms(0): 1.0, ms(1): 0.0}
        [temp] = victoria.export('{__name__="temperature_value"}')
        assert {k: temp["metric"][k] for k in ("site", "gateway", "room", "device", "point",
                                               "quality", "unit")} == {
            "site": SITE, "gateway": GW, "room": "battery-1", "device": "th-1",
            "point": "th-1.temperature", "quality": "good", "unit": "°C"}
        [seq] = victoria.export('{__name__="alarm_events_seq"}')
        assert seq["values"] == [41] and seq["metric"]["rule"] == "h2_high"
        assert seq["metric"]["severity"] == "critical"
        assert values(victoria, "alarm_events_value") == {ms(2): 12.0}
        assert values(victoria, "gateway_state_outbox_depth") == {ms(3): 3.0}
        assert values(victoria, "gateway_state_dropped_telemetry") == {ms(3): 2.0}
        assert values(victoria, "gateway_state_online") == {ms(3): 1.0}
        status = service.status()
        assert status["written_points"] == 8 and status["dead_lettered"] == 0
    finally:
        service.stop()
    # a restarted ingest still knows the catalog
    again = IngestService(make_settings(tmp_path, broker, victoria, protocol))
    assert again.status()["catalogs"] == 1
    again.stop()


def test_malformed_is_dead_lettered_and_stream_continues(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway) -> None:
    """A malformed message is dead-lettered at once; a batch naming a catalog that never comes
    waits `catalog_wait` (the ingest asks the gateway for it meanwhile), then is dead-lettered
    too — while the stream behind both goes on."""
    settings = make_settings(tmp_path, broker, victoria, catalog_wait="1500ms")
    commands = Subscriber(broker.port, f"roomwarden/{SITE}/{GW}/cmd")
    service = IngestService(settings)
    service.start()
    try:
        wait_for(lambda: bool(service.status()["subscribed"]), what="ingest subscribed")
        gateway.send(CATALOG)
        gateway.raw(f"roomwarden/{SITE}/{GW}/telemetry", b'{"v":1,"not":"a batch"')
        unknown = batch(5, 5).model_copy(update={"catalog": "0123456789abcdef"})
        gateway.raw(f"roomwarden/{SITE}/{GW}/telemetry", c.encode(unknown))
        gateway.send(batch(6, 6, 30.5))
        wait_for(lambda: service.status()["acked"] == 3, what="3 messages acknowledged")
        assert values(victoria, "temperature_value") == {ms(6): 30.5}
        assert service.status()["parked"] == 1 and service.status()["dead_lettered"] == 1
        wait_for(lambda: len(commands.snapshot()) == 1, what="request_state sent")
        command = c.decode(commands.snapshot()[0].topic, commands.snapshot()[0].payload)
        assert isinstance(command, c.RequestState) and command.actor == "ingest"
        wait_for(lambda: service.status()["acked"] == 4, what="the waiting batch given up")
        records = [json.loads(x) for x in settings.dead_letter.read_text().splitlines()]
        assert [r["topic"] for r in records] == [f"roomwarden/{SITE}/{GW}/telemetry"] * 2
        assert "unknown catalog" in records[1]["reason"]
        assert service.status()["dead_lettered"] == 2 and service.status()["parked"] == 0
    finally:
        service.stop()
        commands.close()


def test_database_down_nothing_lost_nothing_doubled(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway) -> None:
    service = IngestService(make_settings(tmp_path, broker, victoria))
    service.start()
    try:
        wait_for(lambda: bool(service.status()["subscribed"]), what="ingest subscribed")
        gateway.send(CATALOG)
        gateway.send(batch(1, 0))
        wait_for(lambda: service.status()["acked"] == 2, what="first batch written")
        victoria.kill()
        for i in range(1, 21):
            gateway.send(batch(i + 1, i, 20.0 + i))
        wait_for(lambda: service.status()["received"] == 22, what="all received")
        wait_for(lambda: service.status()["write_retries"] >= 2, what="retries")
        assert service.status()["acked"] == 2  # nothing acknowledged while the database is down
        victoria.start()
        wait_for(lambda: service.status()["acked"] == 22, timeout=30, what="all acknowledged")
        got = values(victoria, "temperature_value")
        assert got == {ms(i): (24.5 if i == 0 else 20.0 + i) for i in range(21)}
        assert len(values(victoria, "door_value")) == 21
        assert service.status()["dead_lettered"] == 0
    finally:
        service.stop()


def test_unacknowledged_messages_survive_an_ingest_restart(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway) -> None:
    """Stopped while the database is down: the broker keeps what was never acknowledged and
    the next ingest (same client id, persistent session) writes it."""
    first = IngestService(make_settings(tmp_path, broker, victoria))
    first.start()
    wait_for(lambda: bool(first.status()["subscribed"]), what="ingest subscribed")
    gateway.send(CATALOG)
    wait_for(lambda: first.status()["acked"] == 1, what="catalog acknowledged")
    victoria.kill()
    for i in range(10):
        gateway.send(batch(i + 1, i, 10.0 + i))
    wait_for(lambda: first.status()["received"] == 11, what="all received")
    first.stop()
    assert first.status()["acked"] == 1
    victoria.start()
    second = IngestService(make_settings(tmp_path, broker, victoria))
    second.start()
    try:
        wait_for(lambda: second.status()["acked"] == 10, timeout=30, what="redelivered batches")
        assert values(victoria, "temperature_value") == {ms(i): 10.0 + i for i in range(10)}
    finally:
        second.stop()
