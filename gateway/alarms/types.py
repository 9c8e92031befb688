"""The contract between rules, alarms and actions: what a rule evaluation hands on.

Rules (gateway.rules) evaluate conditions over samples and produce `Evaluation`s; the alarm
manager (gateway.alarms) runs the ISA-18.2 lifecycle of each (rule, subject) and journals its
transitions as `AlarmEvent`s; actions (gateway.actions) drive outputs from the alarms' states.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateway.field.sample import Value


class Severity(StrEnum):
    """Alarm priority; the levels 1-4 of Chinese telecom power-and-environment monitoring."""

    CRITICAL = "critical"  # 1 一级
    MAJOR = "major"  # 2 二级
    MINOR = "minor"  # 3 三级
    WARNING = "warning"  # 4 四级 (hint)

    @property
    def level(self) -> int:
        return _LEVELS[self]


_LEVELS = {Severity.CRITICAL: 1, Severity.MAJOR: 2, Severity.MINOR: 3, Severity.WARNING: 4}


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One rule bound to one subject, evaluated once.

    `active` already includes the rule's deadband (hysteresis) and on/off delays: the alarm
    manager takes it as the debounced alarm condition."""

    rule: str
    """Rule id, unique across packs, e.g. `explosion.h2_alarm`."""
    subject: str
    """What the alarm is about: a point id (`h2-1.h2`), a device id or a room id."""
    active: bool
    value: Value
    """The value that decided it (the worst one for a combination), for journal and panel."""
    severity: Severity
    ts: int
    """ns since the epoch: the newest sample the evaluation used (or the evaluation time)."""
    title: str
    room: str | None = None
    actions: tuple[str, ...] = ()
    """Output roles the rule asks for while the alarm demands it (`siren`, `exhaust_fan` …)."""
    latching: bool = False
    """A latching alarm stays active after its condition clears, until acknowledged."""
