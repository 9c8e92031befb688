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

_BLOCK, _OWN, _GENERIC = 0, 1, 2
"""How a point's raw value is read: from the block's one unpack, from its own `Struct`
(little-endian, or overlapping a point before it), or by the generic decoder."""

# (point id, scale or decimal divisor, offset, identity, divide, low, high, back to int, flags)
# — see `_scaling`
_Scaling = tuple[str, float, float, bool, bool, float, float, bool,
                 tuple[tuple[str, int, bool], ...]]


def _scaling(point: BoundPoint) -> _Scaling:
    """A numeric point's post-processing as constants (`point_samples`'s rules)."""
    divisor = DECIMAL_DIVISORS.get(point.scale)
    return (point.id, point.scale if divisor is None else divisor, point.offset,
            point.scale == 1.0 and point.offset == 0.0, divisor is not None,
            -LARGEST if point.valid_min is None else point.valid_min,
            LARGEST if point.valid_max is None else point.valid_max,  # no infinity is good
            point.scale == 1.0,
            tuple((f.id, f.bit, f.active_low) for f in point.flags))

_Step = tuple[int, struct.Struct | None, int, ReadRequest | None, _Scaling | None]
"""(how, own `Struct`, its byte offset, the request narrowed to the point for the generic
path, scaling); scaling is None exactly for the generic path."""


class BlockDecoder:
    """`decoder(registers, ts, out)` appends the samples of one reply to `request`."""

    __slots__ = ("_block", "_count", "_request", "_steps", "_words")

    def __init__(self, request: ReadRequest) -> None:
        self._request = request
        self._count = request.count
        self._words = struct.Struct(f">{request.count}H")
        block = [">"]
        cursor = 0  # bytes of the block format so far
        steps: list[_Step] = []
        for point in request.points:
            spec = point.modbus
            offset = spec.address - request.address
            kind, order = spec.type, spec.order
            code = _CODES.get(kind)
            width = WIDTH_REGISTERS.get(kind, 0)
            if code is None or offset < 0 or offset + width > request.count:
                steps.append((_GENERIC, None, 0, _one(request, point), None))
                continue
            big = order is ByteOrder.ABCD or (width == 1 and not order.swaps_bytes)
            little = order is ByteOrder.DCBA or (width == 1 and order.swaps_bytes)
            if big and 2 * offset >= cursor:
                pad = 2 * offset - cursor
                block.append(f"{pad}x{code}" if pad else code)
                cursor = 2 * (offset + width)
                steps.append((_BLOCK, None, 0, None, _scaling(point)))
            elif big or little:
                steps.append((_OWN, struct.Struct((">" if big else "<") + code), 2 * offset,
                              None, _scaling(point)))
            else:
                steps.append((_GENERIC, None, 0, _one(request, point), None))
        self._block = struct.Struct("".join(block))
        self._steps = steps

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
        for how, own, at, alone, scaling in self._steps:
            if scaling is None:
                assert alone is not None
                register_samples(alone, registers, ts, out)
                continue
            if how == _BLOCK:
                raw = next(raws)
            else:
                assert own is not None
                raw = own.unpack_from(raw_bytes, at)[0]
            pid, scale, offset, identity, divide, low, high, back, flags = scaling
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


def _one(request: ReadRequest, point: BoundPoint) -> ReadRequest:
    """`request` narrowed to one point (same address and count: the offsets stay)."""
    return ReadRequest(request.register, request.address, request.count, (point,))

