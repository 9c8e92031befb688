"""What the uplink reports about itself (`UplinkStatus`, for the panel, /metrics, /healthz and
`roomwarden status`), its state in a few words (`link_text`, `refused_text`: the same wherever
it is shown) and its publish-latency histogram (produced → PUBACK, O(1) per message)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping

from gateway.contract.channels import Channel
from gateway.contract.outbound import OutboxFigures
from gateway.contract.vocab import MessageKind
from gateway.records import dataclass, field

LATENCY_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                                      300.0)
"""Upper bounds (s) of the publish-latency histogram (produced → PUBACK); +Inf is `count`."""


@dataclass(frozen=True, slots=True)
class UplinkStatus:
    """For the panel, /metrics and the health view."""

    connected: bool
    outbox: OutboxFigures
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
    refused: dict[str, str] = field(default_factory=dict)
    """Inbound topic filters the broker refused on this connection (SUBACK) → its reason
    (`Not authorized`); empty while disconnected. Asked for again with back-off; the rest of
    the uplink goes on (gateway.uplink.subscriptions)."""


CARRIES: dict[Channel, str] = {Channel.CMD: "operator commands",
                               Channel.CONFIG_SET: "flashed configs",
                               Channel.ACK: "acknowledgements from the ingest"}
"""What each inbound topic brings the gateway: what it misses while refused."""


def refused_text(refused: Mapping[str, str]) -> str:
    """`roomwarden/s/g/cmd refused (Not authorized) — no operator commands reach the gateway`:
    each refused filter with the broker's reason, then what the gateway misses."""
    return (", ".join(f"{topic} refused ({reason})" for topic, reason in refused.items())
            + " — " + missed_text(refused))


def missed_text(refused: Iterable[str]) -> str:
    """`no operator commands, no flashed configs reach the gateway`."""
    missed = [next((what for ch, what in CARRIES.items() if topic.endswith("/" + ch)),
                   f"messages on {topic}") for topic in refused]
    return "no " + ", no ".join(missed) + " reach the gateway"


def link_text(status: UplinkStatus, *, with_error: bool = True) -> str:
    """The link in a few words: `connected`, `connected, not subscribed: <refused_text>` or
    `disconnected (<last error>)` (without the error if `with_error` is false)."""
    if status.connected and status.refused:
        return f"connected, not subscribed: {refused_text(status.refused)}"
    if status.connected:
        return "connected"
    if status.last_error and with_error:
        return f"disconnected ({status.last_error})"
    return "disconnected"


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
