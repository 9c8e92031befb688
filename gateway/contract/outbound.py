"""The messages a gateway produces about itself, without pydantic (issue 15): its state
(`StateReport`, with `OutboxFigures` and `DeliveryTerms`) and its point catalog
(`CatalogReport` of `PointTags`) as plain frozen dataclasses that write their own bytes.

The models stay the wire's single source of truth — `GatewayState`, `OutboxStatus`,
`DeliveryInfo`, `PointCatalog`, `PointMeta`: the ingest decodes with them, the docs and the
tests validate with them — but a gateway needs no validator to say what it knows, and
building those five (with `TelemetryBatch`, see gateway.contract.telemetry_encoder) cost a
running gateway 1.4 MiB. Each `encode()` gives exactly `encode(<the model>)`'s bytes: the same
fields in the same order, nulls left out, written as pydantic-core writes JSON (the same
string escapes and float digits: gateway.contract.jsontext, no pydantic-core at rest). And it
refuses what the model refuses — each field checked by hand against the contract's rules
(gateway.contract.vocab: `TextRule`, `check_int`, `check_float`), the catalog's hash recomputed
over its points as `PointCatalog`'s validator does, the payload size limit kept — with
`ContractError`. tests/uplink/test_outbound.py shows both with hypothesis against the models
and `decode`, and that the fields and their order are the models';
tests/ops/test_producer_builds_no_validator.py that a running gateway builds no validator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar, TypeVar

from gateway.contract.channels import Channel
from gateway.contract.jsontext import to_json
from gateway.contract.points import PointTagged, catalog_hash
from gateway.contract.vocab import (
    HASH,
    ID,
    MAX_CATALOG_POINTS,
    MAX_PAYLOAD_BYTES,
    NAME,
    NS_END,
    POINT_ID,
    SHA256,
    SHORT,
    VERSION,
    ContractError,
    MessageKind,
    TextRule,
    check_float,
    check_int,
)
from gateway.records import dataclass, field

UNIT = TextRule(16)
"""`PointMeta.unit`."""
_T = TypeVar("_T")


def put(out: dict[str, object], name: str, value: _T | None,
         check: Callable[[str, _T], object]) -> None:
    """Set `out[name]` to the checked `value`, unless it is None (left out, as
    `exclude_none`)."""
    if value is not None:
        out[name] = check(name, value)


def count(what: str, value: object) -> int:
    return check_int(what, value, 0)


def ns(what: str, value: object) -> int:
    return check_int(what, value, 0, NS_END)


def positive(what: str, value: object) -> int:
    return check_int(what, value, 1, NS_END)


def one_of(what: str, value: object, allowed: tuple[str, ...]) -> str:
    if type(value) is not str or value not in allowed:
        raise ContractError(f"{what}: {value!r:.40} is not one of {', '.join(allowed)}")
    return value


def dumped(message: dict[str, object]) -> bytes:
    """`message` as compact JSON, within the payload limit (ContractError if not)."""
    try:
        data = to_json(message)
    except (TypeError, ValueError) as exc:  # not JSON, a lone surrogate (checked: neither)
        raise ContractError(f"cannot encode: {exc}") from None
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ContractError(f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    return data


# ---------------------------------------------------------------------------------- state

@dataclass(frozen=True, slots=True)
class OutboxFigures:
    """`OutboxStatus` without the model: the outbox's figures (the uplink's status, and the
    state's `outbox`). Checked when a state carrying them is encoded."""

    depth: int
    """Messages waiting for a PUBACK."""
    bytes: int
    budget: int
    oldest_age_s: float | None = None

    def wire(self) -> dict[str, object]:
        out: dict[str, object] = {"depth": count("outbox.depth", self.depth),
                                  "bytes": count("outbox.bytes", self.bytes),
                                  "budget": count("outbox.budget", self.budget)}
        if self.oldest_age_s is not None:
            out["oldest_age_s"] = check_float("outbox.oldest_age_s", self.oldest_age_s, 0.0)
        return out


@dataclass(frozen=True, slots=True)
class DeliveryTerms:
    """`DeliveryInfo` without the model: how the outbox lets go of entries."""

    mode: str
    """`ingest` or `puback`."""
    stream: int | None = None
    floor: int | None = None

    def wire(self) -> dict[str, object]:
        out: dict[str, object] = {"mode": one_of("delivery.mode", self.mode,
                                                  ("ingest", "puback"))}
        put(out, "stream", self.stream, positive)
        put(out, "floor", self.floor, positive)
        return out


@dataclass(frozen=True, slots=True)
class StateReport:
    """`GatewayState` without the model: the retained state (birth, refreshes, last will)."""

    channel: ClassVar[Channel] = Channel.STATE

    site: str
    gateway: str
    status: str
    """`online` or `offline`."""
    ts: int
    software: str | None = None
    config_version: str | None = None
    config_hash: str | None = None
    catalog: str | None = None
    boot: int | None = None
    outbox: OutboxFigures | None = None
    dropped: Mapping[MessageKind, int] = field(default_factory=dict)
    devices_online: int | None = None
    devices_total: int | None = None
    delivery: DeliveryTerms | None = None

    def wire(self) -> dict[str, object]:
        """The message's fields as the model writes them (checked; ContractError if not)."""
        out: dict[str, object] = {
            "v": VERSION, "site": ID.check("site", self.site),
            "gateway": ID.check("gateway", self.gateway),
            "status": one_of("status", self.status, ("online", "offline")),
            "ts": ns("ts", self.ts)}
        put(out, "software", self.software, SHORT.check)
        put(out, "config_version", self.config_version, SHORT.check)
        put(out, "config_hash", self.config_hash, SHA256.check)
        put(out, "catalog", self.catalog, HASH.check)
        put(out, "boot", self.boot, ns)
        if self.outbox is not None:
            out["outbox"] = self.outbox.wire()
        dropped: dict[str, int] = {}
        for kind, n in self.dropped.items():
            if type(kind) is not MessageKind:
                raise ContractError(f"dropped: {kind!r:.40} is not a message kind")
            dropped[kind.value] = count(f"dropped.{kind.value}", n)
        out["dropped"] = dropped
        put(out, "devices_online", self.devices_online, count)
        put(out, "devices_total", self.devices_total, count)
        if self.delivery is not None:
            out["delivery"] = self.delivery.wire()
        return out

    def encode(self) -> bytes:
        return dumped(self.wire())


# ---------------------------------------------------------------------------------- catalog

@dataclass(frozen=True, slots=True)
class PointTags:
    """`PointMeta` without the model: what the ingest tags a point with."""

    device: str
    room: str | None = None
    quantity: str | None = None
    unit: str | None = None


def tags_wire(tags: PointTagged) -> dict[str, object]:
    """A point's tags as `PointMeta` writes them (checked; ContractError if not)."""
    out: dict[str, object] = {"device": ID.check("device", tags.device)}
    put(out, "room", tags.room, ID.check)
    put(out, "quantity", tags.quantity, NAME.check)
    put(out, "unit", tags.unit, UNIT.check)
    return out


@dataclass(frozen=True, slots=True)
class CatalogReport:
    """`PointCatalog` without the model: the gateway's points and their tags. `points` is
    the caller's mapping, not a copy (the exception filter reads it too)."""

    channel: ClassVar[Channel] = Channel.META

    site: str
    gateway: str
    catalog: str
    """`catalog_hash(points)`."""
    produced: int
    points: Mapping[str, PointTagged]

    @classmethod
    def build(cls, *, site: str, gateway: str, produced: int,
              points: Mapping[str, PointTagged]) -> CatalogReport:
        """The catalog of `points`, named by their hash; ContractError if the contract refuses
        it (checked now, so a bad one fails where it is made)."""
        try:
            digest = catalog_hash(points)
        except (TypeError, ValueError):  # not strings: `wire` says which point
            digest = ""
        report = cls(site, gateway, digest, produced, points)
        report.wire()
        return report

    def wire(self) -> dict[str, object]:
        """The message's fields as the model writes them (checked, the hash recomputed as
        `PointCatalog`'s validator does; ContractError if not)."""
        if len(self.points) > MAX_CATALOG_POINTS:
            raise ContractError(f"points: {len(self.points)}, more than {MAX_CATALOG_POINTS}")
        written: dict[int, dict[str, object]] = {}  # points of a device share their tags
        points: dict[str, object] = {}
        for point, tags in self.points.items():
            meta = written.get(id(tags))
            if meta is None:
                try:
                    meta = written[id(tags)] = tags_wire(tags)
                except ContractError as exc:
                    raise ContractError(f"point {point!r:.80}: {exc}") from None
            points[POINT_ID.check("point", point)] = meta
        out: dict[str, object] = {
            "v": VERSION, "site": ID.check("site", self.site),
            "gateway": ID.check("gateway", self.gateway),
            "catalog": HASH.check("catalog", self.catalog),
            "produced": ns("produced", self.produced), "points": points}
        if catalog_hash(self.points) != self.catalog:
            raise ContractError("catalog does not match the hash of its points")
        return out

    def encode(self) -> bytes:
        return dumped(self.wire())


OutboundMessage = StateReport | CatalogReport
"""What the gateway's uplink encodes itself (the rest goes through `encode(model)`)."""
