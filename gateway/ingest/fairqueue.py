"""The writer's intake: one queue per gateway, served round-robin, alarms and states first, and
bounded per gateway (central audit, findings 5 and 8).

One FIFO served messages in arrival order, so a gateway's burst (320,000 alarm events on its own
topic) put every other gateway's alarms behind it: their latency to the database rose from
1 s to 6.5 s (p50) and 12 s (max) even with nothing dropped. Here each gateway (site, gateway
of the topic) has two lanes:

* *urgent* — the `alarms` and `state` channels: an alarm event or a live state is never behind
  another gateway's telemetry backlog, and behind at most one urgent message of each other
  gateway with urgent messages waiting;
* *bulk* — everything else (telemetry, catalogs, incident chunks, what did not parse).

`get` takes from the urgent lanes first, one message per gateway in turn (round-robin), then
from the bulk lanes the same way. A gateway's own messages keep their order within a lane.
Nothing depends on the order across lanes or gateways: duplicates are recognised by key or
delivery number, and each gateway's watermark counts every delivery number done, in any order.

**Bound.** Each queued message costs its payload, its line protocol and `ITEM_OVERHEAD` (what
Python holds besides). `put` — paho's network thread — waits while the message's gateway
already has `per_gateway_bytes` queued, or the whole queue `total_bytes`, until the writer
takes some (a message alone in its gateway's lanes is always let in, whatever its size). While
it waits the ingest reads nothing more from the broker: the broker keeps the rest (its queue for
the ingest, `max_queued_messages` in the shipped Mosquitto config, sized in that file). That is
the only bound the ingest can hold by itself: Mosquitto 2.0.11 sends more than the MQTT 5
Receive Maximum the ingest announces whenever acknowledgements flow while a backlog is queued
for it (measured: a window of 50 held 13,942 unacknowledged messages once acknowledgements
began; the audit's unpaced flood left 89,640, 351 MB, in the ingest), so `receive_maximum`
bounds only what arrives while the ingest acknowledges nothing.

A wait lasts at most `max_wait` (the writer passes half the MQTT keepalive): paho's network
thread, blocked, sends no PINGREQ, and the broker would drop the connection (and redeliver
everything unacknowledged after the reconnect). The writer takes nothing for that long only
while the database does not answer; then nothing is acknowledged either, the broker holds to
the Receive Maximum, and at most `receive_maximum` messages come in beyond the bound.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Annotated, Self

from pydantic import Field, model_validator

from gateway.ingest.items import Item
from gateway.records import dataclass, field
from gateway.strict import StrictModel

GatewayId = tuple[str, str]
URGENT_CHANNELS = frozenset({"alarms", "state"})
ITEM_OVERHEAD = 1024
"""Bytes a queued message costs besides its payload and lines (the `Item`, its key, delivery
and strings' headers): measured ≈ 3.9 KB of RSS an alarm event with ≈ 1.1 KB of payload and
lines, so counted bytes are about half of what the queue holds in memory."""
WAIT_SLICE = 0.5
"""How often a waiting `put` looks whether the service is stopping."""


class QueueSettings(StrictModel):
    """`queue:` of the central config: what the writer's intake holds at most."""

    per_gateway_bytes: Annotated[int, Field(ge=64 * 1024, le=2**34)] = 16 * 2**20
    """Queued bytes of one gateway (payloads, line protocol, 1 KiB a message) beyond which the
    ingest reads no further from the broker until the writer has taken some of that gateway's
    messages: ≈ 7,000 alarm events or 90 telemetry batches of 1,000 points. A gateway
    publishing live (a batch a second) or replaying its backlog (paced, 20 messages a second)
    holds a few."""
    total_bytes: Annotated[int, Field(ge=64 * 1024, le=2**36)] = 128 * 2**20
    """Queued bytes of all gateways together, the same way (≈ 256 MB of memory when full).
    A wait lasts at most half of `mqtt.keepalive` (the connection must stay alive): then the
    writer has taken nothing for that long, the database is down, nothing is acknowledged and
    the broker sends at most `mqtt.receive_maximum` more."""

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.per_gateway_bytes > self.total_bytes:
            raise ValueError("per_gateway_bytes must not be more than total_bytes")
        return self


def cost(item: Item) -> int:
    """What `item` counts against the bounds."""
    return len(item.payload) + sum(map(len, item.lines)) + ITEM_OVERHEAD


def gateway_of(topic: str, root: str) -> GatewayId:
    """(site, gateway) of a topic `<root>/<site>/<gateway>/<channel>`; ("", topic) if it has no
    such levels (the ingest subscribes to none, but a bad topic still needs a lane)."""
    if topic.startswith(root + "/"):
        parts = topic[len(root) + 1:].split("/", 2)
        if len(parts) == 3:
            return parts[0], parts[1]
    return "", topic[:256]


@dataclass(slots=True)
class _Lanes:
    urgent: deque[tuple[Item, int]] = field(default_factory=deque)
    bulk: deque[tuple[Item, int]] = field(default_factory=deque)
    bytes: int = 0

    def __len__(self) -> int:
        return len(self.urgent) + len(self.bulk)


class FairQueue:
    """Thread-safe: `put` from the network thread, `get` from the writer thread."""

    def __init__(self, settings: QueueSettings, stopping: threading.Event, *,
                 max_wait: float) -> None:
        self.settings = settings
        self._stopping = stopping
        self._max_wait = max_wait
        self._cond = threading.Condition()
        self._lanes: dict[GatewayId, _Lanes] = {}
        self._urgent_turn: deque[GatewayId] = deque()
        """Gateways with urgent messages, each once, the next to be served first."""
        self._bulk_turn: deque[GatewayId] = deque()
        self._count = 0
        self._bytes = 0
        self.waits = 0
        """`put`s that had to wait for room."""
        self.overruns = 0
        """`put`s let in past the bound after `max_wait` (the writer took nothing meanwhile)."""

    def __len__(self) -> int:
        with self._cond:
            return self._count

    @property
    def bytes(self) -> int:
        with self._cond:
            return self._bytes

    def held(self, gateway: GatewayId) -> tuple[int, int]:
        """(messages, bytes) queued of `gateway`."""
        with self._cond:
            lanes = self._lanes.get(gateway)
            return (len(lanes), lanes.bytes) if lanes is not None else (0, 0)

    def snapshot(self) -> list[Item]:
        """The queued messages (for tests and diagnostics), urgent lanes first."""
        with self._cond:
            return [item for lanes in self._lanes.values()
                    for lane in (lanes.urgent, lanes.bulk) for item, _ in lane]

    def _full(self, gateway: GatewayId, size: int) -> bool:
        lanes = self._lanes.get(gateway)
        mine = lanes is not None and len(lanes) > 0 and \
            lanes.bytes + size > self.settings.per_gateway_bytes
        return mine or (self._count > 0 and self._bytes + size > self.settings.total_bytes)

    def put(self, item: Item, gateway: GatewayId) -> float:
        """Queue `item` in its gateway's lane, once there is room or after `max_wait` (see the
        module docstring); the seconds it waited (0.0: none)."""
        size = cost(item)
        waited = 0.0
        with self._cond:
            if self._full(gateway, size):
                self.waits += 1
                began = time.monotonic()
                deadline = began + self._max_wait
                while self._full(gateway, size) and not self._stopping.is_set():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self.overruns += 1
                        break
                    self._cond.wait(min(WAIT_SLICE, remaining))
                waited = max(time.monotonic() - began, 1e-9)
            lanes = self._lanes.get(gateway)
            if lanes is None:
                lanes = self._lanes[gateway] = _Lanes()
            urgent = item.channel in URGENT_CHANNELS
            lane, turn = ((lanes.urgent, self._urgent_turn) if urgent
                          else (lanes.bulk, self._bulk_turn))
            if not lane:
                turn.append(gateway)
            lane.append((item, size))
            lanes.bytes += size
            self._count += 1
            self._bytes += size
            self._cond.notify_all()
        return waited

    def get(self, timeout: float) -> Item | None:
        """The next message (urgent lanes first, gateways in turn), waiting up to `timeout`
        seconds for one; None if none came."""
        with self._cond:
            if not self._count:
                self._cond.wait(timeout)
                if not self._count:
                    return None
            turn = self._urgent_turn if self._urgent_turn else self._bulk_turn
            gateway = turn.popleft()
            lanes = self._lanes[gateway]
            lane = lanes.urgent if turn is self._urgent_turn else lanes.bulk
            item, size = lane.popleft()
            if lane:
                turn.append(gateway)  # its next message after every other gateway's
            lanes.bytes -= size
            if not lanes:
                del self._lanes[gateway]
            self._count -= 1
            self._bytes -= size
            self._cond.notify_all()
            return item
