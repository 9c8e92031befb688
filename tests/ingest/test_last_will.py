"""A gateway that dies shows offline centrally. Its last will — the `offline` state it composed
when it connected — reached the database at that connection's time, before every state it
published since, so the latest `online` stayed 1 for ever (the central audit, a SIGKILL). The
ingest writes it just after the newest message it saw from that gateway. Real Mosquitto (which
publishes the will when the connection drops), the real ingest, VictoriaMetrics."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

import gateway.contract.wire as c
from gateway.ingest.lastseen import AFTER_NS, LastSeen
from gateway.ingest.service import IngestService
from tests.fixtures.services import Broker, Victoria, wait_for
from tests.ingest.test_service import CATALOG, GW, NOW, SITE, batch, make_settings, values

TOPIC = str(c.Topic(SITE, GW, c.Channel.STATE))


def state(status: Literal["online", "offline"], second: int) -> c.GatewayState:
    return c.GatewayState(site=SITE, gateway=GW, status=status, ts=NOW + second * 10**9)


def test_a_last_will_lands_after_what_the_gateway_sent_before_it_died(
        tmp_path: Path, broker: Broker, victoria: Victoria) -> None:
    service = IngestService(make_settings(tmp_path, broker, victoria))
    service.start()
    gw = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gw-dies", protocol=mqtt.MQTTv5)
    gw.will_set(TOPIC, c.encode(state("offline", 0)), qos=1, retain=True)  # at connect
    try:
        wait_for(lambda: bool(service.status()["subscribed"]), what="ingest subscribed")
        gw.connect("127.0.0.1", broker.port)
        gw.loop_start()
        for second in (0, 60, 120):
            gw.publish(TOPIC, c.encode(state("online", second)), qos=1,
                       retain=True).wait_for_publish(10)
        for message in (CATALOG, batch(1, 150)):
            topic = c.Topic(SITE, GW, c.channel_of(message))
            gw.publish(str(topic), c.encode(message), qos=1,
                       retain=topic.spec.retain).wait_for_publish(10)
        wait_for(lambda: service.status()["acked"] >= 5, what="all acknowledged")
        sock = gw.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)  # dies: no DISCONNECT, the broker sends the will
        wait_for(lambda: len(values(victoria, "gateway_state_online")) == 4, timeout=15,
                 what="the will written")
        online = values(victoria, "gateway_state_online")
        last = max(online)
        assert online[last] == 0.0, online
        assert last == (NOW + 150 * 10**9 + AFTER_NS) // 10**6  # after the telemetry
    finally:
        gw.loop_stop()
        service.stop()


def test_a_clean_goodbye_keeps_its_time_and_a_will_is_placed_once() -> None:
    seen = LastSeen()
    assert seen.place(state("online", 10)) == state("online", 10)
    assert seen.place(state("offline", 20)) == state("offline", 20)  # a goodbye: its own
    placed = seen.place(state("offline", 0))
    assert isinstance(placed, c.GatewayState) and placed.ts == NOW + 20 * 10**9 + AFTER_NS
    assert seen.placed == 1
    later = time.time_ns()
    # a gateway never heard keeps the will's time
    placed = seen.place(c.GatewayState(site="other", gateway=GW, status="offline", ts=later))
    assert isinstance(placed, c.GatewayState) and placed.ts == later


def test_a_time_far_ahead_of_the_ingest_does_not_place_the_will() -> None:
    """One batch from a clock 2 h ahead (the day timecheck lets through) placed the will 2 h
    ahead: the gateway stayed 'stopped' on the dashboards for hours after it came back."""
    now = time.time_ns()
    seen = LastSeen()
    seen.place(state("online", 10), now)
    ahead = c.GatewayState(site=SITE, gateway=GW, status="online", ts=now + 7200 * 10**9)
    assert seen.place(ahead, now) == ahead  # written at its own time, not noted as newest
    placed = seen.place(state("offline", 0), now)
    assert isinstance(placed, c.GatewayState) and placed.ts == NOW + 10 * 10**9 + AFTER_NS
