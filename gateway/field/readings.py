"""Turn a device's reply into samples: decode, scale, range-check, expand flags.

Pure code. A value outside its valid range keeps its value but gets quality `invalid`; it is
never clamped. Flags of a status word become their own boolean samples.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.field.codec import DecodeError, decode
from gateway.field.planner import ReadRequest
from gateway.field.points import BoundPoint
from gateway.field.sample import Quality, Sample, Value

GOOD, INVALID = Quality.GOOD, Quality.INVALID


def point_samples(point: BoundPoint, raw: int | float | bool | str, ts: int,
                  out: list[Sample]) -> None:
    """Append the samples of one decoded raw value (the point and its flags) to `out`."""
    if isinstance(raw, bool):
        out.append(Sample(point.id, raw != point.invert, ts, GOOD))
        return
    if isinstance(raw, str):
        out.append(Sample(point.id, raw, ts, GOOD))
        return
    value = point.engineering(raw)
    quality = GOOD if point.in_range(value) else INVALID
    if isinstance(value, float) and value.is_integer() and point.scale == 1.0 \
            and isinstance(raw, int):
        value = int(value)
    out.append(Sample(point.id, value, ts, quality))
    if point.flags:
        word = int(raw)
        for flag in point.flags:
            out.append(Sample(flag.id, bool((word >> flag.bit) & 1) != flag.active_low, ts,
                              GOOD))


def failed_samples(points: Sequence[BoundPoint], ts: int, quality: Quality,
                   out: list[Sample]) -> None:
    """Samples with no value for every point (and flag) of `points`."""
    for point in points:
        out.append(Sample(point.id, None, ts, quality))
        for flag in point.flags:
            out.append(Sample(flag.id, None, ts, quality))


def register_samples(request: ReadRequest, registers: Sequence[int], ts: int,
                     out: list[Sample]) -> None:
    """Samples from a register read; points the reply does not fully cover are `invalid`."""
    base = request.address
    for point in request.points:
        spec = point.modbus
        offset = spec.address - base
        words = registers[offset:offset + spec.width]
        if len(words) != spec.width:
            failed_samples((point,), ts, INVALID, out)
            continue
        try:
            raw = decode(words, spec.type, spec.order, spec.bit)
        except DecodeError:
            failed_samples((point,), ts, INVALID, out)
            continue
        point_samples(point, raw, ts, out)


def bit_samples(request: ReadRequest, bits: Sequence[bool], ts: int,
                out: list[Sample]) -> None:
    base = request.address
    for point in request.points:
        offset = point.modbus.address - base
        if offset >= len(bits):
            failed_samples((point,), ts, INVALID, out)
            continue
        value: Value = bool(bits[offset]) != point.invert
        out.append(Sample(point.id, value, ts, GOOD))
