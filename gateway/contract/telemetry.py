"""Messages that carry data up: the delivery watermark (end-to-end acknowledgement),
telemetry batches and the point catalog."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import (
    Field,
    StringConstraints,
    model_validator,
)

from gateway.contract.base import (
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
from gateway.contract.points import PointTagged, catalog_hash, wire_value
from gateway.contract.sample import Sample
from gateway.contract.vocab import MAX_BATCH_ROWS, MAX_CATALOG_POINTS, ContractError

__all__ = ["PointTagged", "catalog_hash", "wire_value"]  # (and the models below)

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


class PointMeta(WireModel):
    """What the ingest needs to write a point: InfluxDB tags site, gateway, room, device (and
    quantity, unit); the field is the point's name."""

    device: Id
    room: Id | None = None
    quantity: Name | None = None
    unit: Annotated[str, StringConstraints(max_length=16)] | None = None


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
