"""Gateway clocks as the ingest sees them (the clock audit's D4, the central audit's skew): a
message stamped by an unset clock (1970) was acknowledged and silently dropped by the database
(VictoriaMetrics: `small_timestamp`) — a critical alarm gone without a trace. The ingest now
dead-letters such messages, saying why; a gateway whose live state is minutes off the ingest's
clock is logged and measured. Real Mosquitto, the real ingest, VictoriaMetrics."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gateway.contract.wire as c
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.contract.enums import EventKind
from gateway.field.sample import Quality, Sample
from gateway.ingest.service import IngestService
from gateway.ingest.timecheck import AHEAD_NS, FLOOR_NS, implausible
from tests.fixtures.services import Broker, Victoria, wait_for
from tests.ingest.test_service import CATALOG, GW, SITE, Gateway, make_settings, values

DAY_1970 = 86_400 * 10**9  # 1970-01-02: a Pi's clock before NTP


@pytest.fixture
def gateway(broker: Broker) -> Iterator[Gateway]:
    publisher = Gateway(broker)
    yield publisher
    publisher.close()


def unset_clock_messages() -> list[c.Message]:
    batch = c.TelemetryBatch.from_samples(
        site=SITE, gateway=GW, seq=1, produced=DAY_1970, catalog=CATALOG.catalog,
        samples=[Sample("h2-1.concentration", 30, DAY_1970, Quality.GOOD)])
    alarm = c.AlarmEventMessage(
        site=SITE, gateway=GW, seq=7, ts=DAY_1970 + 10**9, kind=EventKind.ALARM,
        rule="explosion.h2_alarm", subject="h2-1.concentration",
        state=AlarmState.ACTIVE_UNACKNOWLEDGED, previous_state=AlarmState.NORMAL, value=30,
        severity=Severity.CRITICAL, actor="system", room="battery-1", title="Hydrogen")
    return [batch, alarm]


def test_an_unset_clocks_messages_are_dead_lettered_with_why(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway,
        caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path, broker, victoria)
    service = IngestService(settings)
    service.start()
    try:
        wait_for(lambda: bool(service.status()["subscribed"]), what="ingest subscribed")
        gateway.send(CATALOG)
        for message in unset_clock_messages():
            gateway.send(message)
        skewed = c.GatewayState(site=SITE, gateway=GW, status="online",
                                ts=time.time_ns() + 600 * 10**9)  # 10 minutes ahead
        with caplog.at_level(logging.WARNING, logger="roomwarden.ingest"):
            gateway.raw(str(c.Topic(SITE, GW, c.Channel.STATE)), c.encode(skewed))
            wait_for(lambda: service.status()["acked"] == 4, what="all acknowledged")
        records = [json.loads(x) for x in settings.dead_letter.read_text().splitlines()]
        assert len(records) == 2 and all("before 2020" in r["reason"] for r in records)
        assert "1970-01-02" in records[0]["reason"]
        assert not values(victoria, "hydrogen_value") and not values(
            victoria, "alarm_events_value")
        exposition = service.metrics.exposition().decode()
        assert 'roomwarden_ingest_messages_dead_lettered_total{reason="clock"} 2.0' in \
            exposition
        skew = [line for line in exposition.splitlines()
                if line.startswith("roomwarden_ingest_gateway_clock_skew_seconds{")]
        assert len(skew) == 1 and 595 < float(skew[0].split()[-1]) < 605
        assert any("event=gateway_clock_skew" in r.getMessage() and "ahead of" in
                   r.getMessage() for r in caplog.records)
    finally:
        service.stop()


@given(ts=st.integers(0, 2**62))
def test_only_times_from_2020_to_a_day_ahead_are_written(ts: int) -> None:
    now = 1_800_000_000 * 10**9
    state = c.GatewayState(site=SITE, gateway=GW, status="online", ts=ts)
    assert (implausible(state, now) is None) == (FLOOR_NS <= ts <= now + AHEAD_NS)
