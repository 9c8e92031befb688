"""A ring's sealed chunks' bookkeeping keeps their times in 4 bytes relative to an epoch
(gateway/recorder/bookkeeping.py): a ring polled every second, one stepped by 56 years, one
whose chunks come two days apart for a month keep 4 bytes a field and give every sample back
at its time; a ring whose live chunks span more than 24 days keeps 8 and gives them back too."""

from __future__ import annotations

from gateway.field.sample import Quality
from gateway.recorder.ring import CHUNK, PointRing

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
DAY_MS = 86_400_000


def feed(ring: PointRing, chunks: int, gap_ms: int) -> list[int]:
    """`chunks` chunks of 1 s samples, `gap_ms` from each chunk to the next; the stamps (ns)."""
    stamps = []
    ts = T0
    for chunk in range(chunks):
        for i in range(CHUNK):
            ts += (gap_ms if chunk and not i else 1000) * MS
            ring.append(ts, float(i % 7), Quality.GOOD)
            stamps.append(ts)
    return stamps


def test_a_ring_polled_every_second_keeps_4_bytes_a_field() -> None:
    ring = PointRing(900.0, 1253)
    stamps = feed(ring, 12, 1000)
    assert ring._index.itemsize == 4
    index = ring.chunk_index()
    kept = stamps[-len(ring):]
    assert list(index[1::3]) == [t // MS for t in kept[::CHUNK]]
    assert list(index[2::3]) == [t // MS for t in kept[CHUNK - 1::CHUNK]]
    assert [r.ts for r in ring.samples()] == kept


def test_a_clock_step_of_56_years_moves_the_epoch_alone() -> None:
    ring = PointRing(900.0, 1253)
    stamps = feed(ring, 4, 1000)
    step = 56 * 365 * DAY_MS  # (a board that booted in 1970, then heard NTP)
    before = ring._index.tolist()
    ring.shift(step)
    assert ring._index.tolist() == before and ring._index.itemsize == 4
    assert [r.ts for r in ring.samples()] == [t + step * MS for t in stamps]
    ring.append(stamps[-1] + (step + 1000) * MS, 1.0, Quality.GOOD)
    assert ring.samples()[-1].ts == stamps[-1] + (step + 1000) * MS


def test_chunks_two_days_apart_for_a_month_move_the_epoch() -> None:
    """A window of a day: one chunk live at a time, each 2 days after the one before."""
    ring = PointRing(86_400.0, 10**6)
    stamps = feed(ring, 16, 2 * DAY_MS)
    assert ring._index.itemsize == 4 and ring._epoch > T0 // MS + 24 * DAY_MS
    assert [r.ts for r in ring.samples()] == stamps[-len(ring):]


def test_live_chunks_more_than_24_days_apart_keep_8_bytes() -> None:
    ring = PointRing(10.0**7, 10**9)
    stamps = feed(ring, 16, 2 * DAY_MS)
    assert ring._index.itemsize == 8
    assert [r.ts for r in ring.samples()] == stamps
    copy = ring.frozen()
    assert [r.ts for r in copy.samples()] == stamps
