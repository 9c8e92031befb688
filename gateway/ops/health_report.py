"""The health report's data (`GET /healthz`, `/metrics`' health gauges, the status report's
`health`): levels, one check's result, the site's alarm state, the report — and `as_json`,
which writes these reports (and gateway.ops.status_report's) as JSON types.

The reports are plain frozen dataclasses, not pydantic models (issue 15): a gateway answering
its health and status at rest built their validators and serializers (the first validator a
process builds costs ~1.35 MiB of pydantic's schema machinery), only to serialize what it made
itself. They stay one definition for both sides: `as_json` gives exactly what pydantic's
serializer gives for them (`TypeAdapter(<report>).dump_python(report, mode="json")`: the
fields in their order, enums as their values, an int in a float field as a float; a report
class may leave out some fields while None, `omit_none`), and a reader that wants them checked
validates the JSON with pydantic against the same classes (gateway.strict's `STRICT_DATA`:
unknown keys refused, as the models did) — `roomwarden status` does
(gateway.ops.status_report.read_status). tests/ops/test_report_json.py shows both with
hypothesis, and that the bytes are those the pydantic models wrote.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from enum import Enum, StrEnum
from typing import Any, ClassVar, TypeVar

from gateway.alarms.events import AlarmView
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.records import dataclass

_T = TypeVar("_T")
STRICT_REPORTS: list[type[Any]] = []
"""The report classes a reader validates with `STRICT_DATA` (gateway.strict): given their
config where one is validated (`strict_reports`), so that a gateway writing them imports no
pydantic (issue 15)."""


def strict_data(cls: type[_T]) -> type[_T]:
    """Mark a report class as validated with `STRICT_DATA` (was `with_config(STRICT_DATA)`,
    which imported pydantic with the class)."""
    STRICT_REPORTS.append(cls)
    return cls


def strict_reports() -> None:
    """Give every report class `STRICT_DATA` (pydantic's `with_config`, what their
    decorator was): call before validating one. Imports pydantic."""
    from pydantic import with_config

    from gateway.strict import STRICT_DATA

    for cls in STRICT_REPORTS[len(_GIVEN):]:  # (each class once)
        with_config(STRICT_DATA)(cls)
        _GIVEN.append(cls)


_GIVEN: list[type[Any]] = []
"""The report classes `strict_reports` has given their config, in `STRICT_REPORTS` order."""


class Level(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    ALARM = "alarm"
    """Overall only: the service works (ok or degraded) but the site is in alarm."""
    FAILING = "failing"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Level.OK: 0, Level.DEGRADED: 1, Level.ALARM: 2, Level.FAILING: 3}


class SiteLevel(StrEnum):
    NORMAL = "normal"
    """No alarm annunciated."""
    ACTIVE = "active"
    """Alarms annunciated, none critical and active, no flood."""
    ALARM = "alarm"
    """A critical alarm is active, or an alarm flood is on."""


_ACTIVE_STATES = (AlarmState.ACTIVE_UNACKNOWLEDGED, AlarmState.ACTIVE_ACKNOWLEDGED)


def worst(levels: list[Level]) -> Level:
    return max(levels, key=lambda level: level.rank, default=Level.OK)


@strict_data
@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    status: Level
    detail: str


@strict_data
@dataclass(frozen=True, slots=True, kw_only=True)
class SiteHealth:
    """The site's alarm state, beside the service's health."""

    status: SiteLevel
    active: int
    """Alarms annunciated (active, or returned and waiting for an acknowledge)."""
    critical: int
    """Critical alarms whose condition is active (acknowledged or not)."""
    unacknowledged: int
    flood: bool
    detail: str
    """In words: `ALARM — 1 critical active, flood`, `2 alarms active, 1 unacknowledged`,
    `normal — no alarm active`."""


def site_health(alarms: Sequence[AlarmView], flood: bool) -> SiteHealth:
    """Judge the site from the alarm manager's annunciated alarms and its flood status."""
    shown = [a for a in alarms if a.state.annunciated]
    critical = sum(1 for a in shown
                   if a.severity is Severity.CRITICAL and a.state in _ACTIVE_STATES)
    unacked = sum(1 for a in shown if a.state.unacknowledged)
    if critical or flood:
        level = SiteLevel.ALARM
        parts = ([f"{critical} critical active"] if critical else []) + \
            (["flood"] if flood else [])
        detail = f"ALARM — {', '.join(parts)}"
        others = len(shown) - critical
        if others:
            detail += f" ({others} other alarm{'s' if others != 1 else ''})"
    elif shown:
        level = SiteLevel.ACTIVE
        detail = f"{len(shown)} alarm{'s' if len(shown) != 1 else ''} active" + (
            f", {unacked} unacknowledged" if unacked else "")
    else:
        level, detail = SiteLevel.NORMAL, "normal — no alarm active"
    return SiteHealth(status=level, active=len(shown), critical=critical,
                      unacknowledged=unacked, flood=flood, detail=detail)


def overall(service: Level, site: SiteHealth | None) -> Level:
    """The one-word status: the service's, but never ok or degraded during a site alarm."""
    if service is not Level.FAILING and site is not None and site.status is SiteLevel.ALARM:
        return Level.ALARM
    return service


@strict_data
@dataclass(frozen=True, slots=True, kw_only=True)
class HealthReport:
    """The body of `GET /healthz` (`ok` is false only when the service is failing)."""

    omit_none: ClassVar[tuple[str, ...]] = ("service", "site", "summary")
    """A bare panel (no gateway) knows neither service nor site: left out."""

    ok: bool
    status: Level
    """Overall: `service`, or `alarm` while the site is in alarm (gateway.ops.health)."""
    checks: dict[str, CheckResult]
    service: Level | None = None
    """The gateway's own health: the worst check (None: no gateway behind the panel)."""
    site: SiteHealth | None = None
    summary: str | None = None
    """`Service: ok · Site: ALARM — 1 critical active, flood`."""

    @property
    def http_status(self) -> int:
        return 503 if self.status is Level.FAILING else 200


def as_json(report: Any) -> Any:
    """`report` (a report dataclass, or a list or dict of them) as JSON types: what pydantic's
    `dump_python(report, mode="json")` gives for it, less the fields a class leaves out while
    None (`omit_none`)."""
    if isinstance(report, Enum):
        return report.value
    if isinstance(report, str | int | float | None):
        return report
    if isinstance(report, list | tuple):
        return [as_json(item) for item in report]
    if isinstance(report, dict):
        return {as_json(key): as_json(value) for key, value in report.items()}
    out: dict[str, Any] = {}
    for name, is_float in _layout(type(report)):
        value = getattr(report, name)
        out[name] = float(value) if is_float and type(value) is int else as_json(value)
    for name in getattr(report, "omit_none", ()):
        if out[name] is None:
            del out[name]
    return out


def _layout(cls: type[Any]) -> tuple[tuple[str, bool], ...]:
    """A report class's fields in order, each with whether it is a float field (pydantic writes
    an int there as a float)."""
    layout = _LAYOUTS.get(cls)
    if layout is None:
        layout = _LAYOUTS[cls] = tuple((f.name, "float" in str(f.type).split(" | "))
                                       for f in dataclasses.fields(cls))
    return layout


_LAYOUTS: dict[type[Any], tuple[tuple[str, bool], ...]] = {}
