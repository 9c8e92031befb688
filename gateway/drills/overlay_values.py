"""What a live drill may set a point to: a value of the point's own kind. A drill that set a
temperature to `hot`, NaN or `true`, or a smoke detector's alarm bit to `7` or `"yes"`, was
accepted and then raised nothing — its evaluation counted misses and blamed the rules (the
drills audit). Each `set` signal is sampled over the drill's duration and every value checked
against the kind the point's device decodes: `bool` (coils, discrete inputs, bits and flags),
a finite `number`, or `text`; points whose values are labels or bit strings are not checked."""

from __future__ import annotations

import math
from collections.abc import Iterable

from gateway.config.loader import LoadedConfig
from gateway.config.profile import DataType, ModbusPoint, TextField
from gateway.config.site import Device
from gateway.drills.model import Drill
from gateway.field.points import bind_points
from gateway.field.sample import Value

SAMPLED_SECONDS = 600
"""Seconds of a signal sampled (one a second, from 0, at most the drill's duration)."""


def point_kinds(loaded: LoadedConfig, devices: Iterable[Device]) -> dict[str, str]:
    """Point id → `bool`, `number` or `text`, for the points of `devices` whose kind is sure."""
    kinds: dict[str, str] = {}
    for device in devices:
        for point in bind_points(device, loaded.profile_of(device)):
            for flag in point.flags:
                kinds[flag.id] = "bool"
            kind = _kind(point.spec, point.enum is not None)
            if kind is not None:
                kinds[point.id] = kind
    return kinds


def _kind(spec: ModbusPoint | TextField, labelled: bool) -> str | None:
    if labelled or spec.flags:
        return None
    if isinstance(spec, ModbusPoint):  # the profile's own word for what is a number
        if spec.type.is_numeric:
            return "number"
        return "bool" if spec.type is DataType.BOOL else "text"
    return {"bool": "bool", "string": "text", "float": "number", "int": "number"}.get(spec.type)


def wrong_values(drill: Drill, kinds: dict[str, str]) -> list[str]:
    """`steps[i].set.<point>: …` for each value a step would set that the point cannot have."""
    seconds = int(min(drill.duration, SAMPLED_SECONDS))
    wrong = []
    for index, step in enumerate(drill.steps):
        for point, signal in (step.set or {}).items():
            kind = kinds.get(point)
            if kind is None:
                continue
            for t in range(seconds + 1):
                value = signal.at(float(t))
                if not _fits(value, kind):
                    wrong.append(f"steps[{index}].set.{point}: {value!r} (at {t} s) is no "
                                 f"{'finite number' if kind == 'number' else kind} value, "
                                 f"as this point's are")
                    break
    return wrong


def _fits(value: Value, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "text":
        return isinstance(value, str)
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)
