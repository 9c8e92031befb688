"""What the uplink reports about itself (`UplinkStatus`, for the panel, /metrics, /healthz and
`roomwarden status`) and its publish-latency histogram (produced → PUBACK, O(1) per message)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from gateway.contract.wire import MessageKind, OutboxStatus

LATENCY_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                                      300.0)
"""Upper bounds (s) of the publish-latency histogram (produced → PUBACK); +Inf is `count`."""


@dataclass(frozen=True, slots=True)
class UplinkStatus:
    """For the panel, /metrics and the health view."""

    connected: bool
    outbox: OutboxStatus
    dropped: dict[MessageKind, int]
    """Dropped by the outbox to stay within its disk budget, per kind, since install."""
    published: int
    """Messages the broker acknowledged since start."""
    queued: int
    """Waiting in memory for the next commit."""
    rejected: int
    """Samples and events that broke the contract and were not sent (logged)."""
    connects: int
    last_error: str | None
    latency_count: int = 0
    """Messages whose PUBACK arrived, with their publish latency (produced → PUBACK)."""
    latency_sum_s: float = 0.0
    latency_buckets: tuple[tuple[float, int], ...] = ()
    """(upper bound s, messages with latency ≤ it) — cumulative, as Prometheus wants."""
    latency_last_s: float | None = None
    commands_received: int = 0
    """Payloads that arrived on `cmd` (every one, good or bad)."""
    commands_bad: int = 0
    """…of them that broke the contract (logged; answered when their id was readable)."""
    commands_duplicate: int = 0
    """…of them already seen (same id): answered again, not applied again."""
    commands_refused: int = 0
    """…answered ok=false (expired, retained, refused by the handler, failed)."""
    config_sets: int = 0
    """Payloads that arrived on `config/set` (handed on unparsed)."""
    delivery: str = "ingest"
    """`ingest`: entries leave on the ingest's watermark; `puback`: on the broker's PUBACK."""
    awaiting: int = 0
    """Telemetry batches and alarm events the broker acknowledged and the ingest has not
    confirmed yet (they stay in the outbox and count against its budget)."""
    covered: int = 0
    """The ingest's watermark: every delivery sequence up to it is stored centrally."""
    delivered: int = 0
    """Entries the watermark covered since start."""
    resent: int = 0
    """Entries published again since start because the ingest had not confirmed them."""
    subscribed: bool = False
    """Connected and subscribed (the broker's SUBACK): remote commands, config sets and the
    ingest's acknowledgements reach the gateway."""
    unconfirmed_s: float = 0.0
    """Seconds the ingest has confirmed nothing while entries wait for it (0: none wait, or
    its watermark moved since they began to)."""


class LatencyHistogram:
    def __init__(self) -> None:
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket; the last is > 300 s
        self.sum = 0.0
        self.last: float | None = None

    def observe(self, seconds: float) -> None:
        self._buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds
        self.last = seconds

    @property
    def count(self) -> int:
        return sum(self._buckets)

    def cumulative(self) -> tuple[tuple[float, int], ...]:
        out, total = [], 0
        for n in self._buckets:
            total += n
            out.append(total)
        return tuple(zip(LATENCY_BUCKETS, out, strict=False))
