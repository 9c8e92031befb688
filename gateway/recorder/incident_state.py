"""What the incident keeper (gateway.recorder.incidents) holds of an open incident, and what it
reads of the running gateway (`Sources`, gateway.recorder.hook)."""

from __future__ import annotations

from typing import Any, Protocol

from gateway.alarms.events import AlarmEvent, AlarmView
from gateway.recorder.ring import PointRing
from gateway.records import dataclass, field

OutputSnapshot = tuple[bool | None, bool | None, str | None, int, int, int]
"""(commanded, confirmed, last error, writes, last write ns, commanded ns) of one output."""


class Sources(Protocol):
    """What the keeper reads of the running gateway (gateway.recorder.hook)."""

    def now_ns(self) -> int: ...
    def last_seq(self) -> int: ...
    def events_since(self, seq: int) -> list[AlarmEvent]: ...
    def output_states(self) -> dict[str, OutputSnapshot]: ...
    def room_active(self, room: str) -> bool: ...
    def room_context(self, room: str) -> RoomContext: ...
    def identity(self) -> dict[str, Any]: ...

    def active_alarms(self) -> list[AlarmView]: ...
    def health(self) -> dict[str, Any]: ...


@dataclass
class RoomContext:
    devices: set[str]
    """The room's devices, the devices its rules read and the devices of its outputs."""
    rules: list[dict[str, Any]]
    """The room's rule bindings: rule, subject, points, parameters (thresholds)."""
    outputs: dict[str, dict[str, Any]]
    """The outputs serving the room: id → role, device, point."""
    points: dict[str, dict[str, Any]]
    """Point id → device, room, quantity, unit (of every point of `devices`)."""


@dataclass
class OpenIncident:
    id: str
    room: str
    trigger: AlarmEvent
    context: RoomContext
    start_ns: int
    end_ns: int
    health_at_trigger: dict[str, Any]
    identity: dict[str, Any]
    rings: dict[str, PointRing] = field(default_factory=dict)
    copied_ns: dict[str, int] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    saved_mono: float = 0.0
    saved_ns: int = 0
    """Wall time of its last save (what a reader of its progress file shows it as of)."""
    drill: dict[str, Any] | None = None
    """Issue 12: a live drill's evaluation (gateway.drills.live_eval); the record's kind is
    then `drill`."""
    samples: int = 0
    """Samples in `rings`."""
    max_samples: int = 0
    """`MAX_INCIDENT_SAMPLES` when it opened."""
    dropped: int = 0
    """Events and output changes past `MAX_INCIDENT_ITEMS`, not kept."""
    cut_ns: int | None = None
    """Set when the incident reached `max_samples`: the time of the first sample it did not
    keep (none at or after it was copied)."""
    clock_steps: list[dict[str, int]] = field(default_factory=list)
    """Wall-clock steps while it was open (gateway/recorder/clockstep.py): at_ns, by_ns."""
    saved_through: dict[str, int] | None = None
    """What its progress file holds (gateway.recorder.progress): per point the time of the
    last sample in it; None: no progress file that the next save may append to (it writes the
    incident whole: at its opening, after a clock step, after a failed append)."""
    saved_events: int = 0
    """`events` in the progress file…"""
    saved_outputs: int = 0
    """…and `outputs`."""
