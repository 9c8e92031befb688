"""The rings of a recorder share their open chunks' steps and flags copy-on-write
(gateway/recorder/lines.py): whatever the points do — read in one block at one time, apart,
some left out of a read, gaps past 32 s and 24 days, a clock stepped back, other values and
qualities —, each ring seals and reads back exactly what a ring of its own fed the same
samples does (the sealed bytes, the samples, frozen copies); and the rings of a block read
hold one steps line and one flags line between them."""

from __future__ import annotations

import math
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.field.sample import Quality, Sample, Value
from gateway.recorder.bookkeeping import live_span
from gateway.recorder.ring import CHUNK, FlightRecorder, PointRing, Recorded

T0 = 1_700_000_000_000_000_000
MS = 1_000_000

POLLS = st.sampled_from([1000, 1000, 998, 1003])
"""ms from one read of a block to the next: the poll, with jitter."""
GAPS = st.sampled_from([0, 1, 40_000, -5_000, 30 * 86_400_000])
"""Now and then: the same ms, a step past what 2 bytes hold, a clock stepped back, a month."""
VALUES = st.sampled_from([22.83, 22.84, 1e300, math.nan, 7, True, False, None, "fault"])
QUALITIES = st.sampled_from([Quality.GOOD, Quality.GOOD, Quality.GOOD, Quality.INVALID,
                             Quality.COMM_ERROR])


def key(sample: Recorded) -> tuple[int, object, Quality]:
    value = sample.value
    bits = struct.pack("<d", value) if type(value) is float else value  # nan, -0.0
    return sample.ts, (type(value), bits), sample.quality


def sealed(ring: PointRing) -> bytes:
    return bytes(ring._data[slice(*live_span(ring))])


@st.composite
def reads(draw: st.DrawFn) -> list[list[Sample]]:
    """Batches of block reads: each block's points at one time, some left out, some with a
    value or quality of their own."""
    blocks = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    names = [[f"b{b}.p{i}" for i in range(size)] for b, size in enumerate(blocks)]
    times = [T0 + b * 7 * MS for b in range(len(blocks))]
    batches = []
    count = draw(st.one_of(st.integers(1, 40), st.integers(CHUNK - 3, 3 * CHUNK + 20)))
    gaps = draw(st.dictionaries(st.integers(0, count), GAPS, max_size=3))
    for n in range(count):
        batch: list[Sample] = []
        for b in draw(st.permutations(range(len(blocks)))):
            times[b] += gaps.get(n, draw(POLLS)) * MS + 123
            odd = draw(st.sampled_from([None, None, None, 0, len(names[b]) - 1]))
            for i, name in enumerate(names[b]):
                if odd == i and draw(st.booleans()):
                    continue  # left out of this read
                value: Value = 20.5
                quality = Quality.GOOD
                if odd == i:
                    value, quality = draw(VALUES), draw(QUALITIES)
                batch.append(Sample(name, value, times[b], quality))
        batches.append(batch)
    return batches


@settings(max_examples=80, deadline=None)
@given(batches=reads(), window_s=st.sampled_from([60.0, 900.0]), frozen_at=st.integers(0, 400))
def test_shared_rings_keep_what_rings_of_their_own_keep(batches: list[list[Sample]],
                                                        window_s: float, frozen_at: int) -> None:
    recorder = FlightRecorder(window_s)
    alone: dict[str, PointRing] = {}
    copies: list[tuple[PointRing, PointRing]] = []
    for n, batch in enumerate(batches):
        recorder.record(batch)
        for point, value, ts, quality in batch:
            ring = alone.get(point)
            if ring is None:
                ring = alone[point] = PointRing(window_s, recorder.capacity(point))
            ring.append(ts, value, quality)
        if n == frozen_at:
            copies = [(recorder.rings[p].frozen(), ring.frozen()) for p, ring in alone.items()]
    for point, ring in alone.items():
        shared = recorder.rings[point]
        assert sealed(shared) == sealed(ring)
        assert shared.chunk_index() == ring.chunk_index()
        assert list(map(key, shared.samples())) == list(map(key, ring.samples()))
    for shared_copy, own_copy in copies:
        assert list(map(key, shared_copy.samples())) == list(map(key, own_copy.samples()))


def test_the_rings_of_a_block_read_share_one_steps_line_and_one_flags_line() -> None:
    """Ten devices of two 100-register reads each, every read at its own time (0-30 ms of
    jitter) for three chunks and a half: after every second, the 2,000 rings hold one steps
    line per read between them, and at most as many flags lines (20 × 128 × 3 bytes, not
    2,000 × 128 × 3)."""
    recorder = FlightRecorder(900.0)
    names = [[f"d{d}.r{r}" for r in range(b * 100, b * 100 + 100)] for d in range(10)
             for b in range(2)]
    for second in range(int(3.5 * CHUNK)):
        batch = []
        for read, points in enumerate(names):
            ts = T0 + second * 1000 * MS + (second * 7 + read * 13) % 31 * MS
            batch += [Sample(point, 22.0 + i / 100, ts, Quality.GOOD)
                      for i, point in enumerate(points)]
        recorder.record(batch)
        rings = recorder.rings.values()
        assert len({id(ring._steps) for ring in rings}) <= len(names)
        assert len({id(ring._flags) for ring in rings}) <= len(names)
    lines = {id(line): line for ring in rings for line in (ring._steps, ring._flags)}
    assert sum(CHUNK * line.itemsize for line in lines.values()) <= len(names) * CHUNK * 3
