"""A ring's store of sealed chunks is reserved at its `PROBE`th sample (a share of its
estimate), made to measure at its first seal and made anew only when a later chunk does not
fit (gateway/recorder/ring.py `_store`): whatever the values, paces, gaps, windows and caps,
the store holds, byte for byte, the chunks the codec makes of the samples (the reference ring
of tests/recorder/test_ring_narrow.py, which seals each chunk with `encode_steps` of its
doubles) that the window and the cap keep, oldest first — what the store reserved at the
probe and topped up at the first seal held before — and from its first seal on it is never
longer than a window of a chunk it was made for (+ `STORE_MARGIN`) or 1/16 over the most its
live chunks and a new one took."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.field.sample import Quality, Value
from gateway.recorder.bookkeeping import live_span
from gateway.recorder.chunk import Sealed
from gateway.recorder.open_chunk import STORE_MARGIN, STORE_STEP, store_bytes
from gateway.recorder.ring import CHUNK, PROBE, PointRing
from tests.recorder.test_ring_narrow import DoublesRing, runs, sealed_blobs

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


class Kept:
    """The chunks a ring keeps by its rules (blob, first and last ms), and the most its store
    may be: a window of the chunk that came to an empty ring (+ `STORE_MARGIN`), or 1/16
    over what its live chunks and a new one took."""

    def __init__(self, window_s: float, max_samples: int) -> None:
        self.window_ms = int(window_s * 1000)
        self.max_samples = max(max_samples, 2 * CHUNK)
        self.chunks: list[tuple[Sealed, int, int]] = []
        self.bound = 0

    def seal(self, blob: Sealed, first: int, last: int) -> None:
        while self.chunks and (self.chunks[0][2] < last - self.window_ms
                               or (len(self.chunks) + 1) * CHUNK > self.max_samples):
            self.chunks.pop(0)
        if not self.chunks:
            self.bound = max(self.bound, store_bytes(len(blob.body), last - first, self.window_ms,
                                                     self.max_samples, STORE_MARGIN))
        self.chunks.append((blob, first, last))
        need = sum(len(chunk.body) for chunk, _, _ in self.chunks)
        self.bound = max(self.bound, need + need // STORE_STEP)


@settings(max_examples=120, deadline=None)
@given(values=runs(), paces=st.lists(st.sampled_from([50, 1000, 1000, 10_000, 400_000]),
                                     min_size=1, max_size=4),
       window_s=st.sampled_from([60.0, 300.0, 900.0]), cap=st.integers(0, 10 * CHUNK),
       seed=st.integers(0, 2**32), repeat=st.integers(1, 4))
def test_the_store_keeps_the_codecs_chunks_bit_for_bit_within_its_bound(
        values: list[Value], paces: list[int], window_s: float, cap: int, seed: int,
        repeat: int) -> None:
    rng = random.Random(seed)
    ring = PointRing(window_s, cap)
    reference = DoublesRing()
    kept = Kept(window_s, cap)
    ts, sealed = T0, 0
    for i, value in enumerate(values * repeat):
        pace = paces[i * len(paces) // (len(values) * repeat)]  # (the pace changes in runs)
        ts += (pace + rng.randint(0, pace // 30)) * MS
        ring.append(ts, value, Quality.GOOD)
        reference.append(ts, value, Quality.GOOD)
        if len(reference.blobs) > sealed:
            sealed += 1
            ms = reference.ms[-CHUNK:]
            kept.seal(reference.blobs[-1], ms[0], ms[-1])
            assert list(sealed_blobs(ring)) == [blob for blob, _, _ in kept.chunks]
            assert bytes(ring._data[slice(*live_span(ring))]) == b"".join(
                blob.body for blob, _, _ in kept.chunks)
            assert list(ring.chunk_index()) == [
                x for blob, first, last in kept.chunks for x in (len(blob.body), first, last)]
            assert len(ring._data) <= kept.bound, (len(ring._data), kept.bound)
    assert [r.ts // MS for r in ring.frozen().samples()] == [r.ts // MS for r in ring.samples()]


def register(rng: random.Random, settled: bool) -> float:
    return (2250 + round(rng.gauss(0, 2 if settled else 400))) / 100


def test_a_ring_whose_first_seconds_are_noisier_keeps_a_window_of_its_first_chunk() -> None:
    """A register that settles after its first seconds: its `PROBE` first samples deflate
    far worse than its first chunk, so the probe reserves more than a window of that chunk
    (even as a share of its estimate); the first seal makes the store a window of the chunk
    + 1/16 (the store reserved at the probe was kept as long as it held a window of the first
    chunk: 1.5 windows here), and it holds still through a window."""
    rng = random.Random(3)
    ring = PointRing(900.0, int(900 * 1.25) + CHUNK)
    for i in range(900 + CHUNK):
        ring.append(T0 + i * 1000 * MS + rng.randint(0, 30) * MS,
                    register(rng, settled=i >= PROBE), Quality.GOOD)
        if i + 1 == PROBE:
            reserved = len(ring._data)
        if i + 1 == CHUNK:
            length, first, last = ring.chunk_index()
            made = len(ring._data)
            window = store_bytes(length, last - first, ring.window_ms, ring.max_samples, 1.0)
    assert reserved > window * 5 // 4
    assert made == store_bytes(length, last - first, ring.window_ms, ring.max_samples,
                               STORE_MARGIN) <= window * 17 // 16 + 1
    assert len(ring._data) == made and ring.sealed >= 900 - CHUNK
