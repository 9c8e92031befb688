"""The delivery tracker's bookkeeping stays bounded while the broker is up and the ingest is
down (audit D4): before, every PUBACK — each re-send's too — left an entry in the heap by dseq
that only an ack ever took out, and the attempt counts of entries the budget dropped were never
forgotten (~190 MB a day at the audit's re-send rate)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from gateway.clock import ManualClock
from gateway.contract.wire import MessageKind
from gateway.uplink.delivery import DeliveryTracker, Sent

T = MessageKind.TELEMETRY


def sent(outbox_id: int) -> Sent:
    return Sent(outbox_id, T, outbox_id, 0)  # outbox id n carries dseq n


def sizes(tracker: DeliveryTracker) -> dict[str, int]:
    return {"awaiting": tracker.awaiting, "by_dseq": len(tracker._by_dseq),
            "by_due": len(tracker._by_due), "attempts": len(tracker._attempts)}


def forget_after(tracker: DeliveryTracker) -> float:
    return getattr(tracker, "forget_after", 2 * tracker.max_timeout)


def handed_back(tracker: DeliveryTracker) -> dict[int, float]:
    """Ids handed back for re-sending and not PUBACKed since (what else may keep a count)."""
    return getattr(tracker, "_handed_back", {})


def outage(tracker: DeliveryTracker, clock: ManualClock, seconds: int, held: int,
           start: int = 0, tell: bool = False) -> int:
    """One new batch a second; the outbox keeps the newest `held` (the budget drops the
    rest); what times out is published again and PUBACKed at once if still held; no ack."""
    newest = start
    for _ in range(seconds):
        clock.advance(1)
        newest += 1
        tracker.on_puback(sent(newest), 0)
        if tell and hasattr(tracker, "forget"):
            tracker.forget([newest - held])
        for outbox_id in tracker.due():
            if outbox_id > newest - held:  # the outbox still has it
                tracker.on_puback(sent(outbox_id), 0)
    return newest


def test_hours_of_resends_without_an_ack_stay_bounded() -> None:
    clock = ManualClock()
    tracker = DeliveryTracker(clock, mode="ingest", ack_timeout=30, max_timeout=300)
    held = 2000
    newest = outage(tracker, clock, 3600, held)
    first = sizes(tracker)
    for _ in range(5):
        newest = outage(tracker, clock, 3600, held, newest)
        now = sizes(tracker)
        # what waits: what the outbox holds, plus what it dropped since the last deadline
        assert now["awaiting"] <= held + tracker.away_timeout
        # the heaps: no more stale entries than live ones (+64)
        assert now["by_dseq"] <= 2 * now["awaiting"] + 64
        assert now["by_due"] <= 2 * now["awaiting"] + 64
        # attempt counts: what waits, plus what was re-sent within `forget_after` and gone
        assert now["attempts"] <= now["awaiting"] + forget_after(tracker)
        assert now["by_dseq"] <= 2 * first["by_dseq"]  # flat, not linear in time
    assert tracker.resent > 100_000  # (many resend cycles happened)


def test_told_of_drops_it_keeps_no_more_than_the_outbox_holds() -> None:
    clock = ManualClock()
    tracker = DeliveryTracker(clock, mode="ingest", ack_timeout=30, max_timeout=300)
    held = 500
    outage(tracker, clock, 3 * 3600, held, tell=True)
    now = sizes(tracker)
    assert now["awaiting"] <= held and now["attempts"] <= held
    assert now["by_dseq"] <= 2 * held + 64 and now["by_due"] <= 2 * held + 64


def test_attempt_counts_survive_a_broker_outage_and_a_reconnect() -> None:
    """The back-off goes on across sessions (nothing is forgotten while no PUBACK comes)."""
    clock = ManualClock()
    tracker = DeliveryTracker(clock, mode="ingest", ack_timeout=10, max_timeout=80)
    tracker.on_puback(sent(1), 0)
    clock.advance(10)
    assert tracker.due() == [1]
    tracker.on_puback(sent(1), 0)  # second attempt: waits 20 s
    clock.advance(20)
    assert tracker.due() == [1]  # re-sent; the broker goes away before its PUBACK
    clock.advance(3600)  # an hour without a broker
    tracker.new_session()
    clock.advance(1)
    tracker.on_puback(sent(1), 0)  # handed out again: the third attempt waits 40 s
    assert tracker.next_due() == clock.monotonic() + 40


OPS = st.lists(st.one_of(
    st.tuples(st.just("puback"), st.integers(1, 30), st.sampled_from([0, 16])),
    st.tuples(st.just("ack"), st.integers(0, 30), st.integers(0, 30)),
    st.tuples(st.just("advance"), st.floats(0, 100), st.just(0)),
    st.tuples(st.just("due"), st.just(0), st.just(0)),
    st.tuples(st.just("resend"), st.just(0), st.just(0)),
    st.tuples(st.just("drop"), st.integers(1, 30), st.just(0)),
    st.tuples(st.just("session"), st.just(0), st.just(0)),
), max_size=80)


@hsettings(max_examples=300, deadline=None)
@given(OPS)
def test_any_sequence_keeps_the_books_and_forgets_what_is_gone(
        ops: list[tuple[str, float, int]]) -> None:
    """PUBACKs, acks, timeouts, re-sends of what was handed back, budget drops (the entry is
    never PUBACKed again) and reconnects in any order: the existing invariants hold (the
    watermark never goes back, nothing covered still waits, an entry is handed back at most
    once per PUBACK), the heaps hold at most twice what waits (+64), attempt counts only for
    what waits or was handed back; and once the deadlines and `forget_after` have passed
    with PUBACK traffic, nothing is kept about an entry the outbox dropped."""
    clock = ManualClock()
    tracker = DeliveryTracker(clock, mode="ingest", ack_timeout=10, max_timeout=40,
                              gap_grace=2)
    waiting: set[int] = set()  # ids with a PUBACK not yet answered by a re-send or cover
    handed: set[int] = set()  # handed back for re-sending, not PUBACKed again yet
    dropped: set[int] = set()
    covered = 0

    def again(ids: list[int]) -> None:
        nonlocal waiting
        assert len(ids) == len(set(ids)) and set(ids) <= waiting
        waiting -= set(ids)
        handed.update(ids)

    for op, a, b in ops:
        if op == "puback" and int(a) not in dropped:
            n = int(a)
            handed.discard(n)
            if not tracker.on_puback(sent(n), b) and n > tracker.covered:
                waiting.add(n)
        elif op == "ack":
            upto = int(a)
            again(tracker.on_ack(upto=upto, highest=max(upto, b)))
        elif op == "advance":
            clock.advance(a)
        elif op == "due":
            again(tracker.due())
        elif op == "resend":  # the outbox publishes what was handed back; PUBACKs come
            for n in sorted(handed - dropped):
                handed.discard(n)
                if not tracker.on_puback(sent(n), 0) and n > tracker.covered:
                    waiting.add(n)
        elif op == "drop":
            dropped.add(int(a))
        elif op == "session":
            tracker.new_session()
            handed |= waiting
            waiting = set()
        assert tracker.covered >= covered
        covered = tracker.covered
        waiting = {n for n in waiting if n > covered}
        assert tracker.awaiting == len(waiting)
        assert len(tracker._by_dseq) <= 2 * tracker.awaiting + 64
        assert len(tracker._by_due) <= 2 * tracker.awaiting + 64
        assert set(tracker._attempts) <= set(tracker._awaiting) | set(handed_back(tracker))
    # the outbox's dropped entries are never PUBACKed again: after the deadlines and
    # `forget_after` with PUBACK traffic, nothing about them is left
    clock.advance(tracker.max_timeout + 1)
    tracker.due()
    clock.advance(forget_after(tracker) + 1)
    tracker.on_puback(sent(31), 0)
    kept = set(tracker._awaiting) | set(tracker._attempts) | set(handed_back(tracker))
    assert not kept & (dropped - {31})
