"""The rings of one block read seal the same steps, and hold one `bytes` of them
(gateway/recorder/chunk.py `encode_times`): a block of 200 registers keeps one steps' part per
chunk, not 200, and reads back every sample's own time; a ring whose steps part from its
block's (a point left out of a read) keeps its own; a clock step moves every chunk's times; a
frozen copy keeps the parts it held."""

from __future__ import annotations

import random

from gateway.field.sample import Quality, Sample
from gateway.recorder.bookkeeping import live_times
from gateway.recorder.ring import CHUNK, FlightRecorder

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def block_reads(recorder: FlightRecorder, blocks: int, points: int, seconds: int,
                left_out: dict[int, str] | None = None, start: int = 0) -> dict[str, list[int]]:
    """Each block's points read at one time a second (a jitter of its own), values moving;
    `left_out`: at that second, that point is not in its block's read. The times each point
    was given."""
    rng = random.Random(5 + start)
    given: dict[str, list[int]] = {}
    for second in range(start, start + seconds):
        batch = []
        for b in range(blocks):
            ts = T0 + second * 1000 * MS + rng.randint(0, 30) * MS + b * 7 * MS
            for i in range(points):
                point = f"d{b}.r{i}"
                if (left_out or {}).get(second) == point:
                    continue
                batch.append(Sample(point, (2250 + rng.randint(-40, 40)) / 100, ts,
                                    Quality.GOOD))
                given.setdefault(point, []).append(ts // MS * MS)
        recorder.record(batch)
    return given


def test_a_blocks_rings_hold_one_steps_part_a_chunk() -> None:
    recorder = FlightRecorder(900.0)
    given = block_reads(recorder, blocks=2, points=200, seconds=3 * CHUNK + 5)
    for b in range(2):
        rings = [recorder.rings[f"d{b}.r{i}"] for i in range(200)]
        parts = [live_times(ring) for ring in rings]
        assert len(parts[0]) == 3
        assert all(len(p) == 3 for p in parts)
        for chunk in range(3):  # one object for the 200 rings
            assert len({id(p[chunk]) for p in parts}) == 1
    ids = {id(part) for ring in recorder.rings.values() for part in live_times(ring)}
    assert len(ids) == 6  # 2 blocks × 3 chunks, not 400 × 3
    for b in range(2):  # and one epoch object a block (bookkeeping.py `_shared_epoch`)
        assert len({id(recorder.rings[f"d{b}.r{i}"]._epoch) for i in range(200)}) == 1
    for point, times in given.items():
        assert [r.ts for r in recorder.samples(point)] == times


def test_what_sharing_saves_is_counted_once() -> None:
    """`nbytes` counts a shared part once: the recorder of a block of 200 holds the rings'
    bytes less 199 of every 200 steps' parts."""
    shared = FlightRecorder(900.0)
    block_reads(shared, blocks=1, points=200, seconds=2 * CHUNK)
    one_part = sum(map(len, live_times(shared.rings["d0.r0"])))
    parts = sum(len(p) for ring in shared.rings.values() for p in live_times(ring))
    assert parts == 200 * one_part > 0
    rings = sum(ring.nbytes() for ring in shared.rings.values())
    assert shared.nbytes() == rings - parts + one_part - 199 * CHUNK * 3  # (lines: steps, flags)


def test_a_point_left_out_of_a_read_keeps_its_own_steps() -> None:
    """r7 misses the read at second 40 (its step there is 2 s): its first chunk's steps are
    its own; its block's others share theirs; every ring reads back its own times; from the
    next chunk on r7 shares its block's again."""
    recorder = FlightRecorder(900.0)
    given = block_reads(recorder, blocks=1, points=20, seconds=2 * CHUNK + 10,
                        left_out={40: "d0.r7"})
    odd = live_times(recorder.rings["d0.r7"])
    other = live_times(recorder.rings["d0.r3"])
    assert odd[0] != other[0]
    assert len({id(live_times(recorder.rings[f"d0.r{i}"])[0]) for i in range(20) if i != 7}) == 1
    for point, times in given.items():
        assert [r.ts for r in recorder.samples(point)] == times
    assert len(given["d0.r7"]) == len(given["d0.r3"]) - 1


def test_a_clock_step_and_a_frozen_copy() -> None:
    recorder = FlightRecorder(900.0)
    given = block_reads(recorder, blocks=1, points=5, seconds=2 * CHUNK + 3)
    ring = recorder.rings["d0.r2"]
    frozen = ring.frozen()
    recorder.shift(-3600 * 1000 * MS)
    assert [r.ts for r in ring.samples()] == [t - 3600 * 1000 * MS for t in given["d0.r2"]]
    assert [r.ts for r in frozen.samples()] == given["d0.r2"]
    assert live_times(frozen) == live_times(ring)


def test_the_recorders_table_holds_the_live_parts_and_no_more() -> None:
    """The rings hold their parts' numbers in the recorder's table (gateway/recorder/parts.py):
    over nine windows of two blocks the table holds exactly the parts live in some ring — a
    dropped chunk's part goes with the last ring holding it — and its slots stay a window's
    (numbers freed are given again). A frozen copy has a table of its own."""
    recorder = FlightRecorder(300.0)  # 2-3 chunks live a ring
    sizes = []
    for start in range(0, 18 * CHUNK, 2 * CHUNK):
        block_reads(recorder, blocks=2, points=20, seconds=2 * CHUNK, start=start)
        table = recorder.rings["d0.r0"]._parts
        assert all(ring._parts is table for ring in recorder.rings.values())
        live = {part for ring in recorder.rings.values() for part in live_times(ring)}
        assert len(table) == len(live) and 2 * 2 <= len(live) <= 2 * 3
        sizes.append(len(table._parts))
    assert max(sizes) <= 2 * 4, sizes  # (2 blocks × at most 3 live and 1 being sealed)
    ring = recorder.rings["d1.r4"]
    frozen = ring.frozen()
    assert frozen._parts is not table and len(frozen._parts) == len(set(live_times(ring)))
    assert live_times(frozen) == live_times(ring)
    assert [r.ts for r in frozen.samples()] == [r.ts for r in ring.samples()]
