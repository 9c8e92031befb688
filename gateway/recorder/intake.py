"""The flight recorder's one loop (gateway/recorder/ring.py): each sample into its ring's open
chunk — its value scaled into the open chunk's values, its step from the sample before, its
flag byte (bits 0-1 quality, bits 2-4 the value's kind) — and the ring told when its open chunk
is due (its `PROBE`th sample, a full chunk).

It is `PointRing`'s own loop, written out over the rings' slots (a method call per sample cost a
tenth of a sample's CPU) and kept here for ring.py's length; the flag byte's codes below are
shared with ring.py, which decodes them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from math import copysign, floor
from typing import TYPE_CHECKING

from gateway.field.sample import Quality, Value

if TYPE_CHECKING:
    from gateway.recorder.ring import PointRing

QUALITIES = (Quality.GOOD, Quality.STALE, Quality.COMM_ERROR, Quality.INVALID)
QUALITY_CODE = {q: i for i, q in enumerate(QUALITIES)}
KIND_FLOAT, KIND_INT, KIND_BOOL, KIND_NONE, KIND_STR = range(5)
"""A value's kind, bits 2-4 of its flag byte."""
NS_PER_MS = 1_000_000


def record_into(find: Callable[[str], PointRing | None],
                new: Callable[[str], PointRing | None],
                batch: Iterable[tuple[str, Value, int, Quality]]) -> int:
    """Each sample to the ring `find` (or else `new`) gives for its point, written out in one
    loop (a call per sample was about a tenth of the CPU a sample costs outside the seals);
    the number recorded."""
    codes = QUALITY_CODE
    recorded = 0
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
                kind, number = ring._encode_value(value)
            flag = codes[quality] | kind << 2
            if not scale:
                ring._values[at] = number
            else:
                try:
                    ring._values[at] = number * scale
                except (OverflowError, TypeError):  # (TypeError: a float's subclass)
                    ring._spill(at, number)
        ms = ts // NS_PER_MS
        try:
            ring._steps[at] = ms - ring._last
        except OverflowError:
            ring._widen(at, ms)
        ring._last = ms
        ring._flags[at] = flag
        at += 1
        ring._open = at
        if at >= ring._due:
            ring._act()
        recorded += 1
    return recorded
