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
from gateway.recorder.lines import Line, diverge, put

if TYPE_CHECKING:
    from gateway.recorder.ring import PointRing

QUALITIES = (Quality.GOOD, Quality.STALE, Quality.COMM_ERROR, Quality.INVALID)
QUALITY_CODE = {q: i for i, q in enumerate(QUALITIES)}
KIND_FLOAT, KIND_INT, KIND_BOOL, KIND_NONE, KIND_STR = range(5)
"""A value's kind, bits 2-4 of its flag byte."""
MAX_STRINGS = 64
"""Distinct strings a ring keeps (later new ones read back as ring.py's `OVERFLOW_STRING`)."""
NS_PER_MS = 1_000_000


def record_into(rings: dict[str, PointRing], new: Callable[[str], PointRing | None],
                batch: Iterable[tuple[str, Value, int, Quality]]) -> int:
    """Each sample to the ring `rings` (or else `new`) has for its point, written out in one
    loop (a call per sample was about a tenth of the CPU a sample costs outside the seals;
    `rings[point]` is a specialized subscript, `rings.get` a call); the number recorded.

    The rings of a block read come one after the other with the same time, flag and open
    slot, on the same lines (gateway/recorder/lines.py): once a ring has written or checked
    slot `at` of its lines, the next ring on those same lines with the same `at`, flag and
    step (the same time and the same last time: no subtraction of two 2-digit ints) finds
    them holding its step and flag and skips reading them back (two array reads, most of a
    sample's line work). `shared_*` is what the ring before left: its lines, its `at` (-1:
    nothing to go by), last time and flag."""
    samples = batch if type(batch) is list else list(batch)
    codes = QUALITY_CODE
    good = Quality.GOOD
    skipped = 0
    stamp, ms = None, 0
    shared_at, shared_last, shared_steps, shared_flags, shared_flag = -1, 0, None, None, 0
    for point, value, ts, quality in samples:
        try:
            ring = rings[point]
        except KeyError:
            made = new(point)
            if made is None:
                skipped += 1
                continue
            ring = made
        number: int | float  # (an int stays an int)
        at = ring._open
        scale = ring._scale
        if type(value) is float:
            flag = 0 if quality is good else codes[quality]  # (| KIND_FLOAT << 2, which is 0)
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
        # (a block's samples share their time, mostly one int object: one ms for all)
        if ts is not stamp and ts != stamp:
            stamp, ms = ts, ts // NS_PER_MS
            shared_at = -1  # (another time: another step)
        last = ring._last
        if (at != shared_at or last != shared_last or flag != shared_flag  # (lines.py:)
                or ring._steps is not shared_steps or ring._flags is not shared_flags):
            steps, flags = ring._steps, ring._flags  # shared lines, copy-on-write
            step = ms - last
            if at < steps.filled:
                if steps[at] != step:
                    steps = put_step(ring, at, step)
            else:
                try:
                    steps[at] = step
                    steps.filled = at + 1
                except OverflowError:
                    steps = widen(ring, at, step)
            if at < flags.filled:
                if flags[at] != flag:
                    flags = ring._flags = diverge(flags, at, flag)
            else:
                flags[at] = flag
                flags.filled = at + 1
            shared_at = at if steps[at] == step else -1  # (a widened first step is 0)
            shared_last, shared_steps, shared_flags, shared_flag = last, steps, flags, flag
        ring._last = ms
        at += 1
        ring._open = at
        if at >= ring._due:
            ring._act()
            shared_at = -1  # (a seal may have emptied the lines it held alone)
    return len(samples) - skipped


def put_step(ring: PointRing, at: int, step: int) -> Line:
    """Slot `at` of `ring`'s (shared) steps holds another step than `step`: its steps now."""
    try:
        ring._steps = put(ring._steps, at, step)
    except OverflowError:
        return widen(ring, at, step)
    return ring._steps


def widen(ring: PointRing, at: int, step: int) -> Line:
    """`step` does not fit `ring`'s steps: the first sample of a chunk becomes its base (a
    ring's first sample, a gap); later in the chunk the steps widen (to a line the block's
    other rings follow it to). The ring's steps now."""
    if at == 0:
        ring._base = ring._last + step
        ring._steps = put(ring._steps, 0, 0)
    else:
        ring._steps = diverge(ring._steps, at, step, "i" if -2**31 <= step < 2**31 else "q")
    return ring._steps


def encode_value(ring: PointRing, value: Value) -> tuple[int, int | float]:
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
