"""The uplink's inbound subscriptions on one connection (pure: no I/O, no clock): which topic
filters were sent, what each SUBACK said of them, and when to ask again for those the broker
refused.

A broker answers a SUBSCRIBE with one reason code per filter (MQTT 5: 0x87 *Not authorized*
and the like; MQTT 3.1.1: 0x80, *Unspecified error*), so a refusal can be partial: the granted
filters deliver, the refused ones do not. The session keeps the connection — telemetry,
alarms and state go on being published — and subscribes again to the refused filters only,
after `Backoff.delay()` (the uplink's `reconnect_min`, doubling up to `reconnect_max`, with
jitter): an access rule mended on the broker (Mosquitto's dynamic-security plugin changes at
once, no restart) is picked up on the same connection, and a refusal that stays costs one
SUBSCRIBE and one log line per `reconnect_max` — never a loop. A new connection starts
afresh: every filter is subscribed again (a clean session) with a fresh back-off.
"""

from __future__ import annotations

from gateway.mqtt_client import Backoff
from gateway.records import dataclass, field


@dataclass(frozen=True, slots=True)
class Refusal:
    """What one SUBACK left refused, and when to subscribe again (None: nothing refused)."""

    newly: dict[str, str]
    """The filters this SUBACK refused → the broker's reason."""
    attempt: int
    """SUBSCRIBEs on this connection that were refused in part or whole, this one included."""
    retry_in: float | None


@dataclass(slots=True)
class Subscriptions:
    filters: tuple[str, ...]
    backoff: Backoff
    refused: dict[str, str] = field(default_factory=dict)
    """Filter → the broker's reason, for every filter its last SUBACK refused."""
    pending: dict[int, tuple[str, ...]] = field(default_factory=dict)
    """SUBSCRIBE packet id → its filters, until the SUBACK."""
    answered: bool = False
    """A SUBACK came for every filter at least once."""
    attempts: int = 0
    """SUBSCRIBEs refused in part or whole on this connection."""

    @property
    def granted(self) -> bool:
        """Every filter granted (a connection with no filters has nothing to wait for)."""
        return not self.filters or (self.answered and not self.refused and not self.pending)

    def sent(self, mid: int, filters: tuple[str, ...]) -> None:
        self.pending[mid] = filters

    def suback(self, mid: int, results: list[tuple[bool, str]]) -> Refusal | None:
        """The SUBACK of packet `mid`: (refused, reason) per filter, in the order sent. None
        if it answers no SUBSCRIBE of this connection."""
        filters = self.pending.pop(mid, None)
        if filters is None:
            return None
        newly: dict[str, str] = {}
        for topic, (refused, reason) in zip(filters, results, strict=False):
            if refused:
                newly[topic] = self.refused[topic] = reason
            else:
                self.refused.pop(topic, None)
        for topic in filters[len(results):]:  # a short SUBACK: what it did not answer
            newly[topic] = self.refused[topic] = "no reason code in the SUBACK"
        self.answered = True
        if not newly:
            return Refusal({}, self.attempts, None)
        self.attempts += 1
        return Refusal(newly, self.attempts, self.backoff.delay())

    def to_retry(self) -> tuple[str, ...]:
        """The refused filters not already asked for again."""
        asked = {topic for filters in self.pending.values() for topic in filters}
        return tuple(topic for topic in self.refused if topic not in asked)
