"""Messages that carry data up: the delivery watermark (end-to-end acknowledgement),
telemetry batches and the point catalog."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Annotated, Literal, Self

from pydantic import (
    Field,
    StringConstraints,
    model_validator,
)
from pydantic_core import to_json

from gateway.contract.base import (
    MAX_BATCH_ROWS,
    MAX_CATALOG_POINTS,
    MAX_PAYLOAD_BYTES,
    ContractError,
    Hash,
    Id,
    Name,
    Ns,
    PointId,
    Seq,
    Upstream,
    Value,
    WireModel,
    validated,
)
from gateway.contract.enums import Quality
from gateway.contract.sample import Sample
from gateway.contract.sample import Value as SampleValue

# ------------------------------------------------------------ delivery (end-to-end ack) ----
# Owned by the uplink / ingest (issue 10): the ingest's acknowledgement watermark.

StreamId = Annotated[int, Field(ge=1, lt=2**63)]
"""Names one outbox's delivery numbering (random, made when the outbox file is created): a
gateway whose outbox was wiped starts a new stream, so an old watermark never covers it."""


class DeliveryInfo(WireModel):
    """How a gateway's outbox lets go of telemetry and alarm events (in GatewayState).

    `ingest`: an entry leaves only when the ingest's `ack` watermark covers its `dseq`;
    `puback`: when the broker acknowledges it (for a consumer other than the RoomWarden
    ingest; the broker's PUBACK then is the whole guarantee)."""

    mode: Literal["ingest", "puback"]
    stream: StreamId | None = None
    floor: Annotated[int, Field(ge=1, lt=2**63)] | None = None
    """The lowest `dseq` the gateway still holds (or the next it will give): numbers below it
    will never be sent again (covered, or dropped to stay within the disk budget), so the
    ingest may count them as done."""


class Delivered(Upstream):
    """A message the ingest acknowledges: `stream` and `dseq` (both or neither; neither in
    `puback` mode)."""

    stream: StreamId | None = None
    dseq: Annotated[int, Field(ge=1, lt=2**63)] | None = None
    """Delivery sequence: 1, 2, 3 … per stream over telemetry batches and alarm events
    together, in the order the outbox committed them."""

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if (self.stream is None) != (self.dseq is None):
            raise ValueError("stream and dseq go together")
        return self


class DeliveryAck(Upstream):
    """Published by the ingest (retained, QoS 1) on `<root>/<site>/<gateway>/ack` after the
    database accepted a batch or event: every `dseq` ≤ `upto` of `stream` is stored (or
    dead-lettered: the ingest will do nothing more with it). `highest` is the highest `dseq`
    stored so far: numbers between `upto` and `highest` are holes the gateway re-sends."""

    ts: Ns
    stream: StreamId
    upto: Annotated[int, Field(ge=0, lt=2**63)]
    highest: Annotated[int, Field(ge=0, lt=2**63)]

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.highest < self.upto:
            raise ValueError("highest must not be below upto")
        return self

# -------------------------------------------------------- end of delivery (end-to-end ack) ----


# ---------------------------------------------------------------------------------- telemetry

SampleRow = tuple[PointId, Value, Annotated[int, Field(ge=0, lt=2**63)], Quality]
"""`[point, value, dt, quality]`: dt is ns after the batch's `t0`."""


def wire_value(value: SampleValue) -> SampleValue:
    """A sample value as the wire carries it: a NaN or infinite float (kept by acquisition with
    quality `invalid`) becomes null, since JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class TelemetryBatch(Delivered):
    """One poll cycle's reported samples (after the exception filter)."""

    seq: Seq
    """Per gateway, strictly increasing, survives restarts: the ingest's duplicate key."""
    produced: Ns
    """When the gateway made the batch (the samples keep their own acquisition times)."""
    catalog: Hash | None = None
    """The `PointCatalog` that describes the points (tags for the ingest)."""
    t0: Ns
    """The oldest sample's timestamp; each row's time is t0 + dt."""
    samples: Annotated[tuple[SampleRow, ...], Field(min_length=1, max_length=MAX_BATCH_ROWS)]

    @model_validator(mode="after")
    def _times(self) -> Self:
        for row in self.samples:
            if self.t0 + row[2] >= 2**63:
                raise ValueError(f"sample {row[0]}: t0 + dt is out of range")
        return self

    @classmethod
    def from_samples(cls, *, site: str, gateway: str, seq: int, produced: int,
                     samples: list[Sample], catalog: str | None = None) -> TelemetryBatch:
        if not samples:
            raise ContractError("a telemetry batch needs at least one sample")
        t0 = min(s.ts for s in samples)
        rows = tuple((s.point, wire_value(s.value), s.ts - t0, Quality(s.quality))
                     for s in samples)
        return validated(cls, site=site, gateway=gateway, seq=seq, produced=produced,
                      catalog=catalog, t0=t0, samples=rows)

    def to_samples(self) -> list[Sample]:
        return [Sample(point, value, self.t0 + dt, quality)
                for point, value, dt, quality in self.samples]


_WIRE_QUALITY = {q: q.value for q in Quality}
_LIMIT = 2**63
MAX_KNOWN_POINTS = 100_000
"""Point ids `TelemetryEncoder` remembers as valid (a config's points; beyond: validated
through the model each time, which is only slower)."""


class TelemetryEncoder:
    """Encodes a gateway's telemetry batches without building a `TelemetryBatch` per batch:
    the bytes are exactly `encode(TelemetryBatch.from_samples(...))`'s (the same serializer,
    pydantic-core's `to_json`, over the same fields in the same order). The model's checks
    are done once where they cannot change — site, gateway and catalog when made, each point
    id the first time it is seen — and per sample only as plain type and range tests; a batch
    that needs more (a string value, an integer beyond 64 bits, a timestamp out of range, a
    point id not valid) gets `None` from `rows`, and the caller builds it through the model
    (which also says what is wrong). tests/uplink/test_telemetry_encoder.py checks the
    bytes with hypothesis."""

    def __init__(self, *, site: str, gateway: str, catalog: str | None) -> None:
        validated(TelemetryBatch, site=site, gateway=gateway, seq=1, produced=0,
                  catalog=catalog, t0=0, samples=(("p", None, 0, Quality.GOOD),))
        self.site, self.gateway, self.catalog = site, gateway, catalog
        self._known: set[str] = set()

    def rows(self, samples: list[Sample], produced: int
             ) -> tuple[int, list[tuple[str, SampleValue, int, str]]] | None:
        """(t0, wire rows) of a batch made at `produced` that the fast path can encode, else
        None."""
        if not samples or len(samples) > MAX_BATCH_ROWS or type(produced) is not int \
                or not 0 <= produced < _LIMIT:
            return None
        try:
            t0 = min(s[2] for s in samples)
            if t0 < 0 or max(s[2] for s in samples) >= _LIMIT:
                return None
        except TypeError:
            return None
        known, quality_of = self._known, _WIRE_QUALITY
        rows: list[tuple[str, SampleValue, int, str]] = []
        append = rows.append
        for point, value, ts, quality in samples:
            kind = type(value)
            if kind is float:
                if value - value != 0.0:  # type: ignore[operator]  # NaN or ±inf: null
                    value = None
            elif kind is int:
                if not -_LIMIT <= value < _LIMIT:  # type: ignore[operator]
                    return None
            elif value is not None and kind is not bool:
                return None
            if point not in known and not self._learn(point):
                return None
            wire_quality = quality_of.get(quality)
            if wire_quality is None or type(ts) is not int:
                return None
            append((point, value, ts - t0, wire_quality))
        return t0, rows

    def _learn(self, point: object) -> bool:
        if type(point) is not str or len(self._known) >= MAX_KNOWN_POINTS:
            return False
        try:
            validated(TelemetryBatch, site=self.site, gateway=self.gateway, seq=1, produced=0,
                      t0=0, samples=((point, None, 0, Quality.GOOD),))
        except ContractError:
            return False
        self._known.add(point)
        return True

    def encode(self, t0: int, rows: list[tuple[str, SampleValue, int, str]], *, seq: int,
               produced: int, stream: int | None = None, dseq: int | None = None) -> bytes:
        """The payload of a batch whose `rows` came from `rows()`. The numbers are copied in as
        given, as the committer's model path does (`seq`, `stream` and `dseq` come from the
        outbox's counters); ContractError only for a payload beyond MAX_PAYLOAD_BYTES."""
        message: dict[str, object] = {"v": 1, "site": self.site, "gateway": self.gateway}
        if stream is not None:
            message["stream"], message["dseq"] = stream, dseq
        message["seq"], message["produced"] = seq, produced
        if self.catalog is not None:
            message["catalog"] = self.catalog
        message["t0"], message["samples"] = t0, rows
        data = to_json(message)
        if len(data) > MAX_PAYLOAD_BYTES:
            raise ContractError(f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        return data


class PointMeta(WireModel):
    """What the ingest needs to write a point: InfluxDB tags site, gateway, room, device (and
    quantity, unit); the field is the point's name."""

    device: Id
    room: Id | None = None
    quantity: Name | None = None
    unit: Annotated[str, StringConstraints(max_length=16)] | None = None


def catalog_hash(points: dict[str, PointMeta]) -> str:
    """The content hash that names a catalog: 16 hex digits of SHA-256 over canonical JSON."""
    canonical = json.dumps({p: m.model_dump() for p, m in sorted(points.items())},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class PointCatalog(Upstream):
    """The gateway's points and their metadata, sent on connect and when the config changes.
    Batches name it by `catalog`; the ingest keeps every catalog it has seen."""

    catalog: Hash
    produced: Ns
    points: Annotated[dict[PointId, PointMeta], Field(max_length=MAX_CATALOG_POINTS)]

    @model_validator(mode="after")
    def _hash(self) -> Self:
        if catalog_hash(self.points) != self.catalog:
            raise ValueError("catalog does not match the hash of its points")
        return self

    @classmethod
    def build(cls, *, site: str, gateway: str, produced: int,
              points: dict[str, PointMeta]) -> PointCatalog:
        return validated(cls, site=site, gateway=gateway, produced=produced,
                      catalog=catalog_hash(points), points=points)
