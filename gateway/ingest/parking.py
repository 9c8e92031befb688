"""Telemetry batches held for their point catalog: how many may wait (`park_limit`) and which
go to the dead-letter log when more wait (`shed`), so one gateway's flood of batches naming
unknown catalogs never costs another gateway, within its share, its batches. Used by
`gateway.ingest.writer`, which parks the batches."""

from __future__ import annotations

from collections import deque

from gateway.ingest.catalogs import GatewayKey
from gateway.ingest.items import Item
from gateway.ingest.settings import IngestSettings


def park_limit(settings: IngestSettings) -> int:
    """Batches held for their catalog at most: `max_parked`, and never more than half of the
    unacknowledged messages the broker sends us at once — MQTT 5 `receive_maximum` (we tell
    the broker), MQTT 3.1.1 `broker_max_inflight` (the broker's own setting, Mosquitto's
    `max_inflight_messages`, default 20) — since a parked batch holds its place in that window:
    the other half keeps the stream, and the catalog the batches wait for, flowing."""
    m = settings.mqtt
    window = m.receive_maximum if m.protocol == "5" else m.broker_max_inflight
    return min(settings.max_parked, max(1, window // 2))


def shed(parked: list[Item], limit: int) -> tuple[list[Item], list[Item]]:
    """(kept, shed) so that at most `limit` batches stay parked, each shed batch with its
    `dead_reason`. The limit is shared among the gateways (site, gateway) with batches parked:
    while more than `limit` wait, the gateway holding the most (on a tie the one whose oldest
    batch is oldest) gives up its own oldest batch. A gateway within its share (`limit`
    divided by the gateways waiting) thus never loses a batch to another's flood; a gateway
    alone may use the whole limit until others need their share."""
    if len(parked) <= limit:
        return parked, []
    queues: dict[GatewayKey, deque[Item]] = {}
    for item in parked:
        assert item.waiting is not None
        queues.setdefault((item.waiting[0], item.waiting[1]), deque()).append(item)
    waiting, gateways = len(parked), len(queues)
    share = max(1, limit // gateways)
    out: list[Item] = []
    while waiting > limit:
        (site, gateway), queue_ = max(queues.items(),
                                      key=lambda kv: (len(kv[1]), -kv[1][0].received))
        held = len(queue_)
        oldest = queue_.popleft()
        if not queue_:
            del queues[(site, gateway)]
        waiting -= 1
        assert oldest.waiting is not None
        oldest.dead_reason = (
            f"unknown catalog {oldest.waiting[2]} of {site}/{gateway}: the gateway held {held} "
            f"batches waiting for catalogs, more than its share of {share} (at most {limit} "
            f"wait, shared by the {gateways} gateways waiting)")
        oldest.dead_kind = "unknown_catalog"
        out.append(oldest)
    gone = {id(item) for item in out}
    return [item for item in parked if id(item) not in gone], out
