"""The `recorder:` and `incidents:` sections of a gateway config (docs/incidents.md).

Plain frozen dataclasses, without pydantic at import (gateway.config.section, issue 15):
pydantic validates them as fields of `GatewayConfig`, a running gateway uses them unpickled."""

from typing import Annotated, Literal

from gateway.config.duration import Duration
from gateway.config.section import Between, section
from gateway.records import dataclass


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class RecorderSettings:
    """The flight recorder: the last `window` of every point at acquisition resolution."""

    enabled: bool = True
    """False: no flight recorder."""
    window: Duration = 900.0
    """How far back every point is kept (default 15 minutes)."""
    max_points: Annotated[int, Between(ge=1, le=100_000)] = 20_000
    """Points recorded at most (further points are counted, not kept)."""

    def __post_init__(self) -> None:
        if not 10.0 <= self.window <= 6 * 3600.0:
            raise ValueError("window must be between 10s and 6h")


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentSettings:
    """Incident records: frozen when an alarm of `severity` or worse activates."""

    enabled: bool = True
    """False: no incident records are kept."""
    severity: Literal["critical", "major", "minor", "warning"] = "major"
    """The least severe alarm that opens an incident (default: major and critical)."""
    pre: Duration = 600.0
    """Recorded data before the trigger (at most the recorder's window)."""
    post: Duration = 600.0
    """Data after the trigger; extended while alarms in the room stay active…"""
    max_duration: Duration = 3600.0
    """…up to this long after the trigger (at most 24h)."""
    max_bytes: Annotated[int, Between(ge=64 * 1024, le=16 * 2**30)] = 64 * 2**20
    """Disk budget of the stored incidents (the oldest go first)."""
    max_incidents: Annotated[int, Between(ge=1, le=100_000)] = 500
    """Incidents kept at most (the oldest go first)."""

    def __post_init__(self) -> None:
        if self.pre < 0 or self.post < 0:
            raise ValueError("pre and post must not be negative")
        if self.max_duration < self.post:
            raise ValueError("max_duration must be at least post")
        if self.max_duration > 24 * 3600.0:  # an open incident's events are held in memory
            raise ValueError("max_duration must be at most 24h")
