"""`roomwarden status`, its data: a running gateway's state for a technician read into a
`StatusReport` (`build_status_report(gw)` reads a `MetricsSource`; plain JSON types: the control
socket sends it as `report.model_dump(mode="json")` and the CLI reads it back with
`read_status`). Its terminal view is `gateway.ops.status_text`.

Plain frozen dataclasses, not pydantic models (issue 15): the gateway writes them as JSON
itself (gateway.ops.health_report.as_json, what pydantic's serializer gives for them), and only
the reader builds a validator, of these same classes (`read_status`: unknown keys refused, as
the models did) — a gateway answering status queries builds none.

The report keeps two questions apart: **Service** — does the gateway itself work (polling,
rules, outputs, uplink; `gateway.ops.health`) — and **Site** — are the rooms in alarm.
"""

from __future__ import annotations

from typing import Any, Literal

from gateway import __version__
from gateway.ops.health import HealthMonitor, monitor_for, progress_age
from gateway.ops.health_report import HealthReport, as_json, strict_data, strict_reports
from gateway.ops.source import MetricsSource
from gateway.records import dataclass, field


@strict_data
@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceLine:
    id: str
    name: str | None = None
    online: bool | None
    """None until the first poll has told."""
    polls: int
    failures: int
    consecutive_failures: int
    last_error: str | None
    last_success_age_s: float | None
    """Seconds since the device last answered; None if it never has."""


@strict_data
@dataclass(frozen=True, slots=True, kw_only=True)
class BusLine:
    id: str
    type: str
    devices_online: int
    devices_total: int
    polls: int
    overruns: int
    requests: int
    last_poll_ms: float
    progress_age_s: float
    stall_limit_s: float
    link_open: bool | None = None
    """None until the loop tried to open its link."""
    link_error: str | None = None
    devices: list[DeviceLine]

    @property
    def stalled(self) -> bool:
        return self.progress_age_s > self.stall_limit_s


@strict_data
@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmLine:
    rule: str
    subject: str
    title: str
    severity: str
    state: str
    room: str | None
    since_ns: int | None
    """When the alarm activated (wall clock, ns)."""
    acked_by: str | None = None
    first_out: bool = False
    hidden: str | None = None
    """A shelved or suppressed alarm that still drives its protective outputs: `latched` (a
    latching alarm latched before or under the overlay: back unacknowledged when the overlay
    ends, reset only by an acknowledge then) or `active` (its condition is active); None
    otherwise (DESIGN principle 7)."""


@strict_data
@dataclass(frozen=True, slots=True, kw_only=True)
class OutputLine:
    id: str
    role: str
    wanted: bool
    """What the safety core wants now."""
    commanded: bool | None
    """The last state written (None: never written)."""
    confirmed: bool | None
    """The state read back after the last successful write."""
    failed: bool
    failures: int
    last_error: str | None
    blocked_by: str | None = None
    block_reason: str | None = None
    """The interlock's `reason` while it holds the output off."""
    reasons: list[str] = field(default_factory=list)
    """What keeps it wanted on: the alarms (a shelved or suppressed one named as such: it
    still drives a protective output), `min_on …` or `held until reset`."""


@strict_data
@dataclass(frozen=True, slots=True, kw_only=True)
class UplinkLine:
    connected: bool
    outbox_depth: int
    outbox_bytes: int
    outbox_budget: int
    oldest_age_s: float | None
    dropped: dict[str, int]
    published: int
    last_error: str | None
    subscribed: bool = False
    """Connected and every inbound topic filter granted by the broker."""
    refused: dict[str, str] = field(default_factory=dict)
    """Inbound topic filters the broker refused on this connection → its reason."""


@strict_data
@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReport:
    gateway: str
    site: str
    name: str | None
    timezone: str
    software: str
    config_version: int
    config_sha256: str
    generated_ns: int
    uptime_s: float
    """Since the running config started (the gateway's start or its last reconfiguration)."""
    evaluations: int
    health: HealthReport
    flood: bool
    buses: list[BusLine]
    alarms: list[AlarmLine]
    outputs: list[OutputLine]
    uplink: UplinkLine | None
    """None: no uplink configured."""

    def model_dump(self, *, mode: Literal["json"] = "json") -> dict[str, Any]:
        """The report as JSON types (`as_json`), what the control socket sends. (The name is
        the one its callers used when this was a pydantic model: gateway.supervisor.)"""
        return dict(as_json(self))


def read_status(data: object) -> StatusReport:
    """A status report sent as JSON types, checked (pydantic's ValidationError if it is not
    one): the CLI's side of the control socket."""
    from pydantic import TypeAdapter

    strict_reports()
    return TypeAdapter(StatusReport).validate_python(data)


def build_status_report(gw: MetricsSource, health: HealthMonitor | None = None) -> StatusReport:
    """A snapshot of `gw` now (cheap, no I/O: safe on the event loop)."""
    cfg = gw.loaded.config
    now_mono = gw.clock.monotonic()
    monitor = health if health is not None else monitor_for(gw)
    bus_types = {b.id: b.type for b in cfg.buses}
    names = {d.id: d.name for d in cfg.devices}
    buses = []
    for loop in gw.bus_loops:
        stats = loop.stats
        devices = [DeviceLine(
            id=device, name=names.get(device), online=h.online, polls=h.polls,
            failures=h.failures, consecutive_failures=h.consecutive_failures,
            last_error=h.last_error,
            last_success_age_s=(None if h.last_success_mono is None
                                else round(max(0.0, now_mono - h.last_success_mono), 3)))
            for device, h in stats.device_health.items()]
        buses.append(BusLine(
            id=loop.bus_id, type=bus_types.get(loop.bus_id, "unknown"),
            devices_online=sum(1 for d in devices if d.online), devices_total=len(devices),
            polls=stats.cycles, overruns=stats.overruns, requests=stats.requests,
            last_poll_ms=round(stats.last_poll_seconds * 1000, 1),
            progress_age_s=round(progress_age(loop, gw), 3),
            stall_limit_s=round(loop.stall_limit, 3), link_open=loop.link_open,
            link_error=loop.link_error, devices=devices))
    alarms = [AlarmLine(
        rule=v.key.rule, subject=v.key.subject, title=v.title, severity=v.severity.value,
        state=v.state.value, room=v.room, since_ns=v.activated_ns, acked_by=v.acked_by,
        first_out=v.first_out, hidden=v.hidden_drive) for v in gw.core.alarms.active()]
    roles = {o.id: o.role for o in cfg.outputs}
    plans = gw.core.planner.state
    outputs = []
    for output_id, state in gw.driver.state.items():
        plan = plans.get(output_id)
        outputs.append(OutputLine(
            id=output_id, role=roles.get(output_id, "other"),
            wanted=bool(gw.core.wanted.get(output_id, False)), commanded=state.commanded,
            confirmed=state.confirmed, failed=state.failed, failures=state.failures,
            last_error=state.last_error,
            blocked_by=plan.blocked_by if plan is not None else None,
            block_reason=plan.block_reason if plan is not None else None,
            reasons=list(plan.reasons) if plan is not None else []))
    uplink = None
    if gw.uplink is not None:
        status = gw.uplink.status()
        uplink = UplinkLine(
            connected=status.connected, outbox_depth=status.outbox.depth,
            outbox_bytes=status.outbox.bytes, outbox_budget=status.outbox.budget,
            oldest_age_s=status.outbox.oldest_age_s,
            dropped={str(kind): n for kind, n in status.dropped.items()},
            published=status.published, last_error=status.last_error,
            subscribed=status.subscribed, refused=dict(status.refused))
    return StatusReport(
        gateway=cfg.gateway.id, site=cfg.gateway.site, name=cfg.gateway.name,
        timezone=cfg.gateway.timezone, software=__version__,
        config_version=gw.config_version, config_sha256=gw.config_sha256,
        generated_ns=gw.clock.now_ns(), uptime_s=round(max(0.0, now_mono - gw.started_mono), 3),
        evaluations=gw.evaluations, health=monitor.check(), flood=gw.core.alarms.flood.active,
        buses=buses, alarms=alarms, outputs=outputs, uplink=uplink)
