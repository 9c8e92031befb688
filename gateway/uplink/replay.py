"""Replay pacing: live messages go out at once, the backlog at a bounded rate.

After an outage the outbox may hold a day of telemetry. Sending it flat out would delay live
alarms behind history (the outbox already hands out live messages first) and, with many
gateways reconnecting after a central outage, flood the broker. `ReplayPacer` is a token bucket
over messages and bytes of *backlog*; `take()` asks the outbox for a publish window with the
backlog share the bucket allows. Pure and clock-injected.

Default 20 messages/s and 64 KiB/s of payload per gateway: a 24-hour backlog of a typical site
(≈ 57 MiB of payload in 8,640 batches) replays in ≈ 15 minutes, while 500 gateways replaying
at once stay near 32 MiB/s at the broker.
"""

from __future__ import annotations

import math

from gateway.clock import Clock
from gateway.uplink.outbox import Outbox, OutboxMessage


class ReplayPacer:
    def __init__(self, clock: Clock, *, messages_per_s: float = 20.0,
                 bytes_per_s: float = 64 * 1024, burst_s: float = 1.0) -> None:
        if not (messages_per_s > 0 and bytes_per_s > 0 and burst_s > 0):
            raise ValueError("rates and burst must be positive")
        if not all(math.isfinite(x) for x in (messages_per_s, bytes_per_s, burst_s)):
            raise ValueError("rates and burst must be finite")
        self._clock = clock
        self.messages_per_s = messages_per_s
        self.bytes_per_s = bytes_per_s
        self._msg_cap = max(1.0, messages_per_s * burst_s)
        self._byte_cap = max(1.0, bytes_per_s * burst_s)
        self._msgs = self._msg_cap
        self._bytes = self._byte_cap
        self._last = clock.monotonic()

    def _refill(self) -> None:
        now = self._clock.monotonic()
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._msgs = min(self._msg_cap, self._msgs + elapsed * self.messages_per_s)
        self._bytes = min(self._byte_cap, self._bytes + elapsed * self.bytes_per_s)

    def allowance(self) -> int:
        """Backlog messages that may be sent now (0 while the byte bucket is in debt)."""
        self._refill()
        if self._bytes <= 0:
            return 0
        return int(self._msgs)

    def spend(self, messages: int, nbytes: int) -> None:
        """Record backlog sent; a large message may put the byte bucket into debt, which the
        next refills pay off before more backlog goes."""
        self._refill()
        self._msgs -= messages
        self._bytes -= nbytes

    def delay(self) -> float:
        """Seconds until some backlog may go again (0 if now)."""
        self._refill()
        wait_msgs = 0.0 if self._msgs >= 1 else (1 - self._msgs) / self.messages_per_s
        wait_bytes = 0.0 if self._bytes > 0 else (-self._bytes + 1) / self.bytes_per_s
        return max(wait_msgs, wait_bytes)


def take(outbox: Outbox, pacer: ReplayPacer, window: int) -> list[OutboxMessage]:
    """The next messages to publish: up to `window` (the free in-flight slots), live first,
    backlog as far as the pacer allows."""
    batch = outbox.next_batch(window, backlog_limit=pacer.allowance())
    backlog = [m for m in batch if m.backlog]
    if backlog:
        pacer.spend(len(backlog), sum(len(m.payload) for m in backlog))
    return batch
