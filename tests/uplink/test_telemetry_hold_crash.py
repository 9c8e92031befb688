"""A gateway killed with SIGKILL while telemetry waits in its memory (published, not yet
acknowledged: the ingest is away) — real processes: `roomwarden simulate` and `roomwarden
run`, a real Mosquitto, the ingest service and VictoriaMetrics (tests/faults/harness.py).

Restarted, the gateway numbers on above every number it had published (the numbers are
reserved on disk in blocks: the ingest would take a reused one for a duplicate and drop the
new message), says so in its log, and its first states let the ingest's watermark pass the
numbers it skipped: its later telemetry is stored and acknowledged. Nothing it held on disk is
lost (the alarm event raised while the ingest was away); what it held only in memory and the
ingest never stored is at most its last `telemetry_hold` seconds of telemetry."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import yaml

from gateway.contract.wire import (
    AlarmEventMessage,
    Channel,
    DeliveryAck,
    TelemetryBatch,
    decode,
    topic_filter,
)
from gateway.ingest.service import IngestService
from tests.faults.harness import (
    GatewayProcess,
    Simulator,
    broker_and_database,
    stop_all,
    stored,
)
from tests.faults.test_uplink_faults import ingest_settings
from tests.fixtures.services import Subscriber, wait_for

HOLD_S = 60.0
SITE: dict[str, Any] = {
    "version": 1,
    "gateway": {"id": "hold-gw-01", "site": "hold-site"},
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
               "client_id": "hold-gw-01", "keepalive": "5s", "reconnect_min": "200ms",
               "reconnect_max": "1s", "ack_timeout": "2s",
               "exception": {"deadband": 0, "max_interval": "10ms"},
               "outbox": {"telemetry_hold": f"{HOLD_S:g}s"}},
}
H2 = "h2-1.h2"


class Seen:
    """Telemetry, alarm events and the ingest's acknowledgements on the broker."""

    def __init__(self, port: int) -> None:
        self.sub = Subscriber(port, [topic_filter(Channel.TELEMETRY),
                                     topic_filter(Channel.ALARMS), topic_filter(Channel.ACK)],
                              client_id="hold-test-observer", clean_session=False)

    def batches(self) -> list[TelemetryBatch]:
        return [m for m in self._decoded() if isinstance(m, TelemetryBatch)]

    def alarms(self) -> list[AlarmEventMessage]:
        return [m for m in self._decoded() if isinstance(m, AlarmEventMessage)]

    def upto(self) -> int:
        acks = [m for m in self._decoded() if isinstance(m, DeliveryAck)]
        return acks[-1].upto if acks else 0

    def _decoded(self) -> list[object]:
        return [decode(m.topic, m.payload) for m in self.sub.snapshot()]


def test_a_gateway_killed_with_telemetry_in_memory_numbers_on_and_is_acknowledged(
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
            # the ingest goes away: telemetry waits in memory (held 60 s), an alarm event is
            # committed at once
            ingest.stop()
            away = len(seen.batches())
            sim.command(cmd="set", point=H2, signal=40.0)
            wait_for(lambda: bool(seen.alarms()) and len(seen.batches()) >= away + 10, 30,
                     "an alarm event and telemetry published while the ingest is away")
            assert not [r for r in gw.outbox_rows() if r[0].endswith("/telemetry")], \
                "telemetry waited in memory"
            killed_ns = time.time_ns()
            gw.signal(signal.SIGKILL)
            before = seen.batches()
            held_on_disk = [r for r in gw.outbox_rows() if r[0].endswith("/alarms")]
            assert held_on_disk, "the alarm event was committed before it was published"
            sim.command(cmd="set", point=H2, signal=1.0)

            ingest = IngestService(ingest_settings(tmp_path, broker, vm))
            ingest.start()
            wait_for(lambda: bool(ingest.status()["subscribed"]), 15, "the ingest back")
            restart_ns = time.time_ns()
            gw.start()

            def later() -> list[TelemetryBatch]:  # made by the restarted process
                return [b for b in seen.batches() if b.t0 > restart_ns]

            wait_for(lambda: len(later()) >= 5, 30, "telemetry of the restarted gateway")
            target = max(b.dseq or 0 for b in later())
            try:
                wait_for(lambda: seen.upto() >= target and gw.outbox_depth() == 0, 60,
                         "the watermark past the skipped numbers, the outbox empty")
            except AssertionError as timed_out:  # say which half, for a run on a loaded machine
                rows = [(t.rsplit("/", 1)[-1], getattr(decode(t, p), "dseq", None))
                        for t, p in gw.outbox_rows()]
                raise AssertionError(f"{timed_out}: watermark {seen.upto()}, target {target}, "
                                     f"outbox rows (channel, dseq) {rows[:20]} of {len(rows)}, "
                                     f"ingest {ingest.status()}") from None
            restarted = [b for b in later() if (b.dseq or 0) <= target]  # acknowledged
            assert gw.signal(signal.SIGTERM) == 0
        finally:
            stop_all(gw, sim)
            seen.sub.close()
            ingest.stop()
        # numbers above everything the killed process published: none given twice
        old_alarms = [a for a in seen.alarms() if a.ts < killed_ns]
        assert min(b.seq for b in restarted) > max(b.seq for b in before)
        assert min(b.dseq or 0 for b in restarted) > max(
            d or 0 for d in [*(b.dseq for b in before), *(a.dseq for a in old_alarms)])
        log = gw.log.read_text(errors="replace")
        assert log.count("event=outbox_unclean_stop") == 1
        vm.flush()
        db = stored(vm, "hold-site", "hold-gw-01")
        assert not db.doubled
        # nothing it held on disk is lost: every alarm event it journalled is stored
        journal = gw.journal_events()
        assert journal and set(journal) <= set(db.alarm_seqs)
        # its later telemetry is stored, and of the killed process's only what it held in
        # memory may be missing — from its last `telemetry_hold` seconds
        # every series of the point, whatever the sample's quality: a poll that timed out on a
        # loaded machine gives a bad-quality sample, stored in a series of its own
        times = {t for (point, _q, _f), ts in db.series.items() if point == "th-1.temperature"
                 for t in ts}

        def kept(b: TelemetryBatch) -> bool:
            return all((b.t0 + dt) // 10**6 in times for point, _v, dt, _q in b.samples
                       if point == "th-1.temperature")

        assert all(kept(b) for b in restarted), [  # what is missing, if anything
            (b.dseq, b.t0, [(dt, q) for p, _v, dt, q in b.samples if p == "th-1.temperature"])
            for b in restarted if not kept(b)]
        lost = [b for b in before if not kept(b)]
        assert all(killed_ns - b.t0 <= HOLD_S * 1e9 for b in lost)
