"""Prometheus metrics of one gateway, read from its state at scrape time (`GET /metrics`).

`gateway.ops.collector.GatewayCollector` builds every family from the gateway's own counters
when Prometheus asks — nothing is updated on the data path. Each gateway gets its own
`Registry` (`make_registry`). Counters are the gateway's own totals since its start (a
reconfiguration starts the bus counters again: Prometheus treats that as a counter reset). The
metric names are listed in `METRIC_NAMES` and in the README.

The text is written by `gateway.ops.exposition`, the `process_*` metrics read by
`gateway.ops.process_metrics`: no prometheus_client in the gateway (it cost 2.8 MiB of RSS
from the first scrape on, issue 15). Both and the collector are imported when the first
registry is made — the panel makes it at the first scrape — so a gateway nobody scrapes never
loads them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from gateway.records import dataclass

if TYPE_CHECKING:
    from gateway.ops.exposition import Collector, Family
    from gateway.ops.health import HealthMonitor
    from gateway.ops.source import MetricsSource

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text format every scraper reads (prometheus_client's CONTENT_TYPE_PLAIN_0_0_4),
which gateway.ops.exposition writes."""

METRIC_NAMES = (
    "roomwarden_build_info",
    "roomwarden_gateway_info",
    "roomwarden_config_info",
    "roomwarden_start_time_seconds",
    "roomwarden_bus_poll_cycles_total",
    "roomwarden_bus_poll_seconds",
    "roomwarden_bus_last_poll_seconds",
    "roomwarden_bus_overruns_total",
    "roomwarden_bus_requests_total",
    "roomwarden_bus_link_open",
    "roomwarden_bus_progress_age_seconds",
    "roomwarden_bus_stall_limit_seconds",
    "roomwarden_bus_devices",
    "roomwarden_bus_devices_online",
    "roomwarden_device_polls_total",
    "roomwarden_device_poll_failures_total",
    "roomwarden_device_online",
    "roomwarden_device_consecutive_failures",
    "roomwarden_device_last_success_age_seconds",
    "roomwarden_devices",
    "roomwarden_devices_online",
    "roomwarden_rule_evaluations_total",
    "roomwarden_rule_evaluation_seconds",
    "roomwarden_rule_evaluation_last_seconds",
    "roomwarden_alarms_active",
    "roomwarden_alarm_flood",
    "roomwarden_outputs",
    "roomwarden_outputs_failed",
    "roomwarden_output_failed",
    "roomwarden_output_writes_total",
    "roomwarden_output_write_failures_total",
    "roomwarden_uplink_configured",
    "roomwarden_uplink_connected",
    "roomwarden_uplink_connects_total",
    "roomwarden_uplink_published_total",
    "roomwarden_uplink_rejected_total",
    "roomwarden_uplink_queued",
    "roomwarden_uplink_publish_latency_seconds",
    "roomwarden_outbox_depth",
    "roomwarden_outbox_bytes",
    "roomwarden_outbox_budget_bytes",
    "roomwarden_outbox_oldest_age_seconds",
    "roomwarden_outbox_dropped_total",
    "roomwarden_health_status",
)
"""Every family `GatewayCollector` exposes (some only with an uplink, or a health monitor)."""


@dataclass(frozen=True)
class Registry:
    """The collectors of one gateway's /metrics, in the order they are written."""

    collectors: tuple[Collector, ...]

    def collect(self) -> Iterator[Family]:
        for collector in self.collectors:
            yield from collector.collect()


def make_registry(source: MetricsSource, *, health: HealthMonitor | None = None,
                  process: bool = True) -> Registry:
    """A registry of this gateway alone: `GatewayCollector`, and with `process` the standard
    `process_*` metrics (CPU, memory, open files, start time) of this process."""
    from gateway.ops.collector import GatewayCollector
    from gateway.ops.process_metrics import ProcessCollector

    gateway = GatewayCollector(source, health)
    return Registry((gateway, ProcessCollector()) if process else (gateway,))


def render(registry: Registry) -> bytes:
    """The text exposition format (version 0.0.4) of everything in `registry`."""
    from gateway.ops.exposition import render as write

    return write([registry])
