"""What the alarm manager hands out: events (every transition, journalled and sent uplink),
read-only views of alarms, the flood status and the command error the panel shows."""

from __future__ import annotations

from typing import Any

from gateway.alarms.lifecycle import (
    AlarmKey,
    AlarmRecord,
    AlarmState,
    OutOfService,
    Shelf,
)
from gateway.alarms.types import Severity
from gateway.contract.enums import EventKind as EventKind  # re-exported (defined in the contract)
from gateway.field.sample import Value
from gateway.records import dataclass

SYSTEM_ACTOR = "system"


class AlarmCommandError(ValueError):
    """An operator command that cannot be carried out (unknown alarm, nothing to acknowledge,
    already shelved …). The message is meant for the panel."""


class CommandRefused(Exception):
    """An operator command refused (unknown alarm, not in a state that allows it), as told to
    the panel and to remote commands on `cmd`."""


SUPPRESSION_RULE = "$suppression"
JOURNAL_RULE = "$journal"
CONFIG_RULE = "$config"
DRILL_RULE = "$drill"
"""The rule of a live drill's start and end events (kind `drill`, subject the drill's id)."""

OUTPUT_RULE = "$output"
"""The rule of an output's hold events (subject the output's id): an output that does not
restore on clear held on by a real alarm (`held until reset: …`), released by an operator
(`reset …`, actor the operator) or by the gateway (its config no longer holds it)."""
OUTPUT_EVENT_KIND = EventKind.OUTPUT
"""The kind those events travel as (state and previous state `normal`, severity none)."""

DRILL_PREFIX = "drill:"
"""A live drill's alarms are alarms of their own: the subject of the rule's binding with this
prefix (`fire.smoke_coincidence@drill:tx-3f`), so a drill alarm never shares a key — state,
acknowledgement, journal row — with the real alarm of the same binding (gateway.drills.live)."""


def is_drill(subject: str) -> bool:
    """The subject of a live drill's alarm (`DRILL_PREFIX`)."""
    return subject.startswith(DRILL_PREFIX)


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One journalled event. `seq` increases strictly (also across journal recovery)."""

    seq: int
    ts: int
    """ns since the epoch (the manager's clock when the transition happened)."""
    kind: EventKind
    rule: str
    subject: str
    state: AlarmState
    previous_state: AlarmState
    value: Value
    severity: Severity | None
    actor: str
    """`system` or the operator's name."""
    note: str | None
    first_out: bool
    """ALARM: this activation is the first in its room since the room was all-normal.
    FLOOD_START/END: always True (the event names the flood's first-out alarm)."""
    room: str | None
    title: str
    chattering: bool = False
    drill: bool = False
    """A live drill's alarm or a drill's start/end: never a real hazard."""
    clock_synced: bool | None = None
    """Whether the system clock was synchronised when `ts` was stamped (gateway.clocksync,
    read through a `SyncedCache`); None: not known (an event journalled by a version before
    the mark, or one not made by the alarm manager). The central ingest writes an old event
    at its own time only when this is True (gateway.ingest.timecheck)."""

    @property
    def key(self) -> AlarmKey:
        return AlarmKey(self.rule, self.subject)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able form for the uplink and the panel."""
        return {
            "seq": self.seq, "ts": self.ts, "kind": str(self.kind), "rule": self.rule,
            "subject": self.subject, "state": str(self.state),
            "previous_state": str(self.previous_state), "value": self.value,
            "severity": None if self.severity is None else str(self.severity),
            "actor": self.actor, "note": self.note, "first_out": self.first_out,
            "room": self.room, "title": self.title, "chattering": self.chattering,
            "drill": self.drill, "clock_synced": self.clock_synced,
        }


LATCHED_WHILE = "latched while"
"""How the note of a hidden latch's event begins, or goes on after `; ` (`latched while
suppressed`): a latching alarm whose condition rose while it was shelved or suppressed
(gateway.alarms.ledger)."""


def is_hidden_rise(event: AlarmEvent) -> bool:
    """The journal's event of a condition that rose while its alarm was hidden: a hidden latch
    (a latching alarm, shelved or suppressed: its note says `latched while shelved` or `…
    suppressed`), or an alarm that turned active under a suppression (`normal` to
    `suppressed`). (A shelved non-latching alarm's rise is journalled nowhere: the shelf is on
    that one alarm, put there by someone who knows it.) The incident keeper opens a record on
    either (gateway.recorder.incidents)."""
    if event.state not in (AlarmState.SHELVED, AlarmState.SUPPRESSED):
        return False
    return ((event.note is not None and LATCHED_WHILE in event.note)
            or (event.state is AlarmState.SUPPRESSED
                and event.previous_state in (AlarmState.NORMAL,
                                             AlarmState.RETURNED_UNACKNOWLEDGED)))


@dataclass(frozen=True, slots=True)
class AlarmView:
    """A read-only snapshot of one alarm for the panel, actions and tests."""

    key: AlarmKey
    state: AlarmState
    condition: bool
    """The rule's debounced condition, as last observed."""
    value: Value
    severity: Severity
    title: str
    room: str | None
    actions: tuple[str, ...]
    latching: bool
    chattering: bool
    activated_ns: int | None
    acked_by: str | None
    acked_ns: int | None
    shelf: Shelf | None
    suppression: str | None
    out_of_service: OutOfService | None
    first_out: bool
    """First alarm to activate in its room since the room was last all-normal."""
    flood_first_out: bool
    """The activation that started the current flood."""
    demanded_roles: frozenset[str]
    acknowledgeable: bool
    acked_note: str | None = None
    """The note of the acknowledgement shown by `acked_by` (issue 14)."""
    drill: bool = False
    """A live drill's alarm (its subject has `DRILL_PREFIX`)."""
    hidden_active: bool = False
    """Shelved or suppressed while its condition is active or it is latched active: it still
    drives its protective outputs (`AlarmRecord.hidden_active`)."""

    @property
    def hidden_drive(self) -> str | None:
        """How a shelved or suppressed alarm still drives its protective outputs, for the
        panel and `roomwarden status`: `latched` (a latching alarm, latched before or under
        the overlay: back unacknowledged when the overlay ends, reset only by an acknowledge
        then), `active` (its condition is active); None when it drives nothing hidden."""
        if not self.hidden_active:
            return None
        return "latched" if self.latching else "active"

    @property
    def audible(self) -> bool:
        return self.state.audible

    @property
    def demands_actions(self) -> bool:
        return self.state.demands_actions

    @property
    def annunciated(self) -> bool:
        return self.state.annunciated

    @staticmethod
    def of(rec: AlarmRecord, *, first_out: bool, flood_first_out: bool) -> AlarmView:
        ev = rec.ev
        return AlarmView(
            key=rec.key, state=rec.state, condition=rec.condition, value=ev.value,
            severity=ev.severity, title=ev.title, room=ev.room, actions=ev.actions,
            latching=ev.latching, chattering=rec.chattering, activated_ns=rec.activated_ns,
            acked_by=rec.acked_by, acked_ns=rec.acked_ns, shelf=rec.shelf,
            suppression=rec.suppression, out_of_service=rec.oos, first_out=first_out,
            flood_first_out=flood_first_out, demanded_roles=rec.demanded_roles(),
            acknowledgeable=rec.acknowledgeable,
            acked_note=rec.acked_note if rec.acked_by else None,
            drill=is_drill(rec.key.subject), hidden_active=rec.hidden_active)


@dataclass(frozen=True, slots=True)
class FloodStatus:
    active: bool
    since_ns: int | None
    first_out: AlarmKey | None
    """The activation that started the burst (None when no flood)."""
    activations: int
    """Activations within the flood window now."""
