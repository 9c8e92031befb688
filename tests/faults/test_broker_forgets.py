"""Issue 10's fault test: a broker that forgets. Mosquitto runs with `persistence false` (as in
the demo) and is SIGKILLed — not stopped — while the ingest is away for 2 minutes and alarms
are raised and cleared; the broker restarts empty (no sessions, no queued messages, no
retained acks) and the ingest comes back later. A PUBACK therefore proves nothing: everything
the broker acknowledged while the ingest was away is gone. With end-to-end acknowledgement
(the default `uplink.delivery: ingest`) the gateway keeps each entry until the ingest's
watermark covers it and publishes again what it does not cover, so every telemetry sequence
number and every journalled alarm event ends up in the database exactly once.

Real processes as in test_uplink_faults.py: `roomwarden simulate` and `roomwarden run` as
children (≈ 1,600 points/s), a mosquitto without persistence, VictoriaMetrics without
deduplication, the ingest in this process (stopped and started again with the same stores).
The observer (a plain subscriber that resubscribes after the broker's restart) records what
the broker delivered; the gateway re-sends whatever the ingest has not confirmed, so the
observer sees every batch at least once.

Timeline (t = 0 at the first batch): ingest stopped at 5 s; h2 alarm raised at 10 s; broker
SIGKILLed at 20 s and started, empty, at 23 s; alarm cleared at 30 s, raised at 60 s, cleared
at 90 s; ingest started again at 125 s (2 minutes away); then the backlog drains while
production goes on, and the gateway stops with SIGTERM.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ingest.service import IngestService
from tests.faults.harness import (
    GatewayProcess,
    Observer,
    Run,
    Simulator,
    broker_and_database,
    check_exactly_once,
    stop_all,
    stored,
)
from tests.faults.test_uplink_faults import H2, SITE_CONFIG, ingest_settings
from tests.fixtures.services import Broker, Victoria, wait_for

INGEST_AWAY = 120.0
REPLAY = {"messages_per_s": 1000, "bytes_per_s": 4_000_000}
"""The backlog's replay pace (uplink.replay): the ~7,400 batches the 2-minute outage leaves took
37 s to drain at the fault site's 200/s; nothing asserted depends on the pace. Only here: in
test_uplink_faults, which asserts the production rate, faster replay bursts would compete with
the gateway's polling for the CPU."""


@pytest.fixture
def services(tmp_path: Path) -> Iterator[tuple[Broker, Victoria]]:
    with broker_and_database(tmp_path, persistent=False, max_queued_messages=1_000_000) as both:
        yield both


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkilled_broker_without_persistence_while_the_ingest_is_away_loses_nothing(
        tmp_path: Path, services: tuple[Broker, Victoria]) -> None:
    broker, vm = services
    began = time.monotonic()
    sim = Simulator(SITE_CONFIG, tmp_path)
    sim.start()
    gw = GatewayProcess(sim.written, broker.port, tmp_path, replay=REPLAY)
    observer = Observer(broker.port)
    settings = ingest_settings(tmp_path, broker, vm)
    ingest = IngestService(settings)
    ingest.start()
    away: dict[str, int] = {}
    try:
        wait_for(lambda: bool(ingest.status()["subscribed"]), 15, "the ingest's SUBACK")
        sim.command(cmd="set", point=H2, signal=1.0)
        gw.start()
        run = Run(gw, observer, lambda: ingest)
        run.begin(began)
        at = run.at

        at(5, "ingest stop", ingest.stop)
        at(10, "h2 to 40 %LEL", lambda: sim.command(cmd="set", point=H2, signal=40.0))
        at(20, "broker SIGKILL", broker.kill)
        at(23, "broker start (empty)", broker.start)
        at(30, "h2 back to 1 %LEL", lambda: sim.command(cmd="set", point=H2, signal=1.0))
        at(60, "h2 to 45 %LEL", lambda: sim.command(cmd="set", point=H2, signal=45.0))
        at(90, "h2 back to 1 %LEL", lambda: sim.command(cmd="set", point=H2, signal=1.0))
        at(5 + INGEST_AWAY - 1, "before the ingest returns",
           lambda: away.update(depth=gw.outbox_depth()))
        ingest = IngestService(settings)  # same stores; the broker has no session for it
        at(5 + INGEST_AWAY, "ingest start", ingest.start)
        at(5 + INGEST_AWAY + 5, "backlog drained",
           lambda: wait_for(lambda: gw.outbox_depth() < 300, 150,
                            "the gateway's backlog to drain", 0.5))
        at(0, "gateway stop (SIGTERM)", lambda: gw.signal(signal.SIGTERM))

        unsent_batches, unsent_alarms = run.unsent()
        run.settle()
        seen = observer.observed()
        db = stored(vm, gw.site, gw.gateway_id)
        journal = gw.journal_events()
    finally:
        ingest.stop()
        observer.close()
        stop_all(gw, sim)

    produced = seen.points() + sum(len(b.samples) for b in unsent_batches.values())
    print(f"\nproduced {produced} points in {seen.span_s():.1f}s in "
          f"{len(set(seen.batches) | set(unsent_batches))} batches; outbox before the ingest "
          f"returned: {away.get('depth')}; observer deliveries {seen.deliveries}; database "
          f"{sum(len(t) for t in db.series.values())} points; alarm events: journal "
          f"{len(journal)}, database {len(db.alarm_seqs)}, still in the outbox "
          f"{len(unsent_alarms)}; run {time.monotonic() - began:.0f}s", flush=True)
    assert seen.span_s() >= INGEST_AWAY
    assert not seen.conflicting, f"one seq, two payloads: {seen.conflicting[:10]}"
    # what the broker acknowledged while the ingest was away stayed in the outbox
    assert (away.get("depth") or 0) > 1000
    check_exactly_once(seen, unsent_batches, unsent_alarms, db, journal)
    assert int(ingest.status()["dead_lettered"]) == 0
