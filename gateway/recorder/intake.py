"""The flight recorder's one loop (gateway/recorder/ring.py): each sample into its ring's open
chunk — its value scaled into the open chunk's values, its step from the sample before, its
flag byte (bits 0-1 quality, bits 2-4 the value's kind) — and the ring told when its open chunk
is due (its `PROBE`th sample, a full chunk).

It is `PointRing`'s own loop, written out over the rings' slots (a method call per sample cost a
tenth of a sample's CPU) and kept here for ring.py's length; the flag byte's codes below are
shared with ring.py, which decodes them. The steps and flags go to lines that rings in step
share (gateway/recorder/lines.py): a slot is written past the line's `filled`, compared below
it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from math import copysign, floor
from typing import TYPE_CHECKING

from gateway.field.sample import Quality, Value
from gateway.recorder.lines import diverge, put

if TYPE_CHECKING:
    from gateway.recorder.ring import PointRing

QUALITIES = (Quality.GOOD, Quality.STALE, Quality.COMM_ERROR, Quality.INVALID)
QUALITY_CODE = {q: i for i, q in enumerate(QUALITIES)}
KIND_FLOAT, KIND_INT, KIND_BOOL, KIND_NONE, KIND_STR = range(5)
"""A value's kind, bits 2-4 of its flag byte."""
MAX_STRINGS = 64
"""Distinct strings a ring keeps (later new ones read back as ring.py's `OVERFLOW_STRING`)."""
NS_PER_MS = 1_000_000


def record_into(find: Callable[[str], PointRing | None],
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
                put_step(ring, at, ms)
        else:
            try:
                steps[at] = ms - ring._last
                steps.filled = at + 1
            except OverflowError:
                widen(ring, at, ms)
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


def put_step(ring: PointRing, at: int, ms: int) -> None:
    """Slot `at` of `ring`'s (shared) steps holds another step than the one to `ms`."""
    try:
        ring._steps = put(ring._steps, at, ms - ring._last)
    except OverflowError:
        widen(ring, at, ms)


def widen(ring: PointRing, at: int, ms: int) -> None:
    """The step to `ms` does not fit `ring`'s steps: the first sample of a chunk becomes its
    base (a ring's first sample, a gap); later in the chunk the steps widen (to a line the
    block's other rings follow it to)."""
    if at == 0:
        ring._base = ms
        ring._steps = put(ring._steps, 0, 0)
        return
    step = ms - ring._last
    ring._steps = diverge(ring._steps, at, step, "i" if -2**31 <= step < 2**31 else "q")


def encode_value(ring: PointRing, value: Value) -> tuple[int, float]:
    """(kind, number) of a value that is no float, bool or int: None, a string (an index into
    `ring`'s table), or a subclass of those."""
    if value is None:
        return KIND_NONE, 0
    if isinstance(value, bool):
        return KIND_BOOL, int(value)
    if isinstance(value, int):
        return KIND_INT, value
    if isinstance(value, float):
        return KIND_FLOAT, float(value)
    strings = ring._strings
    if strings is None:
        strings = ring._strings = []
    try:
        return KIND_STR, strings.index(value)
    except ValueError:
        if len(strings) >= MAX_STRINGS:
            return KIND_STR, MAX_STRINGS
        strings.append(value)
        return KIND_STR, len(strings) - 1
