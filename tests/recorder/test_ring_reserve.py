"""A ring reserves its store of sealed chunks at its `PROBE`th sample (seconds after it starts
at 1 s polls, not at its first seal two minutes in): a share of a window of chunks like its
first samples, which its first seal makes to measure — a window of that chunk, + 1/16 — and
the store then holds still through its first window and the chunk after — at 50 ms and 1 s
polls, for a register, a flag and a constant; what the probe reserved is at most a fifth over
what the first seal makes, and for a register or a constant at least 70 % of it (a flag true 1 %
of the time mostly shows no change in its first 16 samples, and its chunk's body is a few dozen
bytes; for a register at 1 s, less: most of the memory is taken
in the ring's first seconds, and the first seal's store fills the blocks the probe's leave
behind; tests/bench/bench_recorder.py measures the process). Not claimed: later
chunks that outgrow it make it anew, 1/16 over what they take (tests/recorder/
test_ring_store.py); a point polled every 10 s or slower (a window of a chunk or two) is made
to measure at its first seal, 21 minutes in, too."""

from __future__ import annotations

import random
import sys

import pytest

from gateway.field.sample import Quality, Value
from gateway.recorder.bookkeeping import live_times
from gateway.recorder.open_chunk import STORE_MARGIN, store_bytes
from gateway.recorder.ring import CHUNK, PROBE, FlightRecorder, PointRing

T0 = 1_700_000_000_000_000_000


def register(rng: random.Random, i: int) -> Value:
    return (2250 + round(rng.gauss(0, 25))) / 100


def flag(rng: random.Random, i: int) -> Value:
    return rng.random() < 0.01


def constant(rng: random.Random, i: int) -> Value:
    return 2


@pytest.mark.parametrize("interval", [0.05, 1.0])
@pytest.mark.parametrize("kind", [register, flag, constant])
def test_the_store_is_reserved_at_the_probe_made_at_the_first_seal_and_holds_still(
        interval: float, kind: object) -> None:
    window = 900.0
    recorder = FlightRecorder(window, interval_of=lambda point: interval)
    rng = random.Random(11)
    step = int(interval * 1e9)
    sizes = []
    for i in range(int(window / interval) + CHUNK):  # a window, and the chunk after it
        jitter = rng.randint(0, int(step * 0.03))
        recorder.record([(  # type: ignore[list-item]
            "d.p", kind(rng, i), T0 + i * step + jitter, Quality.GOOD)])  # type: ignore[operator]
        ring = recorder.rings["d.p"]
        if i + 1 == PROBE - 1:
            assert not ring._data  # nothing reserved before the probe
        if i + 1 >= PROBE:
            sizes.append(len(ring._data))
    reserved, made = sizes[0], sizes[CHUNK - PROBE]
    assert reserved < 1.2 * made and set(sizes) == {reserved, made}, sizes[::500]
    assert kind is flag or reserved > 0.7 * made
    assert sizes[CHUNK - PROBE - 1:CHUNK - PROBE + 1] == [reserved, made]  # at the first seal
    assert ring.sealed >= window / interval - CHUNK  # a window was kept


@pytest.mark.parametrize("interval", [1.0])
def test_a_registers_reservation_is_less_than_its_first_seal_makes(interval: float) -> None:
    rng = random.Random(5)
    step = int(interval * 1e9)
    ring = PointRing(900.0, FlightRecorder(900.0, interval_of=lambda p: interval).capacity("x"))
    for i in range(CHUNK):
        ring.append(T0 + i * step + rng.randint(0, int(step * 0.03)), register(rng, i),
                    Quality.GOOD)
        if i + 1 == PROBE:
            reserved = len(ring._data)
    first_blob, first, last = ring.chunk_index()
    at_first_seal = store_bytes(first_blob, last - first, ring.window_ms, ring.max_samples,
                                STORE_MARGIN)
    assert reserved < len(ring._data) == at_first_seal
    assert reserved >= store_bytes(first_blob, last - first, ring.window_ms, ring.max_samples,
                                   0.8)  # most of it


@pytest.mark.parametrize("interval", [0.05, 1.0, 10.0])
@pytest.mark.parametrize("kind", [register, flag, constant])
def test_nothing_a_ring_holds_grows_after_the_probe(interval: float, kind: object) -> None:
    """The chunks' bookkeeping is reserved at the `PROBE`th sample and never re-allocated
    through a window of seals and the chunk after, at 50 ms, 1 s and 10 s polls; from the
    first seal on (which tops up the store if a window of its chunk does not fit) all a ring
    holds (`live_bytes`: store, bookkeeping, open chunk) keeps one size but for the steps' parts
    (a `bytes` a seal, shared by the rings of a block read: tests/recorder/test_times_shared.py)
    — a flag's store, whose chunks' bodies vary from 14 bytes to a few dozen with its changes,
    grows at most twice, by 1/16 (`STORE_STEP`); the window's sealed chunks stay readable."""
    window = 900.0
    recorder = FlightRecorder(window, interval_of=lambda point: interval)
    rng = random.Random(13)
    step = int(interval * 1e9)
    bookkeeping, sizes = set(), set()
    count = max(int(window / interval), 3 * CHUNK) + CHUNK
    for i in range(count):
        jitter = rng.randint(0, int(step * 0.03))
        recorder.record([(  # type: ignore[list-item]
            "d.p", kind(rng, i), T0 + i * step + jitter, Quality.GOOD)])  # type: ignore[operator]
        ring = recorder.rings["d.p"]
        if i + 1 >= PROBE:
            bookkeeping.add((id(ring._index), len(ring._index)))
        if ring.sealed:
            sizes.add(ring.live_bytes() - sum(map(sys.getsizeof, [  # (the recorder's table:
                *live_times(ring), *ring._parts.containers()])))  # test_times_shared.py)
    assert len(bookkeeping) == 1, bookkeeping
    if kind is flag:
        assert len(sizes) <= 3 and max(sizes) - min(sizes) <= 2 * max(sizes) // 16, sorted(sizes)
    else:
        assert len(sizes) == 1, sorted(sizes)
    assert ring.sealed >= min(window / interval - CHUNK, ring.max_samples - CHUNK)
    assert len(ring.samples()) == len(ring)


def test_a_ring_whose_pace_quickens_grows_its_bookkeeping_and_keeps_its_chunks() -> None:
    """A point polled every 10 s for its first samples, then every 0.5 s (a config change):
    the bookkeeping reserved for the slow pace moves its entries back and grows, and every
    sample of the window is still there, oldest first."""
    ring = PointRing(300.0, 10**9)
    stamps = [T0 + i * 10 * 10**9 for i in range(PROBE)]
    stamps += [stamps[-1] + i * 5 * 10**8 for i in range(1, 12 * CHUNK)]
    for i, ts in enumerate(stamps):
        ring.append(ts, float(i % 7), Quality.GOOD)
        if i + 1 == PROBE:
            reserved = len(ring._index)
    assert len(ring._index) > reserved
    got = ring.samples()
    assert [r.ts for r in got] == sorted(r.ts for r in got) == stamps[-len(got):]
    assert [r.value for r in got] == [float(i % 7) for i in range(len(stamps))][-len(got):]
    assert stamps[-1] - got[0].ts >= 300 * 10**9 - CHUNK * 5 * 10**8
