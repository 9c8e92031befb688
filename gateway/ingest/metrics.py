"""The ingest's Prometheus metrics (prometheus_client), served at `/metrics` beside `/healthz`
by `gateway.ingest.opshttp` when the central config has `http: {bind: 127.0.0.1, port: 9108}`.

Metrics (all prefixed `roomwarden_ingest_`):

| name | type | labels |
|---|---|---|
| `messages_received_total` | counter | `channel` |
| `messages_written_total` | counter | `channel` (acked after the database accepted them) |
| `messages_duplicate_total` | counter | `channel` (written before: acked, not rewritten) |
| `messages_dead_lettered_total` | counter | malformed, unknown_catalog, rejected, internal, |
| | | clock, series_budget (past its gateway's series budget: gateway.ingest.budget) |
| `messages_restamped_total` | counter | clock (written at receive time: gateway.ingest.timecheck) |
| `messages_dropped_total` | counter | qos0_queue_full (QoS 0 past the queue bound: writer) |
| `gateway_clock_skew_seconds` | gauge | `site`, `gateway` (gateway.ingest.timecheck) |
| `gateway_id_conflicts_total` | counter | `site`, `gateway` (gateway.ingest.gatewaywatch) |
| `gateway_series_refused_total` | counter | `site`, `gateway`, `cap` (gateway.ingest.budget) |
| `points_written_total` | counter | |
| `write_errors_total` | counter | failed write attempts (timeouts, 5xx, 429, connection, 4xx) |
| `write_retries_total` | counter | |
| `write_seconds` | histogram | one successful write request |
| `queue_depth` | gauge | messages received and not yet written |
| `queue_waits_total` | counter | a full queue held the broker's stream (ingest.fairqueue) |
| `parked` | gauge | batches waiting for their point catalog |
| `write_rate_points_per_second` | gauge | points written per second over the last 10 s |
| `connected` | gauge | 1 while connected to the broker |
| `catalogs` | gauge | point catalogs known |
| `last_write_success_timestamp_seconds` | gauge | |
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

log = logging.getLogger("roomwarden.ingest")

PREFIX = "roomwarden_ingest"
DEAD_REASONS = ("malformed", "unknown_catalog", "rejected", "internal", "clock",
                "series_budget")
RATE_WINDOW_S = 10.0


class IngestMetrics:
    """One registry per service (several services may run in one process, e.g. in tests)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, *, queue_depth: Callable[[], float], parked: Callable[[], float],
                 connected: Callable[[], float], catalogs: Callable[[], float]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.received = Counter(f"{PREFIX}_messages_received", "Messages received",
                                ["channel"], registry=r)
        self.written = Counter(f"{PREFIX}_messages_written",
                               "Messages written to the database and acknowledged",
                               ["channel"], registry=r)
        self.duplicates = Counter(f"{PREFIX}_messages_duplicate",
                                  "Messages already written (acknowledged, not rewritten)",
                                  ["channel"], registry=r)
        self.dead = Counter(f"{PREFIX}_messages_dead_lettered",
                            "Messages put in the dead-letter log", ["reason"], registry=r)
        for reason in DEAD_REASONS:
            self.dead.labels(reason=reason)
        self.restamped = Counter(f"{PREFIX}_messages_restamped",
                                 "Messages written at the ingest's receive time, not their own",
                                 ["reason"], registry=r)
        self.restamped.labels(reason="clock")
        self.dropped = Counter(f"{PREFIX}_messages_dropped",
                               "Messages dropped unwritten (QoS 0 past the queue bound)",
                               ["reason"], registry=r)
        self.dropped.labels(reason="qos0_queue_full")
        self.points = Counter(f"{PREFIX}_points_written", "Points written", registry=r)
        self.write_errors = Counter(f"{PREFIX}_write_errors", "Failed write attempts",
                                    registry=r)
        self.write_retries = Counter(f"{PREFIX}_write_retries", "Write retries", registry=r)
        self.write_seconds = Histogram(
            f"{PREFIX}_write_seconds", "Duration of a successful write request",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r)
        Gauge(f"{PREFIX}_queue_depth", "Messages received and not yet written",
              registry=r).set_function(queue_depth)
        Gauge(f"{PREFIX}_parked", "Batches waiting for their point catalog",
              registry=r).set_function(parked)
        Gauge(f"{PREFIX}_connected", "1 while connected to the broker",
              registry=r).set_function(connected)
        Gauge(f"{PREFIX}_catalogs", "Point catalogs known", registry=r).set_function(catalogs)
        Gauge(f"{PREFIX}_write_rate_points_per_second",
              f"Points written per second over the last {RATE_WINDOW_S:g} s",
              registry=r).set_function(self.write_rate)
        self.clock_skew = Gauge(f"{PREFIX}_gateway_clock_skew_seconds",
                                "A gateway's live state time minus the ingest's clock",
                                ["site", "gateway"], registry=r)
        self.id_conflicts = Counter(f"{PREFIX}_gateway_id_conflicts",
                                    "States from two gateway processes under one id",
                                    ["site", "gateway"], registry=r)
        self.series_refused = Counter(f"{PREFIX}_gateway_series_refused",
                                      "Messages refused: past their gateway's series budget",
                                      ["site", "gateway", "cap"], registry=r)
        self.queue_waits = Counter(f"{PREFIX}_queue_waits",
                                   "Times a full per-gateway queue held the broker's stream",
                                   registry=r)
        self.last_success = Gauge(f"{PREFIX}_last_write_success_timestamp_seconds",
                                  "When the database last accepted a write", registry=r)
        self._recent: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def points_written(self, n: int) -> None:
        self.points.inc(n)
        now = time.monotonic()
        with self._lock:
            self._recent.append((now, n))
            self._trim(now)

    def write_rate(self) -> float:
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            return sum(n for _t, n in self._recent) / RATE_WINDOW_S

    def _trim(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - RATE_WINDOW_S:
            self._recent.popleft()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

