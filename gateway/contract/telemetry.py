"""Messages that carry data up: the delivery watermark (end-to-end acknowledgement),
telemetry batches and the point catalog."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
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
    """Reported samples (after the exception filter) of the polls of one commit interval, each
    point at most once: a gateway's polls of distinct devices share a batch, a point polled
    again starts the next (gateway.uplink.committer)."""

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
_INT = frozenset({int})
_PLAIN = frozenset({float, int, bool, type(None)})
MAX_KNOWN_POINTS = 100_000
"""Point ids `TelemetryEncoder` remembers as valid (a config's points; beyond: validated
through the model each time, which is only slower)."""

_ENVELOPE = 1024
"""Bytes `payload` may add to a batch's rows at most (ids ≤ 64 characters, catalog, numbers)."""
_GOOD_TEXT = Quality.GOOD.value
Row = tuple[str, SampleValue, int, str]
_Columns = tuple[int, tuple[str, ...], tuple[SampleValue, ...], tuple[int, ...], list[str],
                 set[type]]


@dataclass(slots=True)
class EncodedRows:
    """A batch's rows already in wire form (`TelemetryEncoder.prepare`, grown by `extend`):
    `t0` and the JSON of the `samples` array's rows (`parts`, each a run of rows without the
    brackets); the numbers and the envelope are added by `TelemetryEncoder.payload` when the
    outbox gives them. `points`: the point ids it holds (a batch holds each at most once)."""

    t0: int
    parts: list[bytes]
    count: int
    size: int
    points: set[str]


def _offsets(stamps: tuple[int, ...], t0: int) -> list[int]:
    """Each row's `dt` (one reply's samples share their time: then one subtraction)."""
    first = stamps[0]
    if stamps.count(first) == len(stamps):
        return [first - t0] * len(stamps)
    return [ts - t0 for ts in stamps]


class TelemetryEncoder:
    """Encodes a gateway's telemetry batches without building a `TelemetryBatch` per batch:
    the bytes are exactly `encode(TelemetryBatch.from_samples(...))`'s (the same serializer,
    pydantic-core's `to_json`, over the same fields in the same order). The model's checks
    are done once where they cannot change — site, gateway and catalog when made, each point
    id the first time it is seen — and per batch only as plain type and range tests over its
    columns (C-level passes: `zip`, `map(type, …)`, `min`/`max`, `sum`, set containment; no
    Python statement per sample); a batch that needs more (a string value, an integer beyond
    64 bits, a timestamp out of range, a point id not valid) gets `None` from `rows`, and the
    caller builds it through the model (which also says what is wrong).

    `prepare` turns a batch into its rows' JSON once (on the event loop, while the samples are
    fresh in the cache), `extend` appends a later poll's rows to it (their `dt` counted from
    its `t0`, so the JSON is spliced, never re-encoded); `payload` adds the envelope when the
    sequence numbers are known (the writer thread): the same bytes as the model's encoding of
    all those samples in one batch. tests/uplink/test_telemetry_encoder.py checks the bytes
    and the rows against the per-sample reference with hypothesis. The encoder's state (the
    known points) is only added to: `rows`, `prepare` and `extend` belong to one thread,
    `payload` and `encode` to any."""

    def __init__(self, *, site: str, gateway: str, catalog: str | None) -> None:
        validated(TelemetryBatch, site=site, gateway=gateway, seq=1, produced=0,
                  catalog=catalog, t0=0, samples=(("p", None, 0, Quality.GOOD),))
        self.site, self.gateway, self.catalog = site, gateway, catalog
        self._known: dict[str, None] = {}
        """The point ids seen valid (a dict: a set of 2,000 took 128 KiB, this 51)."""

    def rows(self, samples: list[Sample], produced: int, base: int | None = None
             ) -> tuple[int, list[Row]] | None:
        """(t0, wire rows) of a batch made at `produced` that the fast path can encode, else
        None. `base`: the t0 to count `dt` from (a batch these rows join), None if it is older
        than a sample (else t0 is the oldest sample's time)."""
        cols = self._columns(samples, produced, base)
        if cols is None:
            return None
        t0, points, values, stamps, wire, _kinds = cols
        return t0, list(zip(points, values, _offsets(stamps, t0), wire, strict=True))

    def _columns(self, samples: list[Sample], produced: int, base: int | None) -> _Columns | None:
        """The batch as checked columns (t0, points, wire values, stamps, wire qualities,
        value types), or None for the model path."""
        if not samples or len(samples) > MAX_BATCH_ROWS or type(produced) is not int \
                or not 0 <= produced < _LIMIT:
            return None
        try:
            points, values, stamps, qualities = zip(*samples, strict=True)
            if not _INT.issuperset(map(type, stamps)):
                return None
            t0 = min(stamps)
            if t0 < 0 or max(stamps) >= _LIMIT:
                return None
            if base is not None:
                if base > t0:
                    return None
                t0 = base
            kinds = set(map(type, values))
            if not _PLAIN.issuperset(kinds):
                return None
            if int in kinds:
                ints = values if len(kinds) == 1 else [v for v in values if type(v) is int]
                if min(ints) < -_LIMIT or max(ints) >= _LIMIT:
                    return None
            if float in kinds:
                floats = values if len(kinds) == 1 else [v for v in values
                                                         if type(v) is float]
                total = sum(floats)
                if total - total != 0.0:  # a NaN or ±inf among them (or a sum beyond range)
                    values = tuple(None if type(v) is float and v - v != 0.0 else v
                                   for v in values)  # JSON has no NaN: null, as the model
                    kinds = set(map(type, values))
            n = len(qualities)
            wire: list[str] = [_GOOD_TEXT] * n if qualities.count(Quality.GOOD) == n \
                else list(map(_WIRE_QUALITY.__getitem__, qualities))
            known = self._known
            if not all(map(known.__contains__, points)):
                for point in points:
                    if point not in known and not self._learn(point):
                        return None
        except (TypeError, ValueError, KeyError):  # not 4-tuples, not a quality, unhashable
            return None
        return t0, points, values, stamps, wire, kinds

    @staticmethod
    def _part(cols: _Columns) -> bytes:
        """The rows' JSON without the brackets (`to_json`: ryu's float digits, far cheaper
        than `repr` joined by hand)."""
        t0, points, values, stamps, wire, _kinds = cols
        return to_json(list(zip(points, values, _offsets(stamps, t0), wire, strict=True)))[1:-1]

    def prepare(self, samples: list[Sample], produced: int) -> EncodedRows | None:
        """The batch's rows encoded once (None: the model must build it, see `rows`)."""
        cols = self._columns(samples, produced, None)
        if cols is None:
            return None
        part = self._part(cols)
        if len(part) > MAX_PAYLOAD_BYTES - _ENVELOPE:
            return None  # too large: the model path says so
        return EncodedRows(cols[0], [part], len(cols[1]), len(part), set(cols[1]))

    def extend(self, encoded: EncodedRows, samples: list[Sample], produced: int) -> bool:
        """Append a poll's samples to `encoded` (their `dt` from its `t0`); False, and
        `encoded` unchanged, if they cannot join it: a point it holds already, a sample older
        than its `t0`, more than MAX_BATCH_ROWS rows or the payload limit together, or
        anything `rows` leaves to the model."""
        if encoded.count + len(samples) > MAX_BATCH_ROWS:
            return False
        cols = self._columns(samples, produced, encoded.t0)
        if cols is None or not encoded.points.isdisjoint(cols[1]):
            return False
        part = self._part(cols)
        if encoded.size + 1 + len(part) > MAX_PAYLOAD_BYTES - _ENVELOPE:
            return False
        encoded.parts.append(part)
        encoded.count += len(cols[1])
        encoded.size += 1 + len(part)
        encoded.points.update(cols[1])
        return True

    def _learn(self, point: object) -> bool:
        if type(point) is not str or len(self._known) >= MAX_KNOWN_POINTS:
            return False
        try:
            validated(TelemetryBatch, site=self.site, gateway=self.gateway, seq=1, produced=0,
                      t0=0, samples=((point, None, 0, Quality.GOOD),))
        except ContractError:
            return False
        self._known[point] = None
        return True

    def encode(self, t0: int, rows: list[Row], *, seq: int, produced: int,
               stream: int | None = None, dseq: int | None = None) -> bytes:
        """The payload of a batch whose `rows` came from `rows()`. The numbers are copied in as
        given, as the committer's model path does (`seq`, `stream` and `dseq` come from the
        outbox's counters); ContractError only for a payload beyond MAX_PAYLOAD_BYTES."""
        part = to_json(rows)[1:-1]
        return self.payload(EncodedRows(t0, [part], len(rows), len(part), set()), seq=seq,
                            produced=produced, stream=stream, dseq=dseq)

    def payload(self, encoded: EncodedRows, *, seq: int, produced: int,
                stream: int | None = None, dseq: int | None = None) -> bytes:
        """The payload of a batch `prepare` encoded: the envelope (to_json of the model's
        fields before `samples`, in its order) with the rows' JSON spliced in last."""
        message: dict[str, object] = {"v": 1, "site": self.site, "gateway": self.gateway}
        if stream is not None:
            message["stream"], message["dseq"] = stream, dseq
        message["seq"], message["produced"] = seq, produced
        if self.catalog is not None:
            message["catalog"] = self.catalog
        message["t0"] = encoded.t0
        head = to_json(message)  # ends with the closing brace
        data = b"".join((head[:-1], b',"samples":[', b",".join(encoded.parts), b"]}"))
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
    Batches name it by `catalog`; the ingest keeps the newest few of each gateway
    (gateway.ingest.catalogs)."""

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
