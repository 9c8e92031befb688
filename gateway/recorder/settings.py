"""The `recorder:` and `incidents:` sections of a gateway config (docs/incidents.md)."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from gateway.config.duration import Duration
from gateway.config.profile import Strict


class RecorderSettings(Strict):
    """The flight recorder: the last `window` of every point at acquisition resolution."""

    enabled: bool = True
    """False: no flight recorder."""
    window: Duration = 900.0
    """How far back every point is kept (default 15 minutes)."""
    max_points: Annotated[int, Field(ge=1, le=100_000)] = 20_000
    """Points recorded at most (further points are counted, not kept)."""

    @model_validator(mode="after")
    def _window_bounds(self) -> Self:
        if not 10.0 <= self.window <= 6 * 3600.0:
            raise ValueError("window must be between 10s and 6h")
        return self


class IncidentSettings(Strict):
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
    max_bytes: Annotated[int, Field(ge=64 * 1024, le=16 * 2**30)] = 64 * 2**20
    """Disk budget of the stored incidents (the oldest go first)."""
    max_incidents: Annotated[int, Field(ge=1, le=100_000)] = 500
    """Incidents kept at most (the oldest go first)."""

    @model_validator(mode="after")
    def _windows(self) -> Self:
        if self.pre < 0 or self.post < 0:
            raise ValueError("pre and post must not be negative")
        if self.max_duration < self.post:
            raise ValueError("max_duration must be at least post")
        if self.max_duration > 24 * 3600.0:  # an open incident's events are held in memory
            raise ValueError("max_duration must be at most 24h")
        return self
