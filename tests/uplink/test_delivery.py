"""End-to-end acknowledgement (issue 10): the delivery tracker on its own (pure, manual clock),
then a real uplink, Mosquitto, ingest and VictoriaMetrics where the broker answers "no
matching subscribers" for a while — nothing may leave the outbox before the ingest stored it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from paho.mqtt import publish

from gateway.clock import ManualClock, SystemClock
from gateway.contract.wire import DeliveryAck, GatewayState, MessageKind, decode, encode
from gateway.ingest.service import IngestService
from gateway.uplink.delivery import NO_MATCHING_SUBSCRIBERS, DeliveryTracker, Sent
from gateway.uplink.publisher import Uplink
from gateway.uplink.settings import UplinkSettings
from tests.faults.harness import stored
from tests.fixtures.services import Broker, Subscriber, Victoria
from tests.ingest.test_service import make_settings
from tests.uplink.test_publisher import GW, POINTS, PREFIX, SITE, event, samples, settings, until

T, A, S = MessageKind.TELEMETRY, MessageKind.ALARM, MessageKind.STATE


def sent(outbox_id: int, dseq: int | None, kind: MessageKind = T) -> Sent:
    return Sent(outbox_id, kind, dseq, 0)


def test_puback_only_marks_in_flight_and_the_watermark_delivers() -> None:
    clock = ManualClock()
    tracker = DeliveryTracker(clock, mode="ingest", ack_timeout=10)
    assert tracker.on_puback(sent(1, None, S), 0)  # a snapshot leaves on PUBACK
    assert not tracker.on_puback(sent(2, 1), 0)
    assert not tracker.on_puback(sent(3, 2, A), NO_MATCHING_SUBSCRIBERS)
    assert tracker.on_puback(sent(4, None), 0)  # stored before numbering: leaves on PUBACK
    assert tracker.awaiting == 2 and tracker.next_due() == clock.monotonic() + 10
    assert tracker.on_ack(upto=1, highest=1) == []
    assert tracker.awaiting == 1 and tracker.covered == 1 and tracker.delivered == 1
    assert tracker.on_ack(upto=0, highest=0) == []  # an older retained ack never goes back
    assert tracker.covered == 1
    assert not tracker.on_puback(sent(5, 1), 0)  # a duplicate already covered: no new wait
    assert tracker.awaiting == 1


def test_timeouts_resend_and_back_off() -> None:
    clock = ManualClock()
    tracker = DeliveryTracker(clock, mode="ingest", ack_timeout=10, max_timeout=25)
    tracker.on_puback(sent(1, 1), 0)
    clock.advance(9.9)
    assert tracker.due() == []
    clock.advance(0.1)
    assert tracker.due() == [1] and tracker.resent == 1 and tracker.awaiting == 0
    tracker.on_puback(sent(1, 1), 0)  # published again: now waits twice as long
    clock.advance(19.9)
    assert tracker.due() == []
    clock.advance(0.1)
    assert tracker.due() == [1]
    tracker.on_puback(sent(1, 1), 0)  # then at most max_timeout — but nothing was
    assert tracker.next_due() == clock.monotonic() + 40  # confirmed for 30 s: the ingest is
    # away, and the back-off goes on doubling (to away_timeout)


def test_how_long_nothing_was_confirmed_while_entries_wait() -> None:
    clock = ManualClock()
    tracker = DeliveryTracker(clock, mode="ingest", ack_timeout=10)
    assert tracker.unconfirmed_for() == 0.0
    tracker.on_puback(sent(1, 1), 0)
    clock.advance(7)
    tracker.on_puback(sent(2, 2), 0)
    clock.advance(5)
    assert tracker.unconfirmed_for() == 12.0  # since the first began to wait
    tracker.due()  # handed back for re-sending: still unconfirmed
    assert tracker.unconfirmed_for() == 12.0
    tracker.on_puback(sent(1, 1), 0)
    tracker.on_ack(1, 1)  # the watermark moves: counted from here
    clock.advance(3)
    assert tracker.unconfirmed_for() == 3.0
    tracker.on_ack(1, 1)  # the same watermark again is no progress
    clock.advance(1)
    assert tracker.unconfirmed_for() == 4.0
    tracker.on_puback(sent(2, 2), 0)
    tracker.on_ack(2, 2)  # everything confirmed
    assert tracker.awaiting == 0
    clock.advance(50)
    tracker.on_puback(sent(3, 3), 0)  # a new wait starts now, not at the old one
    clock.advance(2)
    assert tracker.unconfirmed_for() == 2.0
    tracker.due()
    clock.advance(20)
    tracker.on_puback(sent(3, 3), 0)  # published again and acknowledged by the broker only
    assert tracker.unconfirmed_for() == 22.0


def test_a_hole_below_what_the_ingest_stored_is_sent_again_at_once() -> None:
    clock = ManualClock()
    tracker = DeliveryTracker(clock, mode="ingest", ack_timeout=30, gap_grace=2)
    for i in range(1, 6):
        tracker.on_puback(sent(i, i), 0)
    clock.advance(2)
    tracker.on_puback(sent(6, 6), 0)
    # the ingest stored 1, 2 and 6: 3..5 went missing (a broker that forgot them)
    assert tracker.on_ack(upto=2, highest=6) == [3, 4, 5]
    assert tracker.awaiting == 1  # 6 still waits for the hole to close
    clock.advance(0.5)
    tracker.on_puback(sent(7, 7), 0)
    assert tracker.on_ack(upto=2, highest=8) == []  # 6 and 7 are too recent to call lost


@pytest.mark.slow
def test_a_long_outage_s_backlog_is_tracked_by_number_and_deadline() -> None:
    """Tens of thousands await after an ingest outage: acks and timeouts touch only what they
    deliver or re-send (heaps by dseq and by deadline), and re-sent or covered entries are
    never reported twice."""
    clock = ManualClock()
    tracker = DeliveryTracker(clock, mode="ingest", ack_timeout=30, gap_grace=2)
    n = 50_000
    for i in range(1, n + 1):
        tracker.on_puback(sent(i, i), 0)
    clock.advance(1)
    assert tracker.on_ack(upto=20_000, highest=20_000) == []
    assert tracker.delivered == 20_000 and tracker.awaiting == n - 20_000
    clock.advance(1)
    holes = tracker.on_ack(upto=20_000, highest=30_001)  # 20,001..30,000 lost
    assert holes == list(range(20_001, 30_001))
    for i in holes:  # published again
        tracker.on_puback(sent(i, i), 0)
    clock.advance(28)
    assert tracker.due() == list(range(30_001, n + 1))  # the first attempt's deadline
    assert tracker.due() == []
    assert tracker.on_ack(upto=30_001, highest=30_001) == []
    assert tracker.awaiting == 0 and tracker.delivered == 30_000  # 30,001 was being re-sent
    assert tracker.next_due() is None


def test_an_entry_published_again_is_tracked_by_its_latest_puback() -> None:
    """The same outbox entry (same dseq) acknowledged by the broker again after a timeout:
    an ack then re-sends it once and covers it once (the found-in-the-fault-test bug: the
    entry's two PUBACKs both looked current, so an ack failed half-way and covered nothing)."""
    clock = ManualClock()
    tracker = DeliveryTracker(clock, mode="ingest", ack_timeout=30, gap_grace=2)
    for i in range(1, 11):
        tracker.on_puback(sent(i, i), 0)
    clock.advance(30)
    assert tracker.due() == list(range(1, 11))
    for i in range(1, 11):
        tracker.on_puback(sent(i, i), 0)
    clock.advance(0)
    tracker.on_puback(sent(5, 5), 0)  # two PUBACKs at one moment: still one entry
    clock.advance(10)
    assert tracker.on_ack(upto=0, highest=20) == list(range(1, 11))
    for i in range(1, 11):
        tracker.on_puback(sent(i, i), 0)
    assert tracker.on_ack(upto=10, highest=10) == []
    assert tracker.awaiting == 0 and tracker.delivered == 10 and tracker.covered == 10
    clock.advance(1000)
    assert tracker.due() == [] and tracker.next_due() is None


def test_puback_mode_keeps_what_nobody_subscribed_to() -> None:
    clock = ManualClock()
    tracker = DeliveryTracker(clock, mode="puback", ack_timeout=5)
    assert tracker.on_puback(sent(1, None), 0)
    assert not tracker.on_puback(sent(2, None), NO_MATCHING_SUBSCRIBERS)
    assert tracker.on_puback(sent(3, None, S), NO_MATCHING_SUBSCRIBERS)  # retained anyway
    clock.advance(5)
    assert tracker.due() == [2]


@contextlib.asynccontextmanager
async def uplink_and_ingest(s: UplinkSettings, tmp_path: Path, broker: Broker,
                            victoria: Victoria, client_id: str,
                            ) -> AsyncIterator[tuple[Uplink, IngestService]]:
    """A running uplink and an ingest made but not started (each test starts it when it
    wants); both stopped afterwards, whatever the test did."""
    up = Uplink(s, SITE, GW, tmp_path / "state", SystemClock(), POINTS)
    task = asyncio.create_task(up.run())
    ingest = IngestService(make_settings(tmp_path / "ingest", broker, victoria,
                                         client_id=client_id))
    try:
        yield up, ingest
    finally:
        with contextlib.suppress(Exception):
            ingest.stop()
        await up.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_no_matching_subscribers_for_a_while_loses_nothing(
        broker: Broker, victoria: Victoria, subscribers: list[Subscriber],
        tmp_path: Path) -> None:
    """MQTT 5: while no ingest subscribes, the broker answers every PUBACK with reason 16 and
    drops the message. The entries stay in the outbox (awaiting the ingest); once the ingest
    is there, they are published again (ack timeout) and stored exactly once; then the
    watermark empties the outbox."""
    s = settings(broker.port, protocol="5", delivery="ingest", ack_timeout="1s")
    async with uplink_and_ingest(s, tmp_path, broker, victoria, "ack-ingest") as (
            up, ingest):
        await until(lambda: up.status().connected, what="connect")
        for i in range(20):
            up.on_samples(samples(i))
            await asyncio.sleep(0.01)
        first = event(1)
        await asyncio.sleep(0.01)  # VictoriaMetrics keeps ms: two events, two timestamps
        up.on_alarm_events([first, event(2)])
        await until(lambda: up.status().published >= 22 + 2, what="published into the void")
        await asyncio.sleep(0.5)
        st = up.status()
        assert st.delivery == "ingest" and st.covered == 0
        assert st.outbox.depth >= 22, "the broker's PUBACK must not remove anything"

        ingest.start()
        await until(lambda: up.status().outbox.depth == 0, timeout=30,
                    what="every entry covered by the ingest's watermark")
        st = up.status()
        assert st.covered == 22 and st.delivered >= 22 and st.resent >= 22
        assert st.awaiting == 0
        acks = Subscriber(broker.port, PREFIX + "ack")  # retained for the next connect
        subscribers.append(acks)
        await until(lambda: len(acks.snapshot()) == 1, what="retained ack")
        ack = decode(acks.snapshot()[0].topic, acks.snapshot()[0].payload)
        assert isinstance(ack, DeliveryAck) and ack.upto == 22 == ack.highest
        assert ack.stream == up.outbox.stream
        state = Subscriber(broker.port, PREFIX + "state")
        subscribers.append(state)
        await until(lambda: len(state.snapshot()) == 1, what="retained state")
        birth = decode(state.snapshot()[0].topic, state.snapshot()[0].payload)
        assert isinstance(birth, GatewayState) and birth.delivery is not None
        assert birth.delivery.mode == "ingest" and birth.delivery.stream == up.outbox.stream

    victoria.flush()
    db = stored(victoria, SITE, GW)
    assert not db.doubled, f"written twice: {db.doubled[:3]}"
    assert sorted(db.alarm_seqs) == [1, 2]
    temperatures = db.series[("th-1.temperature", "good", "value")]
    assert len(temperatures) == len(set(temperatures)) == 20


async def test_what_the_budget_dropped_never_blocks_the_watermark(
        broker: Broker, victoria: Victoria, tmp_path: Path) -> None:
    """While no ingest listens, the outbox fills its (tiny) budget and drops the oldest
    telemetry. When the ingest comes, the numbers the gateway dropped can never arrive: the
    gateway tells its floor in its state and the ingest's watermark moves past the gap, so the
    outbox empties instead of waiting for ever."""
    s = settings(broker.port, protocol="5", delivery="ingest", ack_timeout="1s",
                 outbox={"commit_interval": "200ms", "budget_mb": 0.03})
    async with uplink_and_ingest(s, tmp_path, broker, victoria, "floor-ingest") as (
            up, ingest):
        await until(lambda: up.status().connected, what="connect")
        for i in range(200):
            up.on_samples(samples(i))
            await asyncio.sleep(0.005)
        await until(lambda: up.status().dropped[MessageKind.TELEMETRY] > 20, timeout=20,
                    what="the budget dropping telemetry")
        await until(lambda: up.status().queued == 0, what="committed")
        ingest.start()
        await until(lambda: up.status().outbox.depth == 0, timeout=45,
                    what="the outbox empty although numbers are missing")
        st = up.status()
        assert st.covered == 200 and st.dropped[MessageKind.TELEMETRY] > 20
    victoria.flush()
    db = stored(victoria, SITE, GW)
    assert not db.doubled
    temperatures = db.series[("th-1.temperature", "good", "value")]
    # what was not dropped is stored once (a dropped entry may have reached the ingest before
    # the budget dropped it, while it waited for the watermark)
    assert 200 - st.dropped[MessageKind.TELEMETRY] <= len(set(temperatures)) \
        == len(temperatures) <= 200


OPS = st.lists(st.one_of(
    st.tuples(st.just("puback"), st.integers(1, 30), st.sampled_from([0, 16])),
    st.tuples(st.just("ack"), st.integers(0, 30), st.integers(0, 30)),
    st.tuples(st.just("advance"), st.floats(0, 100), st.just(0)),
    st.tuples(st.just("due"), st.just(0), st.just(0)),
), max_size=60)


@pytest.mark.slow
@hsettings(max_examples=300, deadline=None)
@given(OPS)
def test_any_sequence_keeps_the_books(ops: list[tuple[str, float, int]]) -> None:
    """Whatever PUBACKs, acks and timeouts come in whatever order: nothing raises, the
    watermark never goes back, nothing covered still waits, and an entry is handed back for
    re-sending at most once per PUBACK."""
    clock = ManualClock()
    tracker = DeliveryTracker(clock, mode="ingest", ack_timeout=10, max_timeout=40,
                              gap_grace=2)
    waiting: set[int] = set()  # ids with a PUBACK not yet answered by a re-send or cover
    covered = 0
    for op, a, b in ops:
        if op == "puback":
            n = int(a)  # outbox id n carries dseq n
            if not tracker.on_puback(sent(n, n), b) and n > tracker.covered:
                waiting.add(n)
        elif op == "ack":
            upto = int(a)
            again = tracker.on_ack(upto=upto, highest=max(upto, b))
            assert len(again) == len(set(again)) and set(again) <= waiting
            waiting -= set(again)
        elif op == "advance":
            clock.advance(a)
        else:
            again = tracker.due()
            assert len(again) == len(set(again)) and set(again) <= waiting
            waiting -= set(again)
        assert tracker.covered >= covered
        covered = tracker.covered
        waiting = {n for n in waiting if n > covered}
        assert tracker.awaiting == len(waiting)


async def test_an_ack_beyond_what_the_gateway_gave_is_ignored(
        broker: Broker, victoria: Victoria, subscribers: list[Subscriber],
        tmp_path: Path) -> None:
    """A forged (retained) ack whose watermark is above every number this gateway gave —
    10^12, or 2^63 - 1, which would make its state's floor unrepresentable — would cover every
    message still to come: nothing published again, alarm events included, for good. The
    gateway ignores it; what it publishes next is stored and covered by the real ingest."""
    s = settings(broker.port, protocol="5", delivery="ingest", ack_timeout="1s")
    async with uplink_and_ingest(s, tmp_path, broker, victoria, "forged-ack-ingest") as (
            up, ingest):
        ingest.start()
        await until(lambda: up.status().connected, what="connect")
        for i in range(5):
            up.on_samples(samples(i))
            await asyncio.sleep(0.01)
        await until(lambda: up.status().covered == 5 and up.status().outbox.depth == 0,
                    timeout=30, what="the first five covered")
        for n, forged in enumerate((10**12, 2**63 - 1), start=1):
            ack = DeliveryAck(site=SITE, gateway=GW, ts=1, stream=up.outbox.stream,
                              upto=forged, highest=forged)
            publish.single(PREFIX + "ack", encode(ack), qos=1, retain=True,
                           hostname="127.0.0.1", port=broker.port)
            await until(lambda n=n: up.redelivery.refused_acks >= n,  # type: ignore[misc]
                        what="the forged ack refused")
            assert up.status().covered == 5
        for i in range(5, 10):
            up.on_samples(samples(i))
            await asyncio.sleep(0.01)
        up.on_alarm_events([event(1)])
        await until(lambda: up.status().covered == 11 and up.status().outbox.depth == 0,
                    timeout=30, what="what came after covered by the real ingest")
        state = Subscriber(broker.port, PREFIX + "state")
        subscribers.append(state)
        await until(lambda: len(state.snapshot()) >= 1, what="retained state")
        last = decode(state.snapshot()[-1].topic, state.snapshot()[-1].payload)
        assert isinstance(last, GatewayState) and last.delivery is not None
        assert last.delivery.floor is not None and last.delivery.floor <= 12
    def all_ten() -> bool:  # acknowledged means accepted; a query may lag a moment behind
        victoria.flush()
        return len(stored(victoria, SITE, GW).series[("th-1.temperature", "good",
                                                       "value")]) == 10

    await until(all_ten, timeout=15, what="all ten readings in the database")
