"""A gateway killed with SIGKILL while the delete of an acknowledged alarm event waits for a
commit that happens anyway (`outbox.delete_wait`: gateway.uplink.outbox_acks) — real
processes: `roomwarden simulate` and `roomwarden run`, a real Mosquitto, the ingest service and
VictoriaMetrics without deduplication (tests/faults/harness.py).

The acknowledged rows are still in the file, so the restarted gateway sends them again (here
for certain: the broker has lost the retained acknowledgement, as a broker without persistence
does when it restarts). Its birth state names them (its `floor`), so the ingest puts its
watermark back for the new boot and recognises what comes again by the identity it kept for
those numbers — which it keeps only because the gateway's states never claimed them done while
they were in its file. The central database holds each alarm event and each point once."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import paho.mqtt.publish as mqtt_publish
import yaml

from gateway.contract.wire import (
    AlarmEventMessage,
    Channel,
    DeliveryAck,
    GatewayState,
    TelemetryBatch,
    decode,
    topic_filter,
)
from gateway.ingest.service import IngestService
from tests.faults.harness import GatewayProcess, Simulator, broker_and_database, stop_all, stored
from tests.faults.test_uplink_faults import ingest_settings
from tests.fixtures.services import Subscriber, wait_for

SITE: dict[str, Any] = {
    "version": 1,
    "gateway": {"id": "defer-gw-01", "site": "defer-site"},
    "rooms": [{"id": "batt-1", "type": "battery"}],
    "buses": [{"id": "tcp-a", "type": "modbus_tcp", "host": "127.0.0.1", "port": 502,
               "timeout": "500ms"}],
    "devices": [
        {"id": "h2-1", "bus": "tcp-a", "unit": 10, "profile": "generic_h2_detector",
         "room": "batt-1", "poll_interval": "200ms"},
        {"id": "th-1", "bus": "tcp-a", "unit": 11, "profile": "generic_th_sensor",
         "room": "batt-1", "poll_interval": "200ms"}],
    "panel": {"enabled": False},
    "uplink": {"broker": "127.0.0.1", "port": 1883, "protocol": "5",
               "client_id": "defer-gw-01", "keepalive": "5s", "reconnect_min": "200ms",
               "reconnect_max": "1s", "ack_timeout": "2s", "state_interval": "1s",
               "exception": {"deadband": 0, "max_interval": "10ms"},
               # telemetry the ingest is slow to acknowledge (a loaded machine) is committed
               # after `telemetry_hold`, and that commit takes the deferred deletes along:
               # the longest hold keeps the file as the test last saw it until the kill
               "outbox": {"delete_wait": "10m", "telemetry_hold": "5m"}},
}
H2 = "h2-1.h2"
ACK_TOPIC = "roomwarden/defer-site/defer-gw-01/ack"


class Seen:
    def __init__(self, port: int) -> None:
        self.sub = Subscriber(port, [topic_filter(Channel.TELEMETRY),
                                     topic_filter(Channel.ALARMS), topic_filter(Channel.ACK),
                                     topic_filter(Channel.STATE)],
                              client_id="defer-test-observer", clean_session=False)

    def _decoded(self) -> list[object]:
        return [decode(m.topic, m.payload) for m in self.sub.snapshot() if m.payload]

    def batches(self) -> list[TelemetryBatch]:
        return [m for m in self._decoded() if isinstance(m, TelemetryBatch)]

    def alarms(self) -> list[AlarmEventMessage]:
        return [m for m in self._decoded() if isinstance(m, AlarmEventMessage)]

    def states(self) -> list[GatewayState]:
        return [m for m in self._decoded() if isinstance(m, GatewayState)]

    def upto(self) -> int:
        acks = [m for m in self._decoded() if isinstance(m, DeliveryAck)]
        return acks[-1].upto if acks else 0


def test_killed_before_a_deferred_delete_the_gateway_sends_again_and_each_is_stored_once(
        tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(SITE, sort_keys=False))
    with broker_and_database(tmp_path) as (broker, vm):
        sim = Simulator(config, tmp_path)
        sim.start()
        gw = GatewayProcess(sim.written, broker.port, tmp_path)
        seen = Seen(broker.port)
        ingest = IngestService(ingest_settings(tmp_path, broker, vm))
        ingest.start()
        try:
            wait_for(lambda: bool(ingest.status()["subscribed"]), 15, "the ingest's SUBACK")
            sim.command(cmd="set", point=H2, signal=1.0)
            gw.start()
            wait_for(lambda: seen.upto() >= 10, 60, "telemetry acknowledged as it goes")
            sim.command(cmd="set", point=H2, signal=40.0)  # alarm events: committed
            wait_for(lambda: bool(seen.alarms()), 30, "an alarm event published")

            def in_file() -> set[int]:  # the alarm events the outbox file holds
                return {getattr(decode(t, p), "dseq", 0) or 0 for t, p in gw.outbox_rows()
                        if t.endswith("/alarms")}

            for _ in range(10):  # until no further event's commit takes their deletes along
                events = {a.dseq or 0 for a in seen.alarms()}
                top, since = max(events), time.time_ns()
                wait_for(lambda: seen.upto() >= top, 30, "the events acknowledged")  # noqa: B023
                held = in_file()
                wait_for(lambda: len([x for x in seen.states() if x.ts > since]) >= 2,  # noqa: B023
                         30, "states after the acknowledgement")
                if held and in_file() == held and {a.dseq or 0 for a in seen.alarms()} == events:
                    break
            assert held and held <= events, "acknowledged events wait in the file for the delete"
            # the states still name them as held (the ingest keeps their identities)
            floors = [x.delivery.floor for x in seen.states() if x.ts > since
                      and x.delivery is not None and x.delivery.floor is not None]
            assert floors and max(floors) <= min(held)
            gw.signal(signal.SIGKILL)
            held &= in_file()  # what the killed gateway's file really holds
            assert held, "a commit took the deferred deletes along before the kill"
            # the broker forgets the retained acknowledgement (as one without persistence
            # does when it restarts): the restarted gateway cannot know what was confirmed
            mqtt_publish.single(ACK_TOPIC, b"", qos=1, retain=True, hostname="127.0.0.1",
                                port=broker.port)
            sent_before = len(seen.alarms())
            restart_ns = time.time_ns()
            gw.start()

            def later() -> list[TelemetryBatch]:
                return [b for b in seen.batches() if b.t0 > restart_ns]

            wait_for(lambda: len(seen.alarms()) > sent_before, 60,
                     "the alarm event sent again by the restarted gateway")
            wait_for(lambda: len(later()) >= 5, 30, "telemetry of the restarted gateway")
            target = max(b.dseq or 0 for b in later())
            wait_for(lambda: seen.upto() >= target, 60, "everything acknowledged again")
            assert gw.signal(signal.SIGTERM) == 0
            # a clean stop commits the deletes: what is left is the last moment's telemetry
            left = [decode(t, p) for t, p in gw.outbox_rows()]
            assert all(getattr(m, "dseq", 0) > seen.upto() for m in left), left
        finally:
            stop_all(gw, sim)
            seen.sub.close()
            ingest.stop()
        resent = [a for a in seen.alarms()[sent_before:] if (a.dseq or 0) in held]
        assert resent, "the restarted gateway sent the acknowledged event again"
        vm.flush()
        db = stored(vm, "defer-site", "defer-gw-01")
        assert not db.doubled, db.doubled[:5]
        journal = gw.journal_events()
        assert journal and sorted(db.alarm_seqs) == sorted(set(db.alarm_seqs))
        assert set(journal) <= set(db.alarm_seqs)
