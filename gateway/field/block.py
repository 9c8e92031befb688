"""A register read request compiled once into a decoder: one `struct` call per block.

`register_samples` (gateway.field.readings) decodes a reply point by point, looking up each
point's type, byte order, width, scale and range on every poll: about 6 µs a point, which at
2,000 points a second was the largest cost outside the rules. `BlockDecoder` does that work
once per planned request: numeric points in big-endian word order that do not overlap are
read by one precompiled `struct.Struct` over the whole reply (gaps skipped as pad bytes),
little-endian ones (DCBA, or a byte-swapped single register) by one precompiled `Struct` each,
and everything else — strings, bits of a register, mixed-endian multi-register values,
overlapping points — by the generic per-point path. Each point's scaling, range check and
flags are then a tuple of constants.

The samples are exactly `register_samples`'s (same values and types, same qualities, same
order; `tests/field/test_block.py` checks that with hypothesis); a reply that does not fit the
compiled block (a short reply, a word outside 0..65535) falls back to `register_samples`.
Pure code, no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

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

_Scaling = tuple[float, float, bool, bool, float, float, bool]
"""(scale or decimal divisor, offset, identity, divide, low, high, back to int) — see
`_scaling`; one tuple for the points of a request that have the same."""
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


class BlockDecoder:
    """`decoder(registers, ts, out)` appends the samples of one reply to `request`.

    What it knows of each point is in columns (lists in the request's order: its id, how it
    is read, its scaling, its flags' (id, bit, active low)), the scalings shared: two tuples
    a point took ~0.2 KB a point, 0.4 MiB at 2,000 points."""

    __slots__ = ("_block", "_count", "_flags", "_ids", "_reads", "_request", "_scalings",
                 "_words")

    def __init__(self, request: ReadRequest) -> None:
        self._request = request
        self._count = request.count
        self._words = struct.Struct(f">{request.count}H")
        block: list[tuple[int, str]] = []  # (pad bytes, code) of each point read in the block
        cursor = 0  # bytes of the block format so far
        self._ids: list[str] = []
        self._reads: list[_Read] = []
        self._scalings: list[_Scaling] = []
        self._flags: list[tuple[tuple[str, int, bool], ...]] = []
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
            if code is None or offset < 0 or offset + width > request.count \
                    or not (big or little):
                read = _one(request, point)
            elif big and 2 * offset >= cursor:
                block.append((2 * offset - cursor, code))
                cursor = 2 * (offset + width)
                read = None
            else:
                read = (struct.Struct((">" if big else "<") + code), 2 * offset)
            scaling = _scaling(point)
            self._ids.append(point.id)
            self._reads.append(read)
            self._scalings.append(scalings.setdefault(repr(scaling), scaling))
            self._flags.append(tuple((f.id, f.bit, f.active_low) for f in point.flags))
        self._block = struct.Struct(_format(block))

    def __call__(self, registers: Sequence[int], ts: int, out: list[Sample]) -> None:
        if len(registers) != self._count:
            register_samples(self._request, registers, ts, out)
            return
        try:
            raw_bytes = self._words.pack(*registers)
        except struct.error:  # not 16-bit words: the generic path says what it makes of them
            register_samples(self._request, registers, ts, out)
            return
        raws = iter(self._block.unpack_from(raw_bytes))
        for pid, read, scaling, flags in zip(self._ids, self._reads, self._scalings,
                                             self._flags, strict=True):
            if read is None:
                raw = next(raws)
            elif type(read) is tuple:
                own, at = read
                raw = own.unpack_from(raw_bytes, at)[0]
            else:
                assert isinstance(read, ReadRequest)
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

