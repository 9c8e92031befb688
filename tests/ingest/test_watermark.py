"""The ingest's acknowledgement watermarks (gateway.ingest.watermark): contiguous per gateway
and outbox stream, holes wait, a gateway's floor skips what it dropped, durable across a
restart, and shared by two instances on one file."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ingest.dedup import SeenKey
from gateway.ingest.watermark import MAX_STREAMS, AckStore, Watermark

G = ("site-1", "gw-1")


def done(stream: int, *seqs: int) -> list[tuple[str, str, int, int]]:
    return [(*G, stream, s) for s in seqs]


def test_the_watermark_is_the_highest_contiguous_number_done(tmp_path: Path) -> None:
    store = AckStore(tmp_path / "acks.sqlite")
    assert store.record(done(7, 1, 2, 3), [], 1) == [Watermark(*G, 7, 3, 3)]
    assert store.record(done(7, 5, 6), [], 2) == [Watermark(*G, 7, 3, 6)]  # 4 is a hole
    assert store.record(done(7, 2), [], 3) == []  # a duplicate moves nothing
    assert store.record(done(7, 4), [], 4) == [Watermark(*G, 7, 6, 6)]  # the hole closes
    assert store.record(done(9, 1), [], 5) == [Watermark(*G, 9, 1, 1)]  # a new stream
    assert store.latest() == [Watermark(*G, 9, 1, 1)]  # the stream heard from last
    store.close()
    again = AckStore(tmp_path / "acks.sqlite")  # durable
    assert again.record(done(7, 7), [], 6) == [Watermark(*G, 7, 7, 7)]
    again.close()


def test_covers_what_is_done_below_and_above_the_watermark(tmp_path: Path) -> None:
    store = AckStore(tmp_path / "acks.sqlite")
    assert not store.covers((*G, 7, 1))  # a stream never heard of
    store.record(done(7, 1, 2, 5), [], 1)  # 3 and 4 are a hole: 5 waits above it
    assert [n for n in range(1, 8) if store.covers((*G, 7, n))] == [1, 2, 5]
    assert not store.covers((*G, 8, 1)) and not store.covers(("site-1", "gw-2", 7, 1))
    store.record(done(7, 3, 4), [], 2)
    assert [n for n in range(1, 8) if store.covers((*G, 7, n))] == [1, 2, 3, 4, 5]
    store.close()


def test_a_gateway_floor_skips_what_its_budget_dropped(tmp_path: Path) -> None:
    store = AckStore(tmp_path / "acks.sqlite")
    store.record(done(7, 1, 2, 10, 11), [], 1)  # 3..9 were dropped by the gateway's outbox
    assert store.record([], [(*G, 7, 10)], 2) == [Watermark(*G, 7, 11, 11)]
    assert store.record([], [(*G, 7, 5)], 3) == []  # an older floor never goes back


def test_two_instances_share_one_file(tmp_path: Path) -> None:
    a, b = AckStore(tmp_path / "acks.sqlite"), AckStore(tmp_path / "acks.sqlite")
    a.record(done(7, 1, 3), [], 1)
    assert b.record(done(7, 2), [], 2) == [Watermark(*G, 7, 3, 3)]
    a.close()
    b.close()


@pytest.mark.slow
@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(1, 60), max_size=10), max_size=12))
def test_any_arrival_order_gives_the_contiguous_prefix(batches: list[list[int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = AckStore(Path(tmp) / "acks.sqlite")
        seen: set[int] = set()
        mark = Watermark(*G, 7, 0, 0)
        for i, batch in enumerate(batches):
            seen.update(batch)
            for moved in store.record(done(7, *batch), [], i):
                mark = moved
        expected = 0
        while expected + 1 in seen:
            expected += 1
        assert mark.upto == expected
        assert mark.highest == (max(seen) if seen else 0)
        store.close()


# --- the central audit: bounds on what one gateway's messages can do -------------------------


def test_a_forged_floor_far_above_a_known_stream_is_ignored(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    """A floor of 10¹² would acknowledge every number the gateway will ever send; the gateway
    refuses such an acknowledgement, so it would never be acknowledged again."""
    store = AckStore(tmp_path / "acks.sqlite")
    store.record(done(7, 1, 2, 3), [], 1)
    assert store.record([], [(*G, 7, 10**12)], 2) == []
    assert store.record(done(7, 2**62), [], 3) == []  # a forged dseq likewise
    assert store.record(done(7, 4), [], 4) == [Watermark(*G, 7, 4, 4)]
    assert "event=ack_number_implausible" in caplog.text
    # a new stream (a wiped outbox, or a wiped ingest store) takes its numbers as they come
    assert store.record(done(8, 50_000_000), [(*G, 8, 50_000_000)], 5) == [
        Watermark(*G, 8, 50_000_000, 50_000_000)]
    store.close()


def test_a_live_floor_far_below_the_watermark_resets_it(tmp_path: Path) -> None:
    """A forged floor within MAX_JUMP moved the watermark past what the gateway gave; its next
    live state, still holding number 203, puts it back, and delivery goes on."""
    store = AckStore(tmp_path / "acks.sqlite")
    store.record(done(7, *range(1, 203)), [], 1)
    assert store.record([], [(*G, 7, 5_000_000)], 2) == [Watermark(*G, 7, 4_999_999, 4_999_999)]
    assert store.record([], [(*G, 7, 203)], 3) == [Watermark(*G, 7, 202, 202)]
    assert store.record(done(7, 203), [], 4) == [Watermark(*G, 7, 203, 203)]
    assert store.record([], [(*G, 7, 150)], 5) == []  # a little below (an ack on its way): kept
    store.close()


def test_a_gateway_keeps_at_most_max_streams_and_latest_is_one_pass(tmp_path: Path) -> None:
    """40,000 streams of one gateway made `latest()` take minutes on the MQTT network thread
    (every reconnect timed out, for the whole fleet, across restarts)."""
    store = AckStore(tmp_path / "acks.sqlite")
    other = ("site-1", "gw-2")
    store.record([(*other, 1, 1)], [], 1)
    for stream in range(1, 2_001):
        store.record(done(stream, 1, 3), [], 10 + stream)  # 3 waits above a hole
    rows = store._db.execute("SELECT COUNT(*) FROM acks WHERE gateway = 'gw-1'").fetchone()[0]
    waiting = store._db.execute("SELECT COUNT(*) FROM above").fetchone()[0]
    assert rows == MAX_STREAMS and waiting == MAX_STREAMS
    assert sorted(store.latest()) == [Watermark(*G, 2_000, 1, 3), Watermark(*other, 1, 1, 1)]
    store.close()


# --- the central audit: a gateway restored from a backup or a cloned SD image ----------------


R = ("site-1", "gw-copy")  # (its own: the reset line is logged at most a minute per gateway)


def ident(seq: int, time: int = 0) -> SeenKey:
    return SeenKey("alarm", *R, seq, 1_700_000_000 * 10**9 + seq * 10**9 + time)


def stored(store: AckStore, stream: int, numbers: range, now: int) -> list[Watermark]:
    return store.record([(*R, stream, n) for n in numbers], [], now,
                        {(*R, stream, n): ident(n) for n in numbers})


def test_a_new_boot_below_the_watermark_resets_it_whatever_the_gap(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The copy left its outbox at 50; the ingest had 100. Its birth state (a new boot, floor
    51) puts the watermark back to 50 at once, logged once with both numbers; a number sent
    again with the identity it was stored with is a duplicate, one with another identity is
    new (and said once: its journal went back too). Durable across a restart."""
    store = AckStore(tmp_path / "acks.sqlite")
    assert store.booted((*R, 7, 1), 1, 1) == []  # a stream not known yet: nothing kept
    stored(store, 7, range(1, 101), 2)
    assert store.booted((*R, 7, 101), 1, 3) == []  # the first boot heard, above: no reset
    assert store.booted((*R, 7, 51), 2, 4) == [Watermark(*R, 7, 50, 50)]
    [line] = [r.getMessage() for r in caplog.records if "ack_watermark_reset" in r.getMessage()]
    assert "stream=7 upto=100 floor=51" in line
    assert store.booted((*R, 7, 51), 2, 5) == []  # the same boot again: nothing
    assert not store.covers((*R, 7, 51)) and store.covers((*R, 7, 50))
    assert store.resent((*R, 7, 60), ident(60)) is True  # stored before: a duplicate
    assert store.resent((*R, 7, 51), ident(51, time=5)) is False  # reused: a new message
    assert store.resent((*R, 7, 52), ident(52, time=5)) is None  # (said once)
    assert store.resent((*R, 7, 101), ident(101)) is None  # above the window
    assert store.resent((*R, 7, 60), None) is None
    store.close()
    again = AckStore(tmp_path / "acks.sqlite")
    assert again.resent((*R, 7, 70), ident(70)) is True  # the window is on disk
    assert again.record([(*R, 7, 51)], [], 6, {(*R, 7, 51): ident(51, time=5)}) == [
        Watermark(*R, 7, 51, 51)]
    assert again.resent((*R, 7, 51), ident(51, time=5)) is True  # the new one, now stored
    assert again.resent((*R, 7, 51), ident(51)) is False
    stored(again, 7, range(52, 101), 7)  # past the old highest: the window closes
    assert again.resent((*R, 7, 60), ident(60)) is None
    assert again.booted((*R, 7, 101), 3, 8) == []  # a restart above the watermark: no reset
    assert again.booted((*R, 7, 101), 2, 9) == []  # (another boot, not below either)
    again.close()


def test_identities_are_kept_from_the_floor_and_at_most_max_sent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.ingest.watermark as watermark

    monkeypatch.setattr(watermark, "MAX_SENT", 30)
    store = AckStore(tmp_path / "acks.sqlite")
    stored(store, 7, range(1, 101), 1)
    kept = [int(r[0]) for r in store._db.execute("SELECT dseq FROM sent ORDER BY dseq")]
    assert kept == list(range(71, 101))
    store.record([], [(*R, 7, 90)], 2)  # the gateway holds nothing below 90
    kept = [int(r[0]) for r in store._db.execute("SELECT dseq FROM sent ORDER BY dseq")]
    assert kept == list(range(90, 101))
    store.close()
