"""The operator commands of the alarm manager (a layer of `gateway.alarms.manager`):
acknowledge, shelve, suppress and take out of service, each checked in full before anything
changes (`AlarmCommandError` with a message for the panel), journalled with who and why."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.alarms.events import (
    SUPPRESSION_RULE,
    SYSTEM_ACTOR,
    AlarmCommandError,
    AlarmEvent,
    EventKind,
)
from gateway.alarms.ledger import AlarmLedger, KeyLike, iso, persistable
from gateway.alarms.lifecycle import (
    AlarmRecord,
    AlarmState,
    OutOfService,
    Shelf,
    Suppression,
    scope_covers,
)
from gateway.alarms.types import Severity

_N = AlarmState.NORMAL


class AlarmCommands(AlarmLedger):
    def acknowledge(self, keys: KeyLike | Iterable[KeyLike], actor: str,
                    note: str | None = None) -> list[AlarmEvent]:
        """Acknowledge one alarm or several (all or none: any that cannot be acknowledged raises
        `AlarmCommandError` before anything changes)."""
        self._begin()
        actor = _actor(actor)
        recs = [self._require(k) for k in _keys(keys)]
        if not recs:
            raise AlarmCommandError("no alarm given to acknowledge")
        for rec in recs:
            if not rec.acknowledgeable:
                raise AlarmCommandError(_why_not_ack(rec))
        for rec in recs:
            self._ack(rec, actor, note)
        return self._flush()

    def acknowledge_all(self, actor: str, room: str | None = None,
                        note: str | None = None) -> list[AlarmEvent]:
        """Acknowledge every alarm that waits for it (optionally only in `room`): those still
        unacknowledged. A latched alarm already acknowledged is not reset by it (that takes an
        acknowledge of its own, as the panel's "acknowledge all"; alarm lifecycle audit: a
        remote `ack --all` reset a confirmed fire a local guard had acknowledged, releasing
        its strobe and exhaust fan)."""
        self._begin()
        actor = _actor(actor)
        recs = [r for r in self._ordered() if r.state.unacknowledged and r.acknowledgeable
                and (room is None or r.ev.room == room)]
        for rec in recs:
            self._ack(rec, actor, note)
        return self._flush()

    def acknowledge_waiting(self, keys: Iterable[KeyLike], actor: str,
                            note: str | None = None) -> list[AlarmEvent]:
        """Acknowledge those of `keys` that still wait for an acknowledgement
        (`unacknowledged`), skipping the rest — acknowledged meanwhile by someone else,
        returned to normal, shelved, no longer known: a panel's "acknowledge all" of the alarms
        its operator saw. Never resets a latched alarm that is already acknowledged (that
        takes an acknowledge of its own)."""
        self._begin()
        actor = _actor(actor)
        recs = []
        for key in _keys(keys):
            try:
                rule, subject = key
            except (TypeError, ValueError):
                raise AlarmCommandError(f"not an alarm key (rule, subject): {key!r}") from None
            rec = self._known.records.get((rule, subject))
            if rec is not None and rec.state.unacknowledged and rec.acknowledgeable:
                recs.append(rec)
        for rec in recs:
            self._ack(rec, actor, note)
        return self._flush()

    def _ack(self, rec: AlarmRecord, actor: str, note: str | None) -> None:
        prev = rec.state
        if rec.acknowledge(actor, self._now):
            rec.acked_note = note  # issue 14: the panel shows it beside the acknowledger
        self._changed(rec, prev, actor, note)

    def shelve(self, key: KeyLike, actor: str, until_ns: int, reason: str) -> list[AlarmEvent]:
        """Shelve an alarm until `until_ns` (wall-clock ns): not annunciated, no sounder or
        strobe; its protective outputs stay on while it is active (gateway.alarms.lifecycle). A
        critical alarm nobody has acknowledged is refused, as for a suppression."""
        self._begin()
        rec = self._require(key)
        actor, reason = _actor(actor), _reason(reason)
        self._future(until_ns)
        if rec.oos is not None:
            raise AlarmCommandError(f"{rec.key} is out of service; return it to service first")
        if rec.suppression is not None:
            raise AlarmCommandError(f"{rec.key} is suppressed ({rec.suppression})")
        if rec.shelf is not None:
            raise AlarmCommandError(
                f"{rec.key} is already shelved by {rec.shelf.actor} until "
                f"{iso(rec.shelf.until_ns)}; unshelve it first")
        if rec.base is AlarmState.NORMAL and not rec.condition:
            # shelving is for an alarm the operator sees (ISA-18.2: a nuisance in the alarm
            # list); one shelved in advance would keep a later real fire silent (drills audit)
            raise AlarmCommandError(
                f"{rec.key} is normal: only an alarm in the alarm list (active or not yet "
                "acknowledged) can be shelved; to keep a device, room or rule quiet for work, "
                "suppress it")
        if rec.ev.severity is Severity.CRITICAL and rec.state.unacknowledged:
            # the suppression's guard held for shelving too (alarm lifecycle audit: a live
            # hydrogen alarm, refused for a suppression, was shelved for 7 days, siren, fan and
            # charge inhibit released)
            raise AlarmCommandError(_unacknowledged_critical("shelving", [rec]))
        prev = rec.state
        shelf = Shelf(actor, reason, self._now, until_ns)
        rec.set_overlay(shelf=shelf, now_ns=self._now)
        self._shelved.add(rec.key)
        self._batch.shelf_opened(rec.key, shelf)
        self._changed(rec, prev, actor, f"shelved until {iso(until_ns)}: {reason}")
        self._plan_expiry()
        return self._flush()

    def unshelve(self, key: KeyLike, actor: str) -> list[AlarmEvent]:
        self._begin()
        rec = self._require(key)
        actor = _actor(actor)
        if rec.shelf is None:
            raise AlarmCommandError(f"{rec.key} is not shelved")
        self._end_shelf(rec, actor, "unshelved")
        self._plan_expiry()
        return self._flush()

    def _end_shelf(self, rec: AlarmRecord, actor: str, why: str) -> None:
        prev = rec.state
        rec.set_overlay(shelf=None, now_ns=self._now)
        self._shelved.discard(rec.key)
        self._batch.shelf_closed(rec.key, self._now, actor, why)
        self._changed(rec, prev, actor, why)

    def suppress(self, scope: str, actor: str, reason: str,
                 until_ns: int) -> list[AlarmEvent]:
        """Suppress every alarm of a device, room or rule (`scope`) until `until_ns`, e.g. for
        permitted hot work. A new suppression of the same scope replaces the old one."""
        self._begin()
        actor, reason = _actor(actor), _reason(reason)
        scope = scope.strip() if isinstance(scope, str) else ""
        if not scope:
            raise AlarmCommandError("a suppression needs a scope: a device, room or rule id")
        self._future(until_ns)
        if scope not in self._suppressions and not any(
                scope_covers(scope, *binding) for binding in self._known.bindings()):
            raise AlarmCommandError(f"{scope!r} is no known device, room, rule or alarm")
        unseen = [r for r in self._ordered() if r.ev.severity is Severity.CRITICAL
                  and r.state.unacknowledged and scope_covers(scope, *_binding(r))]
        if unseen:
            # like shelving, suppression is no way to silence an alarm nobody has looked at:
            # a critical one is acknowledged first (then it may go, e.g. a faulty detector
            # taken out for repair); the audit's viewer hid a live fire and its strobe
            raise AlarmCommandError(_unacknowledged_critical(scope, unseen))
        note = f"{reason} (until {iso(until_ns)})"
        if scope in self._suppressions:
            self._batch.suppression_closed(scope, self._now, actor, "replaced")
        sup = Suppression(scope, actor, reason, self._now, until_ns)
        self._suppressions[scope] = sup
        self._batch.suppression_opened(sup)
        self._system_event(EventKind.SUPPRESSION_START, SUPPRESSION_RULE, scope,
                           AlarmState.SUPPRESSED, _N, actor, note)
        # only the alarms in the list (or held active) take the overlay: a quiet binding stays
        # quiet, not one listed 'suppressed' alarm and event each (F5: 358 for one room);
        # one that turns active under the suppression is suppressed then (`_suppress_rising`)
        for rec in self._known.records.values():
            if rec.suppression is None and persistable(rec) and sup.covers(*_binding(rec)):
                prev = rec.state
                rec.set_overlay(suppression=scope, now_ns=self._now)
                self._changed(rec, prev, actor, f"suppressed ({scope}): {note}")
        self._plan_expiry()
        return self._flush()

    def _suppress_rising(self, rec: AlarmRecord) -> str | None:
        """A quiet alarm turns active (from `_apply`, before its condition is set): under a
        suppression that covers it, it is suppressed from now on — not annunciated, demanding
        only its protective outputs while active (a latching one latched: lifecycle) — until
        the suppression ends. Returns the note of the one event `_apply` journals for it
        (None: no suppression covers it)."""
        scope = self._covering(rec)
        if scope is None:
            return None
        rec.set_overlay(suppression=scope, now_ns=self._now)
        return f"suppressed ({scope})"

    def unsuppress(self, scope: str, actor: str) -> list[AlarmEvent]:
        self._begin()
        actor = _actor(actor)
        if scope not in self._suppressions:
            raise AlarmCommandError(f"{scope!r} is not suppressed")
        self._end_suppression(scope, actor, "unsuppressed")
        self._plan_expiry()
        return self._flush()

    def _end_suppression(self, scope: str, actor: str, why: str) -> None:
        del self._suppressions[scope]
        self._batch.suppression_closed(scope, self._now, actor, why)
        self._system_event(EventKind.SUPPRESSION_END, SUPPRESSION_RULE, scope, _N,
                           AlarmState.SUPPRESSED, actor, why)
        for rec in self._known.records.values():
            if rec.suppression == scope:
                prev = rec.state
                rec.set_overlay(suppression=self._covering(rec), now_ns=self._now)
                self._changed(rec, prev, actor, f"{why} ({scope})")

    def set_out_of_service(self, key: KeyLike, actor: str, reason: str) -> list[AlarmEvent]:
        """Take an alarm out of service (no expiry) — e.g. a broken detector awaiting repair."""
        self._begin()
        rec = self._require(key)
        actor, reason = _actor(actor), _reason(reason)
        if rec.oos is not None:
            raise AlarmCommandError(f"{rec.key} is already out of service ({rec.oos.reason})")
        prev = rec.state
        rec.set_overlay(oos=OutOfService(actor, reason, self._now), now_ns=self._now)
        self._changed(rec, prev, actor, f"out of service: {reason}")
        return self._flush()

    def return_to_service(self, key: KeyLike, actor: str) -> list[AlarmEvent]:
        self._begin()
        rec = self._require(key)
        actor = _actor(actor)
        if rec.oos is None:
            raise AlarmCommandError(f"{rec.key} is not out of service")
        prev, base = rec.state, rec.base
        rec.set_overlay(oos=None, now_ns=self._now)  # under a shelf or suppression: may latch
        self._changed(rec, prev, actor, "returned to service", base=base)
        return self._flush()

    def _expire_overlays(self) -> None:
        """End the shelves and suppressions whose time is up (from `_expire`)."""
        wall_due = self._next_expiry is not None and self._now >= self._next_expiry
        mono_due = self._next_mono_expiry is not None and self._mono >= self._next_mono_expiry
        if not (wall_due or mono_due):
            return
        for scope, sup in list(self._suppressions.items()):
            if self._overlay_due(("suppression", scope, sup), sup.until_ns):
                self._end_suppression(scope, SYSTEM_ACTOR, "suppression expired")
        for key in sorted(self._shelved):
            shelf = self._record(key).shelf
            if shelf is not None and self._overlay_due(("shelf", key, shelf), shelf.until_ns):
                self._end_shelf(self._record(key), SYSTEM_ACTOR, "shelve expired")
        self._plan_expiry()


def _binding(rec: AlarmRecord) -> tuple[str, str, str | None]:
    """(rule, subject, room) of an alarm's record."""
    return rec.key.rule, rec.key.subject, rec.ev.room


# argument checks -------------------------------------------------------------------------------

def _keys(keys: KeyLike | Iterable[KeyLike]) -> list[Any]:
    if isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys):
        return [keys]
    if isinstance(keys, str):
        raise AlarmCommandError(f"not an alarm key (rule, subject): {keys!r}")
    return list(keys)


def _actor(actor: str) -> str:
    if not isinstance(actor, str) or not actor.strip():
        raise AlarmCommandError("an operator command needs an actor (who)")
    return actor.strip()


def _reason(reason: str) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise AlarmCommandError("a reason (why) is required")
    return reason.strip()


MAX_NAMED = 5
"""How many alarms a refusal names (the rest are counted)."""


def _unacknowledged_critical(scope: str, recs: list[AlarmRecord]) -> str:
    """Why a suppression of `scope` (or, with scope "shelving", a shelf) is refused."""
    names = ", ".join(f"{r.key} ({r.ev.title}, {r.state.value.replace('_', ' ')})"
                      for r in recs[:MAX_NAMED])
    more = f" and {len(recs) - MAX_NAMED} more" if len(recs) > MAX_NAMED else ""
    which = "it" if len(recs) == 1 else "them"
    doing, done = (("shelving", "shelved") if scope == "shelving" else
                   (f"suppressing {scope!r}", "suppressed"))
    return (f"{doing} would hide {len(recs)} critical alarm"
            f"{'s' if len(recs) != 1 else ''} nobody has acknowledged: {names}{more}; "
            f"acknowledge {which} first (an acknowledged alarm may be {done})")


def _why_not_ack(rec: AlarmRecord) -> str:
    state = rec.state
    if state.overlay:
        return f"{rec.key} is {state.value.replace('_', ' ')}; nothing to acknowledge"
    if state is _N:
        return f"{rec.key} is normal; nothing to acknowledge"
    return f"{rec.key} is already acknowledged (by {rec.acked_by})"
