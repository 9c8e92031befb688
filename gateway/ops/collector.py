"""The Prometheus collector of one gateway: every `roomwarden_*` family, built from the
gateway's own counters at scrape time (nothing is updated on the data path).

The families are the gateway's own (gateway.ops.exposition, with prometheus_client's
constructors): no prometheus_client in the gateway process. Imported when the first registry is
made (`gateway.ops.metrics.make_registry`, at the first scrape).
"""

from __future__ import annotations

import platform
from collections.abc import Iterator

from gateway import __version__
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.contract.vocab import MessageKind
from gateway.ops.exposition import (
    CounterMetricFamily,
    Family,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    SummaryMetricFamily,
)
from gateway.ops.health import HealthMonitor, Level, progress_age
from gateway.ops.source import MetricsSource

ALARM_STATES = tuple(s.value for s in AlarmState if s is not AlarmState.NORMAL)
"""States of `roomwarden_alarms_active` (every severity × state is exposed, zeros included)."""

def _b(flag: bool | None) -> float:
    return 1.0 if flag else 0.0


class GatewayCollector:
    """A collector (gateway.ops.exposition) over a `MetricsSource` (normally the running
    Gateway)."""

    def __init__(self, source: MetricsSource, health: HealthMonitor | None = None) -> None:
        self.source = source
        self.health = health

    def collect(self) -> Iterator[Family]:
        yield from self._identity()
        yield from self._buses()
        yield from self._rules_and_alarms()
        yield from self._outputs()
        yield from self._uplink()
        if self.health is not None:
            yield self._health(self.health)

    # --- families ------------------------------------------------------------------------------

    def _identity(self) -> Iterator[Family]:
        src = self.source
        gw = src.loaded.config.gateway
        build = InfoMetricFamily("roomwarden_build", "RoomWarden software version.",
                                 labels=["version", "python"])
        build.add_metric([__version__, platform.python_version()], {})
        yield build
        ident = InfoMetricFamily("roomwarden_gateway", "Which gateway this is.",
                                 labels=["gateway", "site"])
        ident.add_metric([gw.id, gw.site], {})
        yield ident
        config = InfoMetricFamily("roomwarden_config",
                                  "The running config: its version (0 = installed file, never "
                                  "flashed) and the SHA-256 of its file.",
                                  labels=["version", "sha256"])
        config.add_metric([str(src.config_version), src.config_sha256], {})
        yield config
        now_s = src.clock.now_ns() / 1e9
        started = now_s - (src.clock.monotonic() - src.started_mono)
        yield GaugeMetricFamily("roomwarden_start_time_seconds",
                                "Unix time the gateway started (a config apply does not reset "
                                "it).", value=round(started, 3))

    def _buses(self) -> Iterator[Family]:
        src = self.source
        cycles = CounterMetricFamily("roomwarden_bus_poll_cycles",
                                     "Device polls run on the bus.", labels=["bus"])
        seconds = SummaryMetricFamily("roomwarden_bus_poll_seconds",
                                      "Time the bus spent in device polls.", labels=["bus"])
        last = GaugeMetricFamily("roomwarden_bus_last_poll_seconds",
                                 "Duration of the bus's latest device poll.", labels=["bus"])
        overruns = CounterMetricFamily("roomwarden_bus_overruns",
                                       "Polls that started more than one interval late.",
                                       labels=["bus"])
        requests = CounterMetricFamily("roomwarden_bus_requests",
                                       "Requests sent on the bus (Modbus reads, text queries).",
                                       labels=["bus"])
        link = GaugeMetricFamily("roomwarden_bus_link_open",
                                 "1 when the bus's link (port, connection) opened; 0 when it "
                                 "could not; absent until the loop tried.", labels=["bus"])
        age = GaugeMetricFamily("roomwarden_bus_progress_age_seconds",
                                "Seconds since the bus loop last made progress.",
                                labels=["bus"])
        limit = GaugeMetricFamily("roomwarden_bus_stall_limit_seconds",
                                  "Progress age beyond which the bus loop counts as stalled.",
                                  labels=["bus"])
        bus_total = GaugeMetricFamily("roomwarden_bus_devices", "Devices polled on the bus.",
                                      labels=["bus"])
        bus_online = GaugeMetricFamily("roomwarden_bus_devices_online",
                                       "Devices of the bus that answer.", labels=["bus"])
        d_polls = CounterMetricFamily("roomwarden_device_polls", "Polls of the device.",
                                      labels=["bus", "device"])
        d_fail = CounterMetricFamily("roomwarden_device_poll_failures",
                                     "Polls the device did not answer (timeout, CRC error, "
                                     "exception reply, garbage).", labels=["bus", "device"])
        d_online = GaugeMetricFamily("roomwarden_device_online",
                                     "1 while the device answers; 0 when offline or not yet "
                                     "polled.", labels=["bus", "device"])
        d_consec = GaugeMetricFamily("roomwarden_device_consecutive_failures",
                                     "Failed polls of the device in a row.",
                                     labels=["bus", "device"])
        d_age = GaugeMetricFamily("roomwarden_device_last_success_age_seconds",
                                  "Seconds since the device last answered (absent until it "
                                  "has).", labels=["bus", "device"])
        now = src.clock.monotonic()
        online_all = total_all = 0
        for loop in src.bus_loops:
            stats, bus = loop.stats, [loop.bus_id]
            cycles.add_metric(bus, stats.cycles)
            seconds.add_metric(bus, count_value=stats.cycles, sum_value=stats.poll_seconds_total)
            last.add_metric(bus, stats.last_poll_seconds)
            overruns.add_metric(bus, stats.overruns)
            requests.add_metric(bus, stats.requests)
            if loop.link_open is not None:
                link.add_metric(bus, _b(loop.link_open))
            age.add_metric(bus, progress_age(loop, src))
            limit.add_metric(bus, loop.stall_limit)
            online = sum(1 for h in stats.device_health.values() if h.online)
            bus_total.add_metric(bus, len(stats.device_health))
            bus_online.add_metric(bus, online)
            online_all += online
            total_all += len(stats.device_health)
            for device, h in stats.device_health.items():
                labels = [loop.bus_id, device]
                d_polls.add_metric(labels, h.polls)
                d_fail.add_metric(labels, h.failures)
                d_online.add_metric(labels, _b(h.online))
                d_consec.add_metric(labels, h.consecutive_failures)
                if h.last_success_mono is not None:
                    d_age.add_metric(labels, max(0.0, now - h.last_success_mono))
        yield from (cycles, seconds, last, overruns, requests, link, age, limit, bus_total,
                    bus_online, d_polls, d_fail, d_online, d_consec, d_age)
        yield GaugeMetricFamily("roomwarden_devices", "Devices polled by the gateway.",
                                value=total_all)
        yield GaugeMetricFamily("roomwarden_devices_online", "Devices that answer.",
                                value=online_all)

    def _rules_and_alarms(self) -> Iterator[Family]:
        src = self.source
        yield CounterMetricFamily("roomwarden_rule_evaluations",
                                  "Rounds of the safety core (every rule, alarms, outputs).",
                                  value=src.evaluations)
        evaluation = SummaryMetricFamily("roomwarden_rule_evaluation_seconds",
                                         "Time spent in rounds of the safety core.")
        evaluation.add_metric([], count_value=src.evaluations,
                              sum_value=src.evaluation_seconds_total)
        yield evaluation
        yield GaugeMetricFamily("roomwarden_rule_evaluation_last_seconds",
                                "Duration of the latest round of the safety core.",
                                value=src.evaluation_seconds_last)
        counts = {(sev.value, state): 0 for sev in Severity for state in ALARM_STATES}
        for view in src.core.alarms.active():
            if view.drill:  # issue 12: a live drill's alarms are no real alarm's count
                continue
            key = (view.severity.value, view.state.value)
            if key in counts:
                counts[key] += 1
        active = GaugeMetricFamily("roomwarden_alarms_active",
                                   "Alarms not in the normal state, by severity and state "
                                   "(ISA-18.2; shelved and suppressed included, a live "
                                   "drill's alarms not).",
                                   labels=["severity", "state"])
        for (severity, state), n in counts.items():
            active.add_metric([severity, state], n)
        yield active
        yield GaugeMetricFamily("roomwarden_alarm_flood", "1 during an alarm flood.",
                                value=_b(src.core.alarms.flood.active))

    def _outputs(self) -> Iterator[Family]:
        src = self.source
        roles = {o.id: o.role for o in src.loaded.config.outputs}
        failed = GaugeMetricFamily("roomwarden_output_failed",
                                   "1 while the output's last write failed.",
                                   labels=["output", "role"])
        writes = CounterMetricFamily("roomwarden_output_writes",
                                     "Writes of the output's coil (each with its retries).",
                                     labels=["output", "role"])
        write_failures = CounterMetricFamily("roomwarden_output_write_failures",
                                             "Writes that failed after every retry.",
                                             labels=["output", "role"])
        n_failed = 0
        for output_id, state in src.driver.state.items():
            labels = [output_id, roles.get(output_id, "other")]
            failed.add_metric(labels, _b(state.failed))
            writes.add_metric(labels, state.writes)
            write_failures.add_metric(labels, state.failures)
            n_failed += state.failed
        yield GaugeMetricFamily("roomwarden_outputs", "Local alarm outputs configured.",
                                value=len(src.driver.state))
        yield GaugeMetricFamily("roomwarden_outputs_failed",
                                "Outputs whose last write failed.", value=n_failed)
        yield from (failed, writes, write_failures)

    def _uplink(self) -> Iterator[Family]:
        uplink = self.source.uplink
        yield GaugeMetricFamily("roomwarden_uplink_configured",
                                "1 when the gateway has an MQTT uplink.",
                                value=_b(uplink is not None))
        if uplink is None:
            return
        status = uplink.status()
        yield GaugeMetricFamily("roomwarden_uplink_connected",
                                "1 while connected to the broker.", value=_b(status.connected))
        yield CounterMetricFamily("roomwarden_uplink_connects",
                                  "Successful connections to the broker.",
                                  value=status.connects)
        yield CounterMetricFamily("roomwarden_uplink_published",
                                  "Messages the broker acknowledged (PUBACK).",
                                  value=status.published)
        yield CounterMetricFamily("roomwarden_uplink_rejected",
                                  "Samples and events that broke the contract (not sent).",
                                  value=status.rejected)
        yield GaugeMetricFamily("roomwarden_uplink_queued",
                                "Items waiting in memory for the next outbox commit.",
                                value=status.queued)
        latency = HistogramMetricFamily("roomwarden_uplink_publish_latency_seconds",
                                        "Time from a message's production to its PUBACK.")
        buckets = [(_le(bound), float(n)) for bound, n in status.latency_buckets]
        buckets.append(("+Inf", float(status.latency_count)))
        latency.add_metric([], buckets, sum_value=status.latency_sum_s)
        yield latency
        outbox = status.outbox
        yield GaugeMetricFamily("roomwarden_outbox_depth",
                                "Messages in the outbox waiting for a PUBACK.",
                                value=outbox.depth)
        yield GaugeMetricFamily("roomwarden_outbox_bytes", "Bytes in the outbox.",
                                value=outbox.bytes)
        yield GaugeMetricFamily("roomwarden_outbox_budget_bytes",
                                "The outbox's disk budget.", value=outbox.budget)
        yield GaugeMetricFamily("roomwarden_outbox_oldest_age_seconds",
                                "Age of the oldest message in the outbox (0 when empty).",
                                value=outbox.oldest_age_s or 0.0)
        dropped = CounterMetricFamily("roomwarden_outbox_dropped",
                                      "Messages dropped to stay within the disk budget, since "
                                      "the outbox was created.", labels=["kind"])
        for kind in MessageKind:
            dropped.add_metric([kind.value], status.dropped.get(kind, 0))
        yield dropped

    @staticmethod
    def _health(monitor: HealthMonitor) -> Family:
        report = monitor.check()
        family = GaugeMetricFamily("roomwarden_health_status",
                                   "1 for the present status of each health check (and of "
                                   "the gateway as a whole, check=\"overall\"), as /healthz.",
                                   labels=["check", "status"])
        for name, result in [*report.checks.items(), ("overall", None)]:
            status = report.status if result is None else result.status
            for level in Level:
                family.add_metric([name, level.value], _b(level is status))
        return family


def _le(bound: float) -> str:
    return repr(float(bound))
