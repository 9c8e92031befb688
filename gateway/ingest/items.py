"""One received MQTT message on its way through the ingest (`Item`: what it decoded to, whether
it waits for a catalog, is a duplicate or goes to the dead-letter log, and what it counts
towards a gateway's acknowledgement watermark), and the small judgements made about it."""

from __future__ import annotations

import urllib3
from influxdb_client.rest import ApiException

from gateway.contract.wire import AlarmEventMessage, GatewayState, IncidentChunk, TelemetryBatch
from gateway.ingest.dedup import SeenKey
from gateway.records import dataclass, field

CatalogKey = tuple[str, str, str]
Delivery = tuple[str, str, int, int]


@dataclass(slots=True)
class Item:
    mid: int
    qos: int
    generation: int
    topic: str
    payload: bytes
    received: float = 0.0
    """monotonic time of arrival"""
    channel: str = "unknown"
    lines: list[str] = field(default_factory=list)
    key: SeenKey | None = None
    waiting: CatalogKey | None = None
    """The catalog this batch names and the ingest does not know (yet)."""
    batch: TelemetryBatch | None = None
    dead_reason: str | None = None
    dead_kind: str = "malformed"
    duplicate: bool = False
    delivery: Delivery | None = None
    """(site, gateway, stream, dseq): counts towards the gateway's ack watermark when done."""
    floor: Delivery | None = None
    """(site, gateway, stream, floor) from a gateway state."""
    incident: IncidentChunk | None = None
    """A piece of an incident record, for the incident store (issue 12)."""
    gateway_ts: int | None = None
    """The gateway's own time of a message written at the ingest's receive time instead (its
    clock implausible: gateway.ingest.timecheck.Restamper)."""
    cut: tuple[int, str] | None = None
    """(length, SHA-256) of a dead message's payload cut to its dead-letter prefix when it
    was queued (gateway.ingest.writer.IngestWriter.put)."""
    queued_bytes: int = 0
    """What a QoS 0 item counts against the writer's QoS 0 queue bound."""

    @property
    def decoded(self) -> bool:
        """A dead item's payload is a contract message, refused for what it says (kept whole
        in the dead-letter log), not junk or a message a bug stopped."""
        return self.dead_kind not in UNDECODED


UNDECODED = frozenset({"malformed", "internal"})
"""The dead kinds of payloads that did not decode (or whose decoding a bug stopped)."""


def retryable(exc: BaseException) -> bool:
    """Worth another try: 429 and 5xx answers, timeouts and connection errors."""
    if isinstance(exc, ApiException):
        status = exc.status or 0
        return status == 0 or status == 429 or status >= 500
    return isinstance(exc, urllib3.exceptions.HTTPError | OSError)


def api_reason(exc: ApiException) -> str:
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body)
    return body[:300].replace("\n", " ")


def short(exc: BaseException | None) -> str:
    return "" if exc is None else f"{type(exc).__name__}: {str(exc)[:200]}".replace("\n", " ")


def delivery_of(message: object) -> tuple[Delivery | None, Delivery | None]:
    """(site, gateway, stream, dseq) of a message the gateway waits to see acknowledged, and
    (site, gateway, stream, floor) of a gateway state that tells its floor."""
    if isinstance(message, TelemetryBatch | AlarmEventMessage | IncidentChunk) \
            and message.stream is not None \
            and message.dseq is not None:
        return (message.site, message.gateway, message.stream, message.dseq), None
    if isinstance(message, GatewayState) and message.delivery is not None:
        info = message.delivery
        if info.mode == "ingest" and info.stream is not None and info.floor is not None:
            return None, (message.site, message.gateway, info.stream, info.floor)
    return None, None


def repeated_row(message: object) -> str | None:
    """Why a telemetry batch is refused for holding a point twice at one time, or None: two
    values of one series at one instant (VictoriaMetrics keeps both, InfluxDB the last: the
    stores would disagree; gateways never send one — found by the central audit). It is
    dead-lettered whole (kind `contract`), for a person to look at."""
    if not isinstance(message, TelemetryBatch):
        return None
    rows = message.samples
    if len({(row[0], row[2]) for row in rows}) == len(rows):
        return None
    seen: set[tuple[str, int]] = set()
    for point, _value, dt, _quality in rows:
        if (point, dt) in seen:
            return (f"telemetry: point {point} appears twice at t0 + {dt} ns (a batch holds "
                    "each point at most once)")
        seen.add((point, dt))
    return None
