"""Points bound to a device: a profile's point with the site's overrides and its full id."""

from __future__ import annotations

import sys
import weakref

from gateway.config.profile import (
    Flag,
    ModbusPoint,
    ModbusProfile,
    SerialTextProfile,
    TextField,
)
from gateway.config.site import Device, PointOverride
from gateway.records import dataclass, field

DECIMAL_DIVISORS: dict[float, int] = {1 / 10 ** k: 10 ** k for k in range(1, 10)}
"""A scale that is exactly the double of 10^-k (0.1, 0.01, ...) → 10^k. Such a register is
scaled by dividing: 2283 / 100 is the double nearest 22.83 (published and recorded as 22.83),
where 2283 × 0.01 is 22.830000000000002 for about one value in seven."""
LARGEST = sys.float_info.max
"""A reading beyond ±this (an infinity: a float register of 0x7F800000, a text field of
"inf" or "1e999"; an integer of hundreds of digits) is no measurement: quality `invalid`, as
NaN. The bounds a point without a valid range is judged against."""


def scaled(raw: float, scale: float, offset: float) -> float:
    """The engineering value of a raw number: raw × scale + offset, dividing for a decimal
    scale (`DECIMAL_DIVISORS`)."""
    divisor = DECIMAL_DIVISORS.get(scale)
    if divisor is not None:
        return raw / divisor + offset
    return raw * scale + offset


@dataclass(frozen=True, slots=True)
class BoundFlag:
    id: str  # device.point.flag
    bit: int
    quantity: str | None
    active_low: bool


@dataclass(frozen=True, slots=True)
class BoundPoint:
    """A point of one device, ready for decoding: engineering value = raw × scale + offset."""

    id: str  # device.point
    device: str
    name: str
    quantity: str | None
    unit: str | None
    scale: float
    offset: float
    valid_min: float | None
    valid_max: float | None
    enum: dict[int, str] | None
    flags: tuple[BoundFlag, ...]
    invert: bool
    spec: ModbusPoint | TextField = field(repr=False, compare=False)

    @property
    def modbus(self) -> ModbusPoint:
        assert isinstance(self.spec, ModbusPoint)
        return self.spec

    def engineering(self, raw: float) -> float:
        if self.scale == 1.0 and self.offset == 0.0:
            return raw
        return scaled(raw, self.scale, self.offset)

    def in_range(self, value: float) -> bool:
        """Within the point's valid range (a finite number, when it has none); False for NaN,
        an infinity or a number beyond ±`LARGEST`."""
        low = -LARGEST if self.valid_min is None else self.valid_min
        high = LARGEST if self.valid_max is None else self.valid_max
        return low <= value <= high  # False for NaN


_BOUND: dict[int, tuple[weakref.ref[Device], ModbusProfile | SerialTextProfile,
                        tuple[BoundPoint, ...]]] = {}
"""The points bound for each device object while it lives (by identity; config models are
immutable): the pollers, the rules' site points and the uplink's catalog each bind a config's
devices, and kept three copies of every point id (0.2 MiB at 2,000 points)."""


def bind_points(device: Device, profile: ModbusProfile | SerialTextProfile) -> list[BoundPoint]:
    """The enabled points of `device`, with its overrides applied (the same `BoundPoint`s for
    the same device and profile objects)."""
    key = id(device)
    known = _BOUND.get(key)
    if known is not None and known[0]() is device and known[1] is profile:
        return list(known[2])
    specs: tuple[ModbusPoint, ...] | tuple[TextField, ...] = (
        profile.points if isinstance(profile, ModbusProfile) else profile.fields
    )
    bound = []
    for spec in specs:
        override = device.points.get(spec.name)
        if override is not None and not override.enabled:
            continue
        flag_overrides = {flag.name: device.points[f"{spec.name}.{flag.name}"]
                          for flag in spec.flags if f"{spec.name}.{flag.name}" in device.points}
        bound.append(_bind(device.id, spec, override, flag_overrides))

    def forget(ref: weakref.ref[Device]) -> None:  # the device is gone: so is its entry
        if _BOUND.get(key, (None,))[0] is ref:
            del _BOUND[key]

    _BOUND[key] = (weakref.ref(device, forget), profile, tuple(bound))
    return bound


def _bind(device_id: str, spec: ModbusPoint | TextField, override: PointOverride | None,
          flag_overrides: dict[str, PointOverride]) -> BoundPoint:
    scale, offset = spec.scale, spec.offset
    valid_min = spec.valid.min if spec.valid else None
    valid_max = spec.valid.max if spec.valid else None
    quantity = spec.quantity
    invert = isinstance(spec, ModbusPoint) and spec.invert
    if override is not None:
        if override.invert is not None:
            invert = override.invert
        if override.scale is not None:
            scale = override.scale
        if override.offset is not None:
            offset += override.offset
        if override.valid_min is not None:
            valid_min = override.valid_min
        if override.valid_max is not None:
            valid_max = override.valid_max
        if override.quantity is not None:
            quantity = override.quantity
    point_id = f"{device_id}.{spec.name}"
    return BoundPoint(
        id=point_id,
        device=device_id,
        name=spec.name,
        quantity=quantity,
        unit=spec.unit,
        scale=scale,
        offset=offset,
        valid_min=valid_min,
        valid_max=valid_max,
        enum=spec.enum,
        flags=tuple(_bind_flag(point_id, f, flag_overrides.get(f.name)) for f in spec.flags
                    if f.name not in flag_overrides or flag_overrides[f.name].enabled),
        invert=invert,
        spec=spec,
    )


def _bind_flag(point_id: str, flag: Flag, override: PointOverride | None) -> BoundFlag:
    quantity, active_low = flag.quantity, flag.active_low
    if override is not None:
        quantity = override.quantity or quantity
        if override.invert is not None:
            active_low = override.invert
    return BoundFlag(id=f"{point_id}.{flag.name}", bit=flag.bit, quantity=quantity,
                     active_low=active_low)


def all_point_ids(points: list[BoundPoint]) -> list[str]:
    """Every sample id the points produce, flags included."""
    ids = []
    for point in points:
        ids.append(point.id)
        ids.extend(flag.id for flag in point.flags)
    return ids
