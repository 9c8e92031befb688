"""The alarm manager's book-keeping (the base of `gateway.alarms.manager.AlarmManager`): the
records of every alarm, the indices over them, and how one transition becomes an event, index
updates and journal rows — flushed in one journal transaction per manager call.

A binding that has only ever been evaluated inactive (most of them: 6,478 at a 2,000-point
site, nearly all quiet for years) is *quiet*: known by its latest evaluation alone, in place of
a record, kept in a few columns (`_known`, gateway.alarms.known): it is normal, with no
history, nothing to journal. It becomes an `AlarmRecord` — in its place, so the order alarms
are met in stays the order they were first evaluated — when it first turns active (under a
suppression that covers it: suppressed then, with one event) or when a command or `get` names it
(`_record`). A suppression leaves quiet bindings quiet (F5: it made each a listed 'suppressed'
alarm with an event of its own). About 50 bytes a binding, its evaluation included, where a
record, its key and its evaluation take about 450 (tests/alarms/test_known_alarms.py).

Pure apart from the journal: time comes from the injected clock, read once per call
(`_begin`); whether that clock is synchronised from the injected `clock_synced` (each event
carries it: `AlarmEvent.clock_synced`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from gateway.alarms.events import (
    JOURNAL_RULE,
    LATCHED_WHILE,
    SYSTEM_ACTOR,
    AlarmCommandError,
    AlarmEvent,
    AlarmView,
    EventKind,
    is_drill,
)
from gateway.alarms.flood import FloodDetector, RoomFirstOut
from gateway.alarms.journal import Journal
from gateway.alarms.journal_batch import JournalBatch
from gateway.alarms.known import KnownAlarms
from gateway.alarms.lifecycle import (
    AlarmKey,
    AlarmRecord,
    AlarmState,
    ChatterPolicy,
    Suppression,
)
from gateway.clock import Clock
from gateway.clocksync import SyncedCache

KeyLike = AlarmKey | tuple[str, str]

_N = AlarmState.NORMAL
_AU = AlarmState.ACTIVE_UNACKNOWLEDGED

COIL_RELEASES = "coil_releases"
"""Meta key of the coils config applies released and the gateway has not yet confirmed off
(gateway.actions.release, its format gateway.actions.orphans): kept here, as the outputs held
until reset are, so that a restart or a power cut does not forget one."""
KEPT = frozenset({COIL_RELEASES})
"""Meta keys other parts of the gateway keep in the journal (`keep`)."""


def iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))


def persistable(rec: AlarmRecord) -> bool:
    """Not quiet: listed (not normal), or with its condition held active. Only such an alarm
    is journalled as a record, and only such an alarm takes a new suppression's overlay."""
    return rec.state is not _N or rec.condition or rec.chattering


class AlarmLedger:
    """The state every manager call works on, and the internals that keep it consistent."""

    def __init__(self, journal: Journal, clock: Clock, policy: ChatterPolicy,
                 flood: FloodDetector, clock_synced: Callable[[], bool] | None = None) -> None:
        """`clock_synced`: whether `clock` is synchronised now, asked at each event (None: a
        `gateway.clocksync.SyncedCache` of `clock`: a system call at most once a minute)."""
        self._journal = journal
        self._clock = clock
        self._clock_synced = clock_synced or SyncedCache(clock)
        self._policy = policy
        self._flood = flood
        self._rooms = RoomFirstOut()
        self._known = KnownAlarms()
        self._not_normal: set[AlarmKey] = set()
        self._chattering: set[AlarmKey] = set()
        self._shelved: set[AlarmKey] = set()
        self._suppressions: dict[str, Suppression] = {}
        self._next_expiry: int | None = None
        self._deadlines: dict[tuple[object, ...], float] = {}
        """Each shelf's and suppression's end on the monotonic clock (`_plan_expiry`), so a
        wall-clock step back cannot stretch it (the clock audit: a shelf of 1 minute kept a
        hydrogen alarm silent for the year NTP stepped back)."""
        self._next_mono_expiry: float | None = None
        self._batch = JournalBatch()
        self._events: list[AlarmEvent] = []
        self._meta_dirty = False
        self._kept: dict[str, str] = {}
        """`keep`'s values (restored from the journal's meta at a start: `_restore`)."""
        self._now = clock.now_ns()
        self._mono = clock.monotonic()
        self._seq = 0

    def _begin(self) -> None:
        self._now = self._clock.now_ns()
        self._mono = self._clock.monotonic()

    def _require(self, key: KeyLike) -> AlarmRecord:
        try:
            rule, subject = key
        except (TypeError, ValueError):
            raise AlarmCommandError(f"not an alarm key (rule, subject): {key!r}") from None
        if (rule, subject) not in self._known:
            raise AlarmCommandError(f"unknown alarm {rule}@{subject}")
        return self._record((rule, subject))

    def _record(self, key: tuple[str, str]) -> AlarmRecord:
        """The record of a known alarm; a quiet one's is made now, in its place."""
        known = self._known
        rec = known.records.get(key)
        if rec is None:
            rec = AlarmRecord(key=AlarmKey(*key), ev=known.quiet_evaluation(key))
            known.add(key, rec)
        return rec

    def _future(self, until_ns: int) -> None:
        if not isinstance(until_ns, int) or until_ns <= self._now:
            raise AlarmCommandError("the end time must be in the future")

    def _covering(self, rec: AlarmRecord) -> str | None:
        return self._covering_binding(rec.key.rule, rec.key.subject, rec.ev.room)

    def _covering_binding(self, rule: str, subject: str, room: str | None) -> str | None:
        for scope, sup in self._suppressions.items():
            if sup.covers(rule, subject, room):
                return scope
        return None

    def _ordered(self) -> list[AlarmRecord]:
        recs = [self._record(k) for k in self._not_normal]
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
                 note: str | None, *, force: bool = False,
                 base: AlarmState | None = None) -> None:
        """Book-keep a possible transition of `rec` from `prev`: event, indices, journal (an
        event also without a change of state when `force`: a new severity). `base`: the
        record's base before the call — one that moved while the alarm stayed shelved or
        suppressed is a hidden latch (gateway.alarms.lifecycle), an event of its own, its note
        ending `latched while shelved`, so the journal shows the hazard that happened while
        hidden. A live drill's alarm takes no part in the room's first-out nor in flood
        detection: it must never change how a real alarm is annunciated."""
        key = rec.key
        state = rec.state
        if base is not None and rec.overlaid and rec.base is not base:
            latched = f"{LATCHED_WHILE} {state.value}"
            note, force = (f"{note}; {latched}" if note else latched), True
        self._index(rec)
        self._batch.records[key] = rec if persistable(rec) else None
        if state is prev and not force:
            return
        drill = is_drill(key.subject)
        first_out = False
        if not drill and state.annunciated and not prev.annunciated:
            first_out = self._rooms.enter(key, rec.ev.room)
            self._meta_dirty = True
        elif not drill and prev.annunciated and not state.annunciated:
            self._rooms.leave(key)
            self._meta_dirty = True
        ev = rec.ev
        self._emit(AlarmEvent(
            seq=self._next(), ts=self._now, kind=EventKind.ALARM, rule=key.rule,
            subject=key.subject, state=state, previous_state=prev, value=ev.value,
            severity=ev.severity, actor=actor, note=note, first_out=first_out, room=ev.room,
            title=ev.title, chattering=rec.chattering, drill=drill,
            clock_synced=self._clock_synced()))
        if state is _AU and prev is not _AU and not drill:
            self._meta_dirty = True
            if self._flood.record(self._mono, self._now, key):
                self._flood_event(EventKind.FLOOD_START)

    def _forget(self, key: tuple[str, str], actor: str, note: str,
                shelf_note: str | None = None) -> None:
        """Return a known alarm straight to normal, whatever it was, and forget it: for an
        alarm with nothing behind it any more (a live drill's at the drill's end, one the
        running config no longer has). Its overlays go (a shelf closed in the journal with
        `shelf_note`, else `note`), its condition and chattering are cleared, and one event
        (`actor`, `note`) says so if it was not normal; a quiet one just goes. The caller
        re-plans the expiries (`_plan_expiry`)."""
        rec = self._known.pop(key)
        if rec is None:  # quiet: nothing to journal
            return
        prev = rec.state
        if rec.shelf is not None:
            self._batch.shelf_closed(rec.key, self._now, actor, shelf_note or note)
            self._shelved.discard(rec.key)
        rec.shelf = rec.oos = rec.suppression = None
        rec.condition = rec.chattering = False
        rec.base, rec.activated_ns, rec.acked_by, rec.acked_ns = _N, None, None, None
        self._changed(rec, prev, actor, note)

    def _flood_event(self, kind: EventKind) -> None:
        f = self._flood
        first = f.first_out
        if first is None:
            return
        rec = self._record(first) if first in self._known else None
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
            title="" if rec is None else rec.ev.title, clock_synced=self._clock_synced()))
        self._meta_dirty = True

    def _system_event(self, kind: EventKind, rule: str, subject: str, state: AlarmState,
                      prev: AlarmState, actor: str, note: str, *, room: str | None = None,
                      drill: bool = False) -> None:
        self._emit(AlarmEvent(
            seq=self._next(), ts=self._now, kind=kind, rule=rule, subject=subject, state=state,
            previous_state=prev, value=None, severity=None, actor=actor, note=note,
            first_out=False, room=room, title="", drill=drill,
            clock_synced=self._clock_synced()))

    def _emit(self, event: AlarmEvent) -> None:
        self._events.append(event)
        self._batch.events.append(event)

    def _plan_expiry(self) -> None:
        """When the next shelf or suppression ends: by the wall clock (its `until`) or by the
        monotonic clock, whichever comes first. A shelf or suppression first seen here (made
        now, or restored from the journal at a start) ends on the monotonic clock after what
        is left of it, but never after its whole length counted from now: a start after the
        clock stepped back grants no more than the operator asked for."""
        ends: list[int] = []
        overlays: list[tuple[tuple[object, ...], int, int]] = []
        for scope, sup in self._suppressions.items():
            overlays.append((("suppression", scope, sup), sup.since_ns, sup.until_ns))
        for key in self._shelved:
            shelf = self._record(key).shelf
            if shelf is not None:
                overlays.append((("shelf", key, shelf), shelf.since_ns, shelf.until_ns))
        deadlines: dict[tuple[object, ...], float] = {}
        for ident, since_ns, until_ns in overlays:
            ends.append(until_ns)
            left = min(until_ns - self._now, until_ns - since_ns)
            deadlines[ident] = self._deadlines.get(ident, self._mono + max(0, left) * 1e-9)
        self._deadlines = deadlines
        self._next_expiry = min(ends) if ends else None
        self._next_mono_expiry = min(deadlines.values()) if deadlines else None

    def _overlay_due(self, ident: tuple[object, ...], until_ns: int) -> bool:
        """A shelf's or suppression's time is up, by either clock."""
        return until_ns <= self._now or self._deadlines.get(ident, float("inf")) <= self._mono

    def next_overlay_expiry(self) -> float | None:
        """Monotonic time at which the next shelf or suppression ends (None: none)."""
        times = [t for t in (self._next_mono_expiry,) if t is not None]
        if self._next_expiry is not None:
            now_ns, mono = self._clock.now_ns(), self._clock.monotonic()
            times.append(mono + (self._next_expiry - now_ns) * 1e-9)
        return min(times) if times else None

    def kept(self, key: str) -> str | None:
        """What `keep` last stored under `key` (also before a restart); None: nothing."""
        return self._kept.get(key)

    def keep(self, key: str, value: str) -> list[AlarmEvent]:
        """Store `value` under the meta key `key` (one of `KEPT`) now — handed to the journal
        at once, in a commit of its own or, with the journal's writer running, of the writer's
        next (synchronous=FULL: it survives a power cut) — for another part of the gateway to
        find again after a restart. Never raises for the disk: a failed commit is retried, as
        any. Returns the events the flush journalled (a recovery note)."""
        if key not in KEPT:
            raise ValueError(f"not a kept meta key: {key!r}")
        self._begin()
        self._kept[key] = self._batch.meta[key] = value
        return self._flush()

    def _flush(self) -> list[AlarmEvent]:
        journal = self._journal
        note = journal.take_recovery_note()
        if note is not None:
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
            batch.meta.update(self._kept)
            batch.meta["flood"] = json.dumps(self._flood.dump())
            batch.meta["first_out"] = json.dumps(self._rooms.dump())
            snapshot = [r for r in self._known.records.values() if persistable(r)]
            shelves = [(r.key, r.shelf) for r in snapshot if r.shelf is not None]
            journal.commit(batch, snapshot, shelves, list(self._suppressions.values()))
        elif batch or journal.has_pending:  # (no writer thread: retried at every flush)
            journal.commit(batch)
        events, self._events = self._events, []
        return events
