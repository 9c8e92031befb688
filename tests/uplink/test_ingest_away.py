"""The idle audit's uplink findings:

- the broker up, the ingest down (database maintenance; `delivery: ingest` is the default):
  every outbox entry went out again every `max_timeout` (5 minutes), so the re-sends — and the
  gateway's wake-ups — grew with the outage, linearly in what the outbox held: 16 → 28
  wake-ups a second in 5 minutes at 200 points, ~100 re-sends a second after 8 hours. Now,
  once the ingest has confirmed nothing for a whole `max_timeout`, the back-off goes on
  doubling to `away_timeout` (an hour): the rate grows with the logarithm of the outbox, not
  with the outbox. Recovery does not wait for it: the first batch the ingest stores shows every
  older one as a hole, sent again at once;
- the ack-timeout timer was moved on at every PUBACK: with PUBACKs faster than its 0.5 s
  spacing (a batch every 150 ms) a deadline already past was put off for as long as they came;
- two gateways with one client id (a cloned SD card) threw each other out every 2 s for ever:
  a CONNACK reset the reconnect back-off however short the connection. Now only a connection
  that stayed up `STABLE_AFTER` does."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.contract.wire import MessageKind
from gateway.mqtt_client import STABLE_AFTER, Backoff
from gateway.uplink.delivery import DeliveryTracker, Sent
from tests.faults.harness import stored
from tests.fixtures.services import Broker, Victoria
from tests.uplink.test_delivery import uplink_and_ingest
from tests.uplink.test_publisher import GW, SITE, samples, settings, until

T = MessageKind.TELEMETRY


def sent(n: int) -> Sent:
    return Sent(n, T, n, 0)


def outage_hours(tracker: DeliveryTracker, clock: ManualClock, hours: int) -> list[int]:
    """A batch a second, nobody confirms, the outbox keeps everything; re-sends PUBACKed at
    once. The re-sends of each hour."""
    per_hour = []
    n = 0
    for _ in range(hours):
        before = tracker.resent
        for _ in range(3600):
            clock.advance(1)
            n += 1
            tracker.on_puback(sent(n), 0)
            for again in tracker.due():
                tracker.on_puback(sent(again), 0)
        per_hour.append(tracker.resent - before)
    return per_hour


def waits_for(tracker: DeliveryTracker, clock: ManualClock, entry: Sent, *, reason: int,
              attempts: int = 6) -> list[float]:
    """The seconds between an entry's re-sends (it is PUBACKed again at once, nothing else
    happens)."""
    waits = []
    for _ in range(attempts):
        start = clock.monotonic()
        while not tracker.due():
            clock.advance(1)
        waits.append(clock.monotonic() - start)
        tracker.on_puback(entry, reason)
    return waits


def test_a_long_ingest_outage_costs_re_sends_logarithmic_in_the_outbox() -> None:
    clock = ManualClock()
    tracker = DeliveryTracker(clock, mode="ingest", ack_timeout=30, max_timeout=300)
    per_hour = outage_hours(tracker, clock, 8)
    # every entry every 5 minutes was 12 re-sends an hour per entry: ~100 a second in the
    # eighth hour (28,800 entries); doubling on to an hour it is ~ln(28,800) + 1 a second
    assert per_hour[-1] < 3600 * 15, per_hour
    assert per_hour[-1] < 1.3 * per_hour[-2]  # levelling off, not growing with the outbox
    # and when the ingest is back, its first stored batch shows the rest as holes: at once
    clock.advance(5)
    again = tracker.on_ack(upto=0, highest=8 * 3600)
    assert len(again) > 28_000


def test_the_ceiling_is_max_timeout_while_the_ingest_confirms() -> None:
    """An entry the ingest keeps missing while it confirms others (its watermark moves): the
    back-off stops at `max_timeout`, as before; the ingest away, it goes on doubling."""
    clock = ManualClock()
    tracker = DeliveryTracker(clock, mode="ingest", ack_timeout=10, max_timeout=40)
    tracker.on_puback(Sent(1, T, 10_000, 0), 0)  # never stored (dseq far above the others)
    waits = []
    other = 0
    for _ in range(5):
        start = clock.monotonic()
        while not tracker.due():
            clock.advance(1)
            other += 1  # the ingest stores the other entries, one a second
            tracker.on_puback(Sent(100 + other, T, other, 0), 0)
            tracker.on_ack(upto=other, highest=other)
        waits.append(clock.monotonic() - start)
        tracker.on_puback(Sent(1, T, 10_000, 0), 0)
    assert waits == [10, 20, 40, 40, 40]
    away = DeliveryTracker(clock, mode="ingest", ack_timeout=10, max_timeout=40)
    away.on_puback(Sent(1, T, 1, 0), 0)
    waits = waits_for(away, clock, Sent(1, T, 1, 0), reason=0)
    assert waits == [10, 20, 40, 80, 160, 320]


def test_puback_mode_keeps_its_ceiling() -> None:
    """Without the ingest's watermark there are no holes to recover by: what nobody subscribed
    to is tried again at least every `max_timeout`, however long nobody does."""
    clock = ManualClock()
    tracker = DeliveryTracker(clock, mode="puback", ack_timeout=10, max_timeout=40)
    tracker.on_puback(Sent(1, T, None, 0), 16)
    waits = waits_for(tracker, clock, Sent(1, T, None, 0), reason=16)
    assert waits == [10, 20, 40, 40, 40, 40]


def test_only_a_connection_that_lasted_restarts_the_back_off() -> None:
    backoff = Backoff(1, 60, jitter=0)
    waits = []
    for _ in range(6):  # thrown out right after each CONNACK
        backoff.ended(0.5)
        waits.append(backoff.delay())
    assert waits == [1, 2, 4, 8, 16, 32]
    backoff.ended(None)  # no CONNACK at all
    assert backoff.delay() == 60
    backoff.ended(STABLE_AFTER + 1)
    assert backoff.delay() == 1


async def test_timeouts_fire_under_a_steady_stream_of_pubacks_and_nothing_is_lost(
        broker: Broker, victoria: Victoria, tmp_path: Path) -> None:
    """A real uplink, Mosquitto (MQTT 5: no subscriber, reason 16), ingest and
    VictoriaMetrics: batches every 150 ms with the ingest stopped; entries whose ack timeout
    (300 ms) passed are published again although PUBACKs keep coming faster than the timer's
    spacing; when the ingest starts, the outbox empties and every batch is stored once."""
    s = settings(broker.port, protocol="5", delivery="ingest", ack_timeout="300ms")
    async with uplink_and_ingest(s, tmp_path, broker, victoria, "away-ingest") as (
            up, ingest):
        await until(lambda: up.status().connected, what="connect")
        for i in range(30):
            up.on_samples(samples(i))
            await asyncio.sleep(0.15)
        assert up.status().resent > 0, "no timeout fired while PUBACKs kept coming"
        ingest.start()
        await until(lambda: up.status().outbox.depth == 0, timeout=45,
                    what="every entry covered once the ingest is back")
    victoria.flush()
    db = stored(victoria, SITE, GW)
    assert not db.doubled, f"written twice: {db.doubled[:3]}"
    temperatures = db.series[("th-1.temperature", "good", "value")]
    assert len(temperatures) == len(set(temperatures)) == 30


async def test_resends_while_the_ingest_is_away_log_a_line_a_minute(
        broker: Broker, victoria: Victoria, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """The wear audit: with the ingest away every re-send (every 0.5–1 s) was a log line of its
    own, ~100 a minute into journald on the gateway's SD card for the whole outage. A real
    uplink and Mosquitto, the ingest stopped: many re-sends, one line (then one a minute, with
    how many were not logged)."""
    caplog.set_level(logging.INFO, logger="roomwarden.uplink")
    s = settings(broker.port, protocol="5", delivery="ingest", ack_timeout="300ms")
    async with uplink_and_ingest(s, tmp_path, broker, victoria, "away-quiet") as (up, _):
        await until(lambda: up.status().connected, what="connect")
        for i in range(30):
            up.on_samples(samples(i))
            await asyncio.sleep(0.15)
        lines = [r for r in caplog.records if "event=uplink_resend" in r.getMessage()]
        resends = up.status().resent
    assert resends >= 3, resends
    assert len(lines) <= 1, [r.getMessage() for r in lines]  # the filter is per process
