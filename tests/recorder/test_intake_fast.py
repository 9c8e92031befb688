"""The flight recorder's loop (gateway/recorder/intake.py `record_into`) against the loop it
replaced, kept verbatim below (`old_record_into`): the rewrite skips reading back the steps and
flags lines where the ring before it in the batch just wrote or checked the same slot of the
same lines with the same step and flag, subscripts the rings' dict and counts what it skips.
Fed the same reads — blocks at one time, points left out, gaps past 32 s and 24 days, clocks
stepped back, odd values and qualities, seals —, the rings hold the same: sealed bytes, chunk
bookkeeping, open chunk, lines shared alike (`live_bytes`), samples read back."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from math import copysign, floor

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.field.sample import Quality, Sample, Value
from gateway.recorder.bookkeeping import live_span
from gateway.recorder.intake import QUALITY_CODE, encode_value
from gateway.recorder.lines import diverge, put
from gateway.recorder.ring import FlightRecorder, PointRing
from tests.recorder.test_lines import key
from tests.recorder.test_lines import reads as lines_reads

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
NS_PER_MS = MS
KIND_FLOAT, KIND_INT, KIND_BOOL, KIND_NONE, KIND_STR = range(5)


# --- the loop before (1ccba84), verbatim but for its name and its helpers' ----------------------

def old_record_into(find: Callable[[str], PointRing | None],
                new: Callable[[str], PointRing | None],
                batch: Iterable[tuple[str, Value, int, Quality]]) -> int:
    """Each sample to the ring `find` (or else `new`) gives for its point, written out in one
    loop (a call per sample was about a tenth of the CPU a sample costs outside the seals);
    the number recorded."""
    codes = QUALITY_CODE
    recorded = 0
    stamp, ms = None, 0
    for point, value, ts, quality in batch:
        ring = find(point)
        if ring is None:
            ring = new(point)
            if ring is None:
                continue
        number: float
        at = ring._open
        scale = ring._scale
        if type(value) is float:
            flag = codes[quality]  # (| KIND_FLOAT << 2, which is 0)
            if not scale:
                ring._values[at] = value
            else:
                try:
                    m = floor(value * scale + 0.5)  # (round: see chunk.pack_values)
                    if m / scale != value or (not m and copysign(1.0, value) < 0):
                        raise ValueError  # not m / scale bit for bit
                    ring._values[at] = m
                except (OverflowError, ValueError):
                    ring._spill(at, value)
        else:
            if type(value) is bool:
                kind, number = KIND_BOOL, 1 if value else 0
            elif type(value) is int:
                kind, number = KIND_INT, value
            else:
                kind, number = encode_value(ring, value)
            flag = codes[quality] | kind << 2
            if not scale:
                ring._values[at] = number
            else:
                try:
                    ring._values[at] = number * scale
                except (OverflowError, TypeError):  # (TypeError: a float's subclass)
                    ring._spill(at, number)
        if ts != stamp:  # (a block's samples share their time: one int for all their rings)
            stamp, ms = ts, ts // NS_PER_MS
        steps = ring._steps  # shared lines, copy-on-write: gateway/recorder/lines.py
        if at < steps.filled:
            if steps[at] != ms - ring._last:
                old_put_step(ring, at, ms)
        else:
            try:
                steps[at] = ms - ring._last
                steps.filled = at + 1
            except OverflowError:
                old_widen(ring, at, ms)
        ring._last = ms
        flags = ring._flags
        if at < flags.filled:
            if flags[at] != flag:
                ring._flags = diverge(flags, at, flag)
        else:
            flags[at] = flag
            flags.filled = at + 1
        at += 1
        ring._open = at
        if at >= ring._due:
            ring._act()
        recorded += 1
    return recorded


def old_put_step(ring: PointRing, at: int, ms: int) -> None:
    """Slot `at` of `ring`'s (shared) steps holds another step than the one to `ms`."""
    try:
        ring._steps = put(ring._steps, at, ms - ring._last)
    except OverflowError:
        old_widen(ring, at, ms)


def old_widen(ring: PointRing, at: int, ms: int) -> None:
    """The step to `ms` does not fit `ring`'s steps: the first sample of a chunk becomes its
    base (a ring's first sample, a gap); later in the chunk the steps widen (to a line the
    block's other rings follow it to)."""
    if at == 0:
        ring._base = ms
        ring._steps = put(ring._steps, 0, 0)
        return
    step = ms - ring._last
    ring._steps = diverge(ring._steps, at, step, "i" if -2**31 <= step < 2**31 else "q")


class OldRecorder(FlightRecorder):
    """A recorder whose `record` is the loop before."""

    def record(self, batch: Iterable[Sample]) -> None:
        self.samples_in += old_record_into(self.rings.get, self._new_ring, batch)


# --- the comparison ---------------------------------------------------------------------------

ODD: st.SearchStrategy[Value] = st.sampled_from([-0.0, 0.0, 0.1 + 0.2, 2**40, 1e-7, "other",
                                                 1e300, True])
"""Values test_lines.reads does not draw."""


@st.composite
def reads(draw: st.DrawFn) -> list[list[Sample]]:
    """test_lines' block reads, their blocks moved to read at one time where their polls agree
    (`aligned`), registers ×0.01 moving (`moving`), a few more odd values."""
    batches = draw(lines_reads())
    aligned, moving = draw(st.booleans()), draw(st.booleans())
    odd: dict[int, Value] = draw(st.dictionaries(st.integers(0, len(batches) - 1), ODD,
                                                 max_size=4))
    out = []
    for n, batch in enumerate(batches):
        read = []
        for i, sample in enumerate(batch):
            block, index = (int(part[1:]) for part in sample.point.split("."))
            value, ts = sample.value, sample.ts - (block * 7 * MS if aligned else 0)
            if moving and value == 20.5:
                value = (2200 + (n * 7 + index * 13) % 23) / 100
            if i == 0 and n in odd:
                value = odd[n]
            read.append(sample._replace(value=value, ts=ts))
        out.append(read)
    return out


def state(ring: PointRing) -> tuple[object, ...]:
    """All a ring keeps (its lines' written slots, not their identity)."""
    n = ring._open
    return (bytes(ring._data[slice(*live_span(ring))]), ring.chunk_index().tolist(), n,
            ring._base, ring._last, ring._scale, ring._due, ring._values.typecode,
            ring._values[:n].tobytes(), ring._steps.typecode, ring._steps[:n].tolist(),
            ring._flags[:n].tolist(), ring._strings, len(ring._data), len(ring._index))


def lines(recorder: FlightRecorder) -> list[tuple[int, int]]:
    """Which of the recorder's rings share their steps line and flags line."""
    first: dict[int, int] = {}
    return [(first.setdefault(id(ring._steps), i), first.setdefault(id(ring._flags), -1 - i))
            for i, ring in enumerate(recorder.rings.values())]


@settings(max_examples=150, deadline=None)
@given(batches=reads(), max_points=st.sampled_from([20_000, 3]))
def test_the_loop_keeps_what_the_loop_before_kept(batches: list[list[Sample]],
                                                  max_points: int) -> None:
    new, old = FlightRecorder(60.0, max_points=max_points), OldRecorder(60.0,
                                                                        max_points=max_points)
    for batch in batches:
        new.record(batch)
        old.record(batch)
        assert new.samples_in == old.samples_in
        assert new.refused_points == old.refused_points
        assert lines(new) == lines(old)
        assert [state(ring) for ring in new.rings.values()] == [
            state(ring) for ring in old.rings.values()]
    assert new.live_bytes() == old.live_bytes()
    for point, ring in old.rings.items():
        assert list(map(key, new.rings[point].samples())) == list(map(key, ring.samples()))


def test_a_ring_s_own_samples_go_through_the_same_loop() -> None:
    """`PointRing.extend` (a generator of samples, one ring) counts and keeps them."""
    ring, old = PointRing(60.0, 1000), PointRing(60.0, 1000)
    samples = [(T0 + i * 1000 * MS, 22.0 + i % 9 / 100, Quality.GOOD) for i in range(300)]
    ring.extend(iter(samples))
    old_record_into(lambda point: old, lambda point: None, (("", v, t, q) for t, v, q in samples))
    assert state(ring) == state(old)
    assert list(map(key, ring.samples())) == list(map(key, old.samples()))
