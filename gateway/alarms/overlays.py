"""The overlays that hide an alarm from the operator (gateway.alarms.lifecycle): a shelf, an
out-of-service mark and a maintenance suppression of a device, room or rule, each with who,
why and since (and until); and which alarms a suppression's scope covers."""

from __future__ import annotations

from gateway.records import dataclass


@dataclass(frozen=True, slots=True)
class Shelf:
    actor: str
    reason: str
    since_ns: int
    until_ns: int


@dataclass(frozen=True, slots=True)
class OutOfService:
    actor: str
    reason: str
    since_ns: int


@dataclass(frozen=True, slots=True)
class Suppression:
    """Maintenance suppression of every alarm of a device, room or rule (e.g. permitted hot
    work)."""

    scope: str
    actor: str
    reason: str
    since_ns: int
    until_ns: int

    def covers(self, rule: str, subject: str, room: str | None) -> bool:
        return scope_covers(self.scope, rule, subject, room)


def scope_covers(scope: str, rule: str, subject: str, room: str | None) -> bool:
    """A scope is a rule id, a room id, a device id (the part of a point id before the first
    dot) or a whole subject."""
    return (scope in (rule, subject, room) or scope == subject.partition(".")[0])
