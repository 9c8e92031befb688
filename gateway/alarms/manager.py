"""The alarm manager: runs the ISA-18.2 lifecycle (`gateway.alarms.lifecycle`) of every alarm,
takes operator commands, detects chattering and floods, tracks first-outs and journals every
transition (`gateway.alarms.journal`) in one transaction per call.

Pure apart from the journal: time comes from the injected clock (`now_ns()` for timestamps and
expiries given as wall-clock ns, `monotonic()` for chattering and flood windows).

`observe()` is meant to be called about once a second with every evaluation; when nothing
changed it only compares each evaluation's `active` with the alarm's last condition (and keeps
the evaluation for its value) — no events, no journal writes.

Every public call returns the events it caused (also in the journal, with strictly increasing
`seq`; `events_since(seq)` serves the uplink). Commands that cannot be carried out raise
`AlarmCommandError` with a message for the panel and change nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from gateway.alarms.events import (
    JOURNAL_RULE,
    SUPPRESSION_RULE,
    SYSTEM_ACTOR,
    AlarmCommandError,
    AlarmEvent,
    AlarmView,
    EventKind,
    FloodStatus,
)
from gateway.alarms.flood import FloodDetector, RoomFirstOut
from gateway.alarms.journal import Journal, JournalBatch
from gateway.alarms.lifecycle import (
    AlarmKey,
    AlarmRecord,
    AlarmState,
    ChatterPolicy,
    OutOfService,
    Shelf,
    Suppression,
    scope_covers,
)
from gateway.alarms.types import Evaluation
from gateway.clock import Clock
from gateway.field.sample import Value

log = logging.getLogger(__name__)

KeyLike = AlarmKey | tuple[str, str]

_N = AlarmState.NORMAL
_AU = AlarmState.ACTIVE_UNACKNOWLEDGED


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))


def _persistable(rec: AlarmRecord) -> bool:
    return rec.state is not _N or rec.condition or rec.chattering


class AlarmManager:
    def __init__(self, journal: Journal, clock: Clock, *, chatter_count: int = 3,
                 chatter_window: float = 60.0, chatter_hold: float = 60.0,
                 flood_count: int = 10, flood_window: float = 600.0,
                 flood_clear_count: int | None = None,
                 prune_interval: float = 3600.0) -> None:
        if chatter_count < 2 or chatter_window <= 0 or chatter_hold < 0:
            raise ValueError("chatter_count must be >= 2, chatter_window > 0, chatter_hold >= 0")
        self._journal = journal
        self._clock = clock
        self._policy = ChatterPolicy(chatter_count, chatter_window, chatter_hold)
        self._flood = FloodDetector(flood_count, flood_window, flood_clear_count)
        self._rooms = RoomFirstOut()
        self._prune_interval = prune_interval
        self._records: dict[tuple[str, str], AlarmRecord] = {}
        self._not_normal: set[AlarmKey] = set()
        self._chattering: set[AlarmKey] = set()
        self._shelved: set[AlarmKey] = set()
        self._suppressions: dict[str, Suppression] = {}
        self._next_expiry: int | None = None
        self._batch = JournalBatch()
        self._events: list[AlarmEvent] = []
        self._meta_dirty = False
        self._now = clock.now_ns()
        self._mono = clock.monotonic()
        self._last_prune = self._mono
        self._seq = 0
        self._restore()

    # restart ---------------------------------------------------------------------------------

    def _restore(self) -> None:
        contents = self._journal.load()
        self._seq = max(contents.last_seq, self._journal.last_seq)
        self._suppressions = dict(contents.suppressions)
        for rec in contents.records:
            if rec.suppression is not None and rec.suppression not in self._suppressions:
                rec.suppression = self._covering(rec)
            if rec.chattering and not rec.condition:
                rec.clear_since = self._mono
            self._records[rec.key] = rec
            if rec.shelf is not None:
                self._shelved.add(rec.key)
            if rec.state.annunciated:
                self._rooms.enter(rec.key, rec.ev.room)
            self._index(rec)
        try:
            self._flood.load(json.loads(contents.meta.get("flood", "{}")), self._mono,
                             self._now)
            self._rooms.load(json.loads(contents.meta.get("first_out", "[]")))
        except (ValueError, TypeError) as exc:
            log.error("event=alarm_meta_unreadable error=%r", exc)
        self._plan_expiry()
        if contents.records or contents.suppressions:
            log.info("event=alarms_restored alarms=%d suppressions=%d last_seq=%d",
                     len(contents.records), len(contents.suppressions), self._seq)
        self._flush()  # journals a recovery note, if any

    def held_conditions(self) -> dict[tuple[str, str], Value]:
        """(rule, subject) → last value of every alarm whose condition is held active (also
        shelved or suppressed ones): restored from the journal at a start, or carried from the
        config before. The rule engine holds their bindings active until good data says
        otherwise (`RuleEngine.hold`), so a restart never returns them nor re-runs an
        on-delay (DESIGN principle 7)."""
        return {key: rec.ev.value for key, rec in self._records.items() if rec.condition}

    # observing -------------------------------------------------------------------------------

    def observe(self, evaluations: Iterable[Evaluation], *,
                at: tuple[int, float] | None = None) -> list[AlarmEvent]:
        """Take this cycle's evaluations; returns the events (transitions) they caused.
        `at`: (wall-clock ns, monotonic s) to use instead of the clock's now — evaluations held
        while a config was on trial are raised at the time they were seen (issue 9)."""
        self._begin()
        if at is not None:  # issue 9
            self._now, self._mono = at
        records = self._records
        changed: list[Evaluation] = []
        for ev in evaluations:
            rec = records.get((ev.rule, ev.subject))
            if rec is not None and rec.condition == ev.active:
                rec.ev = ev
            else:
                changed.append(ev)
        if changed:
            if len(changed) > 1:
                changed.sort(key=lambda e: e.ts)  # first-out by the evaluations' time
            for ev in changed:
                self._apply(ev)
        self._expire()
        return self._flush()

    def _apply(self, ev: Evaluation) -> None:
        key = AlarmKey(ev.rule, ev.subject)
        rec = self._records.get(key)
        if rec is None:
            rec = AlarmRecord(key=key, ev=ev)
            self._records[key] = rec
            scope = self._covering(rec) if self._suppressions else None
            if scope is not None:
                rec.set_overlay(suppression=scope, now_ns=self._now)
                self._changed(rec, _N, SYSTEM_ACTOR, f"suppressed ({scope})")
        else:
            rec.ev = ev
        prev = rec.state
        began = rec.set_condition(ev.active, self._mono, self._now, self._policy)
        self._changed(rec, prev, SYSTEM_ACTOR, "chattering" if began else None)

    def tick(self) -> list[AlarmEvent]:
        """Expire shelves and suppressions, release chattering alarms, end floods, prune the
        journal. `observe()` does the same; call `tick()` when there is nothing to observe."""
        self._begin()
        self._expire()
        return self._flush()

    def system_event(self, kind: EventKind, rule: str, subject: str,
                     note: str) -> list[AlarmEvent]:
        """Journal one system event that changes no alarm (issue 9: `$config`, a config rolled
        back after its trial)."""
        self._begin()
        self._system_event(kind, rule, subject, _N, _N, SYSTEM_ACTOR, note)
        return self._flush()

    # operator commands -----------------------------------------------------------------------

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
        """Acknowledge every alarm that waits for it (optionally only in `room`)."""
        self._begin()
        actor = _actor(actor)
        recs = [r for r in self._ordered() if r.acknowledgeable
                and (room is None or r.ev.room == room)]
        for rec in recs:
            self._ack(rec, actor, note)
        return self._flush()

    def _ack(self, rec: AlarmRecord, actor: str, note: str | None) -> None:
        prev = rec.state
        if rec.acknowledge(actor, self._now):
            rec.acked_note = note  # issue 14: the panel shows it beside the acknowledger
        self._changed(rec, prev, actor, note)

    def shelve(self, key: KeyLike, actor: str, until_ns: int, reason: str) -> list[AlarmEvent]:
        """Shelve an alarm until `until_ns` (wall-clock ns): not annunciated, no actions."""
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
                f"{_iso(rec.shelf.until_ns)}; unshelve it first")
        prev = rec.state
        shelf = Shelf(actor, reason, self._now, until_ns)
        rec.set_overlay(shelf=shelf, now_ns=self._now)
        self._shelved.add(rec.key)
        self._batch.shelf_opened(rec.key, shelf)
        self._changed(rec, prev, actor, f"shelved until {_iso(until_ns)}: {reason}")
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
                scope_covers(scope, r.key.rule, r.key.subject, r.ev.room)
                for r in self._records.values()):
            raise AlarmCommandError(f"{scope!r} is no known device, room, rule or alarm")
        note = f"{reason} (until {_iso(until_ns)})"
        if scope in self._suppressions:
            self._batch.suppression_closed(scope, self._now, actor, "replaced")
        sup = Suppression(scope, actor, reason, self._now, until_ns)
        self._suppressions[scope] = sup
        self._batch.suppression_opened(sup)
        self._system_event(EventKind.SUPPRESSION_START, SUPPRESSION_RULE, scope,
                           AlarmState.SUPPRESSED, _N, actor, note)
        for rec in self._records.values():
            if rec.suppression is None and sup.covers(rec.key.rule, rec.key.subject,
                                                      rec.ev.room):
                prev = rec.state
                rec.set_overlay(suppression=scope, now_ns=self._now)
                self._changed(rec, prev, actor, f"suppressed ({scope}): {note}")
        self._plan_expiry()
        return self._flush()

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
        for rec in self._records.values():
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
        prev = rec.state
        rec.set_overlay(oos=None, now_ns=self._now)
        self._changed(rec, prev, actor, "returned to service")
        return self._flush()

    # reading ---------------------------------------------------------------------------------

    def get(self, key: KeyLike) -> AlarmView:
        return self._view(self._require(key))

    def active(self) -> list[AlarmView]:
        """Every alarm that is not normal, by severity (critical first), then activation time
        (oldest first), with first-out markers."""
        return [self._view(r) for r in self._ordered()]

    def known(self) -> list[AlarmKey]:
        return [AlarmKey(*k) for k in self._records]

    @property
    def flood(self) -> FloodStatus:
        f = self._flood
        return FloodStatus(active=f.active, since_ns=f.since_ns if f.active else None,
                           first_out=f.first_out if f.active else None, activations=len(f))

    def suppressions(self) -> list[Suppression]:
        return sorted(self._suppressions.values(), key=lambda s: (s.since_ns, s.scope))

    def first_outs(self) -> dict[str | None, AlarmKey]:
        """First-out alarm per room (rooms with annunciated alarms only)."""
        return dict(self._rooms.first)

    def demanded_outputs(self) -> dict[str, list[AlarmKey]]:
        """Output role → the alarms demanding it now (sounders only while audible; see
        `gateway.alarms.lifecycle`)."""
        out: dict[str, list[AlarmKey]] = {}
        for rec in self._ordered():
            for role in sorted(rec.demanded_roles()):
                out.setdefault(role, []).append(rec.key)
        return out

    def events_since(self, seq: int, limit: int = 1000) -> list[AlarmEvent]:
        """Journalled events with `seq` above the given one, oldest first (for the uplink)."""
        return self._journal.events_since(seq, limit)

    @property
    def last_seq(self) -> int:
        return self._seq

    def close(self) -> None:
        self._journal.close()

    # internals -------------------------------------------------------------------------------

    def _begin(self) -> None:
        self._now = self._clock.now_ns()
        self._mono = self._clock.monotonic()

    def _require(self, key: KeyLike) -> AlarmRecord:
        try:
            rule, subject = key
        except (TypeError, ValueError):
            raise AlarmCommandError(f"not an alarm key (rule, subject): {key!r}") from None
        rec = self._records.get((rule, subject))
        if rec is None:
            raise AlarmCommandError(f"unknown alarm {rule}@{subject}")
        return rec

    def _future(self, until_ns: int) -> None:
        if not isinstance(until_ns, int) or until_ns <= self._now:
            raise AlarmCommandError("the end time must be in the future")

    def _covering(self, rec: AlarmRecord) -> str | None:
        for scope, sup in self._suppressions.items():
            if sup.covers(rec.key.rule, rec.key.subject, rec.ev.room):
                return scope
        return None

    def _ordered(self) -> list[AlarmRecord]:
        recs = [self._records[k] for k in self._not_normal]
        recs.sort(key=lambda r: (r.ev.severity.level, r.activated_ns is None,
                                 r.activated_ns or 0, r.key))
        return recs

    def _view(self, rec: AlarmRecord) -> AlarmView:
        f = self._flood
        return AlarmView.of(rec, first_out=self._rooms.is_first(rec.key, rec.ev.room),
                            flood_first_out=f.active and f.first_out == rec.key)

    def _index(self, rec: AlarmRecord) -> None:
        key = rec.key
        if rec.state is _N:
            self._not_normal.discard(key)
        else:
            self._not_normal.add(key)
        if rec.chattering:
            self._chattering.add(key)
        else:
            self._chattering.discard(key)

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def _changed(self, rec: AlarmRecord, prev: AlarmState, actor: str,
                 note: str | None) -> None:
        """Book-keep a possible transition of `rec` from `prev`: event, indices, journal."""
        key = rec.key
        state = rec.state
        self._index(rec)
        self._batch.records[key] = rec if _persistable(rec) else None
        if state is prev:
            return
        first_out = False
        if state.annunciated and not prev.annunciated:
            first_out = self._rooms.enter(key, rec.ev.room)
            self._meta_dirty = True
        elif prev.annunciated and not state.annunciated:
            self._rooms.leave(key)
            self._meta_dirty = True
        ev = rec.ev
        self._emit(AlarmEvent(
            seq=self._next(), ts=self._now, kind=EventKind.ALARM, rule=key.rule,
            subject=key.subject, state=state, previous_state=prev, value=ev.value,
            severity=ev.severity, actor=actor, note=note, first_out=first_out, room=ev.room,
            title=ev.title, chattering=rec.chattering))
        if state is _AU:
            self._meta_dirty = True
            if self._flood.record(self._mono, self._now, key):
                self._flood_event(EventKind.FLOOD_START)

    def _flood_event(self, kind: EventKind) -> None:
        f = self._flood
        first = f.first_out
        if first is None:
            return
        rec = self._records.get(first)
        count, window = len(f), f.window
        note = (f"alarm flood: {count} activations within {window:g} s" if
                kind is EventKind.FLOOD_START else
                f"alarm flood over: {count} activations within {window:g} s")
        state = rec.state if rec is not None else _N
        self._emit(AlarmEvent(
            seq=self._next(), ts=self._now, kind=kind, rule=first.rule, subject=first.subject,
            state=state, previous_state=state, value=None if rec is None else rec.ev.value,
            severity=None if rec is None else rec.ev.severity, actor=SYSTEM_ACTOR, note=note,
            first_out=True, room=None if rec is None else rec.ev.room,
            title="" if rec is None else rec.ev.title))
        self._meta_dirty = True

    def _system_event(self, kind: EventKind, rule: str, subject: str, state: AlarmState,
                      prev: AlarmState, actor: str, note: str) -> None:
        self._emit(AlarmEvent(
            seq=self._next(), ts=self._now, kind=kind, rule=rule, subject=subject, state=state,
            previous_state=prev, value=None, severity=None, actor=actor, note=note,
            first_out=False, room=None, title=""))

    def _emit(self, event: AlarmEvent) -> None:
        self._events.append(event)
        self._batch.events.append(event)

    def _plan_expiry(self) -> None:
        ends = [s.until_ns for s in self._suppressions.values()]
        for key in self._shelved:
            shelf = self._records[key].shelf
            if shelf is not None:
                ends.append(shelf.until_ns)
        self._next_expiry = min(ends) if ends else None

    def _expire(self) -> None:
        now, mono = self._now, self._mono
        if self._chattering:
            for key in list(self._chattering):
                rec = self._records[key]
                prev = rec.state
                if rec.release_chatter(mono, now, self._policy):
                    self._changed(rec, prev, SYSTEM_ACTOR, "chattering ended")
        if self._next_expiry is not None and now >= self._next_expiry:
            for scope, sup in list(self._suppressions.items()):
                if sup.until_ns <= now:
                    self._end_suppression(scope, SYSTEM_ACTOR, "suppression expired")
            for key in sorted(self._shelved):
                rec = self._records[key]
                if rec.shelf is not None and rec.shelf.until_ns <= now:
                    self._end_shelf(rec, SYSTEM_ACTOR, "shelve expired")
            self._plan_expiry()
        if self._flood.expire(mono):
            self._flood_event(EventKind.FLOOD_END)
            self._flood.finish()
        if mono - self._last_prune >= self._prune_interval:
            self._last_prune = mono
            pruned = self._journal.prune(now)
            if pruned:
                log.info("event=alarm_journal_pruned events=%d", pruned)

    def _flush(self) -> list[AlarmEvent]:
        journal = self._journal
        if journal.recovery_note is not None:
            note, journal.recovery_note = journal.recovery_note, None
            self._seq = max(self._seq, journal.last_seq)
            self._system_event(EventKind.JOURNAL, JOURNAL_RULE, journal.path, _N, _N,
                               SYSTEM_ACTOR, note)
        batch, self._batch = self._batch, JournalBatch()
        if self._meta_dirty:
            self._meta_dirty = False
            batch.meta["flood"] = json.dumps(self._flood.dump())
            batch.meta["first_out"] = json.dumps(self._rooms.dump())
        if journal.needs_snapshot:
            batch.snapshot = True
            batch.meta["flood"] = json.dumps(self._flood.dump())
            batch.meta["first_out"] = json.dumps(self._rooms.dump())
            snapshot = [r for r in self._records.values() if _persistable(r)]
            shelves = [(r.key, r.shelf) for r in snapshot if r.shelf is not None]
            journal.commit(batch, snapshot, shelves, list(self._suppressions.values()))
        elif batch:
            journal.commit(batch)
        events, self._events = self._events, []
        return events


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


def _why_not_ack(rec: AlarmRecord) -> str:
    state = rec.state
    if state.overlay:
        return f"{rec.key} is {state.value.replace('_', ' ')}; nothing to acknowledge"
    if state is _N:
        return f"{rec.key} is normal; nothing to acknowledge"
    return f"{rec.key} is already acknowledged (by {rec.acked_by})"
