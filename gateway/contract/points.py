"""What a telemetry row's value and a catalog's hash are, without pydantic (issue 15): shared by
the models (gateway.contract.telemetry) and what a running gateway writes without them
(gateway.contract.outbound, gateway.contract.telemetry_encoder)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Protocol

from gateway.contract.sample import Value as SampleValue


def wire_value(value: SampleValue) -> SampleValue:
    """A sample value as the wire carries it: a NaN or infinite float (kept by acquisition with
    quality `invalid`) becomes null, since JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class PointTagged(Protocol):
    """What a catalog says of a point: a `PointMeta`, or the gateway's `PointTags`
    (gateway.contract.outbound) that makes the same catalog without a model."""

    @property
    def device(self) -> str: ...
    @property
    def room(self) -> str | None: ...
    @property
    def quantity(self) -> str | None: ...
    @property
    def unit(self) -> str | None: ...


def catalog_hash(points: Mapping[str, PointTagged]) -> str:
    """The content hash that names a catalog: 16 hex digits of SHA-256 over canonical JSON
    (each point's four fields, null ones too: what `PointMeta.model_dump()` gives)."""
    canonical = json.dumps({p: {"device": m.device, "room": m.room, "quantity": m.quantity,
                                "unit": m.unit} for p, m in sorted(points.items())},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
