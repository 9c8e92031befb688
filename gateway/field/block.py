"""A register read request compiled once into a decoder: one `struct` call per block.

`register_samples` (gateway.field.readings) decodes a reply point by point, looking up each
point's type, byte order, width, scale and range on every poll: about 6 µs a point, which at
2,000 points a second was the largest cost outside the rules. `BlockDecoder` does that work
once per planned request: numeric points in big-endian word order that do not overlap are
read by one precompiled `struct.Struct` over the whole reply (gaps skipped as pad bytes),
little-endian ones (DCBA, or a byte-swapped single register) by one precompiled `Struct` each,
and everything else — strings, bits of a register, mixed-endian multi-register values,
overlapping points — by the generic per-point path. Each point's scaling, range check and
flags are then a tuple of constants. Points alike in a row — read by the block one after
another, one scaling, no flags: most of a device's registers — are a `_Run`, decoded in a few
C-level passes instead of a Python statement per point (issue 15: 3,700 → 2,100 instructions a
point for the whole-process benchmark's int16 registers, most of what is left making the
`Sample`s).

The samples are exactly `register_samples`'s (same values and types, same qualities, same
order; `tests/field/test_block.py` checks that with hypothesis); a reply that does not fit the
compiled block (a short reply, a word outside 0..65535) falls back to `register_samples`.
Pure code, no I/O.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from operator import add, le, mul, truediv

from gateway.config.profile import WIDTH_REGISTERS, ByteOrder, DataType
from gateway.field.planner import ReadRequest
from gateway.field.points import DECIMAL_DIVISORS, LARGEST, BoundPoint
from gateway.field.readings import register_samples
from gateway.field.sample import Quality, Sample

_CODES: dict[DataType, str] = {
    DataType.INT16: "h", DataType.UINT16: "H", DataType.INT32: "i", DataType.UINT32: "I",
    DataType.INT64: "q", DataType.UINT64: "Q", DataType.FLOAT32: "f", DataType.FLOAT64: "d",
}
GOOD, INVALID = Quality.GOOD, Quality.INVALID
_new = tuple.__new__

_Scaling = tuple[int | float, float, bool, bool, float, float, bool]
"""(scale or decimal divisor, offset, identity, divide, low, high, back to int) — see
`_scaling`; one tuple for the points of a request that have the same. A divisor is an int:
`raw / 10` is the double nearest the quotient, `float(raw) / 10` not always for a raw past 2^53
(what a compiled `float` would make of it: docs/performance.md, "A compiled build, tried")."""
_Read = tuple[struct.Struct, int] | ReadRequest | None
"""How a point's raw value is read: None from the block's one unpack, (its own `Struct`, its
byte offset) — little-endian, or overlapping a point before it —, or the request narrowed to
the point for the generic decoder."""


def _scaling(point: BoundPoint) -> _Scaling:
    """A numeric point's post-processing as constants (`point_samples`'s rules)."""
    divisor = DECIMAL_DIVISORS.get(point.scale)
    return (point.scale if divisor is None else divisor, point.offset,
            point.scale == 1.0 and point.offset == 0.0, divisor is not None,
            -LARGEST if point.valid_min is None else point.valid_min,
            LARGEST if point.valid_max is None else point.valid_max,  # no infinity is good
            point.scale == 1.0)


_RAW_RANGES: dict[str, tuple[int, int]] = {
    "h": (-2**15, 2**15 - 1), "H": (0, 2**16 - 1), "i": (-2**31, 2**31 - 1),
    "I": (0, 2**32 - 1), "q": (-2**63, 2**63 - 1), "Q": (0, 2**64 - 1)}
"""The raw values of each integer `struct` code, lowest and highest."""
_ALWAYS, _MIN_MAX, _EACH = 0, 1, 2
"""How a run's values are checked against its range: not at all (no raw value of its types can
leave it), by their min and max (integers: no NaN), each one (floats)."""


class _Run:
    """Points in a row that the block's one unpack reads, with one scaling and no flags, whose
    values need no turning back into ints (see `_scaling`): decoded in a few C-level passes
    over the run (`map`, `min`/`max`, `zip`), no Python statement per point. The same
    arithmetic as point by point (`raw / divisor + offset`, `raw * scale + offset`), with the
    `+ offset` left out where it changes nothing, not even a zero's sign (an offset of -0.0,
    or of 0.0 after integers divided, or multiplied by a positive scale, which never give
    -0.0), and the range check left out where the scaled ends of the raw types' ranges are
    inside it (the operations are monotonic, so every value lies between them)."""

    __slots__ = ("check", "first", "high", "ids", "low", "offset", "op", "scale", "shift",
                 "stop")

    def __init__(self, first: int, ids: tuple[str, ...], scaling: _Scaling,
                 codes: set[str]) -> None:
        self.first, self.stop, self.ids = first, first + len(ids), ids
        scale, offset, identity, divide, self.low, self.high, _back = scaling
        self.scale, self.offset = scale, offset
        self.op: Callable[[float, float], float] | None = None if identity else \
            truediv if divide else mul
        integers = codes <= _RAW_RANGES.keys()
        self.shift = self.op is not None and not (
            offset == 0.0 and (math.copysign(1.0, offset) < 0
                               or (integers and (divide or scale > 0))))
        self.check = _EACH
        if integers:
            ends = self._scaled([end for code in codes for end in _RAW_RANGES[code]])
            inside = self.low <= min(ends) and max(ends) <= self.high
            self.check = _ALWAYS if inside else _MIN_MAX

    def _scaled(self, chunk: Sequence[float]) -> Sequence[float]:
        op = self.op
        if op is None:
            return chunk
        if self.shift:
            return list(map(add, map(op, chunk, repeat(self.scale)), repeat(self.offset)))
        return list(map(op, chunk, repeat(self.scale)))

    def decode(self, raws: tuple[float, ...], ts: int, out: list[Sample]) -> None:
        values = self._scaled(raws[self.first:self.stop])
        low, high, check = self.low, self.high, self.check
        qualities: Iterable[Quality]
        if check == _ALWAYS or (check == _MIN_MAX and low <= min(values)
                                and max(values) <= high) \
                or (check == _EACH and all(map(le, repeat(low), values))
                    and all(map(le, values, repeat(high)))):
            qualities = repeat(GOOD)
        else:  # (NaN is in no range)
            qualities = [GOOD if low <= value <= high else INVALID for value in values]
        out.extend(map(_new, repeat(Sample), zip(self.ids, values, repeat(ts), qualities)))


MIN_RUN = 4
"""Points a `_Run` takes at least (fewer: point by point, which is then cheaper)."""

_One = tuple[str, "_Read", _Scaling, tuple[tuple[str, int, bool], ...], int]
"""A point decoded on its own: (id, how it is read, scaling, flags' (id, bit, active low), its
index among the block's unpacked values, -1 if none)."""


class BlockDecoder:
    """`decoder(registers, ts, out)` appends the samples of one reply to `request`.

    What it knows of each point is one step of `_steps`, in the request's order: a `_Run` of
    points alike (most of a device's registers), else a point on its own (`_One`: its id, how it
    is read, its scaling, its flags); the scalings shared: two tuples a point took ~0.2 KB a
    point, 0.4 MiB at 2,000 points."""

    __slots__ = ("_block", "_count", "_request", "_steps", "_words")

    def __init__(self, request: ReadRequest) -> None:
        self._request = request
        self._count = request.count
        self._words = struct.Struct(f">{request.count}H")
        block: list[tuple[int, str]] = []  # (pad bytes, code) of each point read in the block
        cursor = 0  # bytes of the block format so far
        steps = _Steps()
        scalings: dict[str, _Scaling] = {}  # by repr: 0.0 is not -0.0, nor 1 1.0, here
        for point in request.points:
            spec = point.modbus
            offset = spec.address - request.address
            kind, order = spec.type, spec.order
            code = _CODES.get(kind)
            width = WIDTH_REGISTERS.get(kind, 0)
            big = order is ByteOrder.ABCD or (width == 1 and not order.swaps_bytes)
            little = order is ByteOrder.DCBA or (width == 1 and order.swaps_bytes)
            read: _Read
            at = -1
            if code is None or offset < 0 or offset + width > request.count \
                    or not (big or little):
                read = _one(request, point)
            elif big and 2 * offset >= cursor:
                at = len(block)
                block.append((2 * offset - cursor, code))
                cursor = 2 * (offset + width)
                read = None
            else:
                read = (struct.Struct((">" if big else "<") + code), 2 * offset)
            scaling = _scaling(point)
            scaling = scalings.setdefault(repr(scaling), scaling)
            if read is None and not point.flags and (scaling[2] or not scaling[6]):
                steps.alike(point.id, at, scaling, code or "")  # (read by the block: a code)
            else:
                steps.one((point.id, read, scaling,
                           tuple((f.id, f.bit, f.active_low) for f in point.flags), at))
        self._block = struct.Struct(_format(block))
        self._steps = steps.done()

    def __call__(self, registers: Sequence[int], ts: int, out: list[Sample]) -> None:
        if len(registers) != self._count:
            register_samples(self._request, registers, ts, out)
            return
        try:
            raw_bytes = self._words.pack(*registers)
        except struct.error:  # not 16-bit words: the generic path says what it makes of them
            register_samples(self._request, registers, ts, out)
            return
        self._decode(raw_bytes, registers, ts, out)

    def words(self, words: bytes, ts: int, out: list[Sample]) -> None:
        """The samples of a reply's registers as they came, two big-endian bytes each
        (`ModbusLink.read_words`): what `self(registers)` makes of the same registers,
        without a list of ints to pack first."""
        if len(words) != 2 * self._count:  # (`read_words` checked the count: never)
            count = len(words) // 2
            register_samples(self._request, list(struct.unpack(f">{count}H", words[:2 * count])),
                             ts, out)
            return
        self._decode(words, None, ts, out)

    def _decode(self, raw_bytes: bytes, registers: Sequence[int] | None, ts: int,
                out: list[Sample]) -> None:
        """The steps over the block's bytes (`registers`: the same as ints, None to unpack
        them from the bytes if a point of the generic path needs them)."""
        raws = self._block.unpack_from(raw_bytes)
        for step in self._steps:
            if type(step) is _Run:
                step.decode(raws, ts, out)
                continue
            pid, read, scaling, flags, at = step  # type: ignore[misc]
            if read is None:
                raw = raws[at]
            elif type(read) is tuple:
                own, byte = read
                raw = own.unpack_from(raw_bytes, byte)[0]
            else:
                assert isinstance(read, ReadRequest)
                if registers is None:
                    registers = list(self._words.unpack(raw_bytes))
                register_samples(read, registers, ts, out)
                continue
            scale, offset, identity, divide, low, high, back = scaling
            value = raw if identity else (raw / scale + offset if divide else raw * scale + offset)
            quality = GOOD if low <= value <= high else INVALID
            if back and type(value) is float and type(raw) is int and value.is_integer():
                value = int(value)
            out.append(_new(Sample, (pid, value, ts, quality)))
            if flags:
                word = int(raw)
                for fid, bit, active_low in flags:
                    out.append(_new(Sample, (fid, bool((word >> bit) & 1) != active_low, ts,
                                             GOOD)))


class _Steps:
    """Gathers a decoder's steps in the request's order: points alike in a row (read by the
    block, consecutive in it, one scaling, no flags, no value to turn back into an int) become a
    `_Run` when there are at least MIN_RUN of them, the others a `_One` each."""

    def __init__(self) -> None:
        self.steps: list[_Run | _One] = []
        self._ids: list[str] = []
        self._first = self._next = -1
        self._scaling: _Scaling | None = None
        self._codes: set[str] = set()

    def alike(self, pid: str, at: int, scaling: _Scaling, code: str) -> None:
        if self._ids and (scaling is not self._scaling or at != self._next):
            self._close()
        if not self._ids:
            self._first, self._scaling = at, scaling
        self._ids.append(pid)
        self._codes.add(code)
        self._next = at + 1

    def one(self, step: _One) -> None:
        self._close()
        self.steps.append(step)

    def done(self) -> list[_Run | _One]:
        self._close()
        return self.steps

    def _close(self) -> None:
        ids, scaling = self._ids, self._scaling
        if scaling is None or not ids:
            return
        if len(ids) >= MIN_RUN:
            self.steps.append(_Run(self._first, tuple(ids), scaling, self._codes))
        else:
            self.steps.extend((pid, None, scaling, (), self._first + i)
                              for i, pid in enumerate(ids))
        self._ids, self._codes = [], set()


def _format(block: list[tuple[int, str]]) -> str:
    """The big-endian `struct` format of (pad, code)s, runs of one code without a pad between
    them counted ("100h" unpacks as 100 "h"s, in 0.2 KB of `Struct` instead of 3.8)."""
    parts = [">"]
    start = 0
    for at, (_pad, code) in enumerate(block):
        if at + 1 == len(block) or block[at + 1] != (0, code):  # a run's last
            pad, run = block[start][0], at + 1 - start
            parts += [f"{pad}x" if pad else "", f"{run}{code}" if run > 1 else code]
            start = at + 1
    return "".join(parts)


def _one(request: ReadRequest, point: BoundPoint) -> ReadRequest:
    """`request` narrowed to one point (same address and count: the offsets stay)."""
    return ReadRequest(request.register, request.address, request.count, (point,))

