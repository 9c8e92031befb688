"""A gateway restored from a backup or a cloned SD image (the central audit, probe_seq.py): its
outbox stream reached `dseq` 100 at the ingest; the copy left off at 50, so its next messages
carry numbers the watermark covered, and each was discarded as a duplicate — every re-send
again — a new smoke alarm never stored, nothing said. Its birth state (a new `boot`, floor 51)
now puts the watermark back to 50, logged once with both numbers, and what a gateway sends
again that was stored before is still recognised by its identity (kind, seq, time). Real
Mosquitto, the real ingest, VictoriaMetrics without deduplication (a message written twice
would show as two samples at one time)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import gateway.contract.wire as c
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.contract.enums import EventKind
from gateway.dashboards.definition import SITE_OVERVIEW
from tests.fixtures.services import Broker, Subscriber, Victoria, wait_for
from tests.ingest.test_clock_check import HIDDEN_S, dashboard_rows
from tests.ingest.test_service import SITE, Gateway, make_settings, subscribed, values

GW = "gw-restored"
STREAM = 424242
EARLIER = time.time_ns() - 600 * 10**9  # the events before the restore: 10 minutes ago


@pytest.fixture
def gateway(broker: Broker) -> Iterator[Gateway]:
    publisher = Gateway(broker)
    yield publisher
    publisher.close()


@pytest.fixture
def acks(broker: Broker) -> Iterator[Subscriber]:
    sub = Subscriber(broker.port, f"roomwarden/{SITE}/{GW}/ack")
    yield sub
    sub.close()


def smoke(seq: int, dseq: int, ts: int, active: bool) -> c.AlarmEventMessage:
    a, n = AlarmState.ACTIVE_UNACKNOWLEDGED, AlarmState.NORMAL
    return c.AlarmEventMessage(
        site=SITE, gateway=GW, seq=seq, ts=ts, kind=EventKind.ALARM, rule="fire.smoke",
        subject="smoke-1.alarm", state=a if active else n, previous_state=n if active else a,
        severity=Severity.CRITICAL, actor="system", room="battery-1", title="Smoke",
        stream=STREAM, dseq=dseq)


def before(n: int) -> c.AlarmEventMessage:
    """The n-th event before the restore (raised on odd numbers, cleared on even)."""
    return smoke(n, n, EARLIER + n * 10**9, active=n % 2 == 1)


def birth(boot: int, floor: int) -> c.GatewayState:
    return c.GatewayState(site=SITE, gateway=GW, status="online", ts=time.time_ns(),
                          boot=boot, delivery=c.DeliveryInfo(mode="ingest", stream=STREAM,
                                                             floor=floor))


def last_ack(sub: Subscriber) -> c.DeliveryAck:
    message = c.decode(sub.messages[-1].topic, sub.messages[-1].payload)
    assert isinstance(message, c.DeliveryAck)
    return message


def test_a_restored_gateways_new_alarm_is_stored(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway,
        acks: Subscriber, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path, broker, victoria)
    with subscribed(settings) as service:
        gateway.send(birth(boot=1, floor=1))
        for n in range(1, 101):
            gateway.send(before(n))
        wait_for(lambda: service.status()["acked"] == 101, what="the first 100 events")
        wait_for(lambda: bool(acks.messages) and last_ack(acks).upto == 100, what="ack 100")
        with caplog.at_level(logging.WARNING, logger="roomwarden.ingest"):
            gateway.send(birth(boot=2, floor=51))  # restored: the copy left off at 50
            raised = time.time_ns()
            gateway.send(smoke(51, 51, raised, active=True))  # a new smoke alarm
            wait_for(lambda: service.status()["acked"] == 103, what="the restored gateway's")
        assert service.status()["duplicates"] == 0
        [row] = [r for r in dashboard_rows(victoria, SITE_OVERVIEW, "Active alarms")
                 if r["gateway"] == GW]
        assert row["rule"] == "fire.smoke" and row["value"] == 1.0
        time.sleep(HIDDEN_S)
        assert values(victoria, "alarm_events_seq")[raised // 10**6] == 51.0
        wait_for(lambda: last_ack(acks).upto == 51, what="ack 51")
        assert (last_ack(acks).upto, last_ack(acks).highest) == (51, 51)
        [line] = [r.getMessage() for r in caplog.records
                  if "event=ack_watermark_reset" in r.getMessage()]
        assert f"gateway={GW} stream={STREAM} upto=100 floor=51" in line
        # the number came with another message: the journal went back too (its alarms' order
        # starts again from what the copy sends)
        assert any(f"event=alarm_order_forgotten site={SITE} gateway={GW} alarms=1" in
                   r.getMessage() for r in caplog.records)
        # the same boot again (a refresh, a reconnect) changes nothing
        gateway.send(birth(boot=2, floor=51))
        gateway.send(smoke(52, 52, time.time_ns(), active=False))
        wait_for(lambda: service.status()["acked"] == 105, what="refresh and clear")
        wait_for(lambda: last_ack(acks).upto == 52, what="ack 52")
        assert len([r for r in caplog.records if "ack_watermark_reset" in r.getMessage()]) == 1


def test_what_a_restarted_gateway_sends_again_is_recognised_after_the_reset(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway,
        acks: Subscriber) -> None:
    """A plain restart while acknowledgements were on their way: the birth state's floor (96)
    is below the watermark (100), which goes back to 95 — and the five events the gateway
    sends again are duplicates by their (seq, time), written once, also after the ingest
    restarts; the next new one is written and the watermark moves on."""
    settings = make_settings(tmp_path, broker, victoria)
    with subscribed(settings) as service:
        gateway.send(birth(boot=1, floor=1))
        for n in range(1, 101):
            gateway.send(before(n))
        wait_for(lambda: service.status()["acked"] == 101, what="the first 100 events")
        gateway.send(birth(boot=2, floor=96))
        wait_for(lambda: bool(acks.messages) and last_ack(acks).upto == 95, what="ack 95")
        for n in (96, 97):
            gateway.send(before(n))
        wait_for(lambda: service.status()["acked"] == 104, what="two sent again")
        assert service.status()["duplicates"] == 2
    with subscribed(settings) as again:  # the window is on disk
        for n in (98, 99, 100):
            gateway.send(before(n))
        gateway.send(smoke(101, 101, time.time_ns(), active=True))
        wait_for(lambda: last_ack(acks).upto == 101, what="ack 101")
        # three sent again, and the retained birth state delivered at the subscribe (written
        # before, and the same boot: nothing reset); the new event written
        assert (again.status()["duplicates"], again.status()["written_messages"]) == (4, 1)
    time.sleep(HIDDEN_S)
    stored = values(victoria, "alarm_events_seq")  # (fails on two samples at one time)
    assert sorted(stored.values()) == [float(n) for n in range(1, 102)]
