"""The alarm manager: runs the ISA-18.2 lifecycle (`gateway.alarms.lifecycle`) of every alarm,
takes operator commands (`gateway.alarms.commands`), detects chattering and floods, tracks
first-outs and journals every transition (`gateway.alarms.journal`) in one transaction per call
(the book-keeping: `gateway.alarms.ledger`).

Pure apart from the journal: time comes from the injected clock (`now_ns()` for timestamps and
expiries given as wall-clock ns, `monotonic()` for chattering and flood windows).

`observe()` takes every evaluation of a round; when nothing changed it compares each one's
`active` (and an active one's severity and roles: gateway.alarms.regrade) with the alarm's and
keeps it for its value — no events, no journal writes. A binding never active is kept as its
latest evaluation alone, in a few columns, not as a record (gateway.alarms.ledger, .known).

Every public call returns the events it caused (also in the journal, with strictly increasing
`seq`; `events_since(seq)` serves the uplink). Commands that cannot be carried out raise
`AlarmCommandError` with a message for the panel and change nothing.

A live drill's alarms (gateway.drills.live) are alarms of their own (subject `drill:…`): they
run the same lifecycle and take the same commands, but never enter the room's first-out or the
flood count, `end_drill` returns them all to normal at the drill's end, and none outlives a
restart.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable

from gateway.alarms.commands import AlarmCommands
from gateway.alarms.events import (
    DRILL_RULE,
    OUTPUT_EVENT_KIND,
    OUTPUT_RULE,
    SYSTEM_ACTOR,
    AlarmEvent,
    AlarmView,
    EventKind,
    FloodStatus,
    is_drill,
)
from gateway.alarms.flood import FloodDetector
from gateway.alarms.journal import Journal
from gateway.alarms.ledger import KEPT, KeyLike
from gateway.alarms.lifecycle import (
    AlarmKey,
    AlarmRecord,
    AlarmState,
    ChatterPolicy,
    Suppression,
)
from gateway.alarms.regrade import escalation, regraded
from gateway.alarms.types import Evaluation
from gateway.clock import Clock
from gateway.field.sample import Value

log = logging.getLogger(__name__)

__all__ = ["AlarmManager", "KeyLike"]

_N = AlarmState.NORMAL


class AlarmManager(AlarmCommands):
    def __init__(self, journal: Journal, clock: Clock, *, chatter_count: int = 3,
                 chatter_window: float = 60.0, chatter_hold: float = 60.0,
                 flood_count: int = 10, flood_window: float = 600.0,
                 flood_clear_count: int | None = None, prune_interval: float = 3600.0,
                 clock_synced: Callable[[], bool] | None = None) -> None:
        if chatter_count < 2 or chatter_window <= 0 or chatter_hold < 0:
            raise ValueError("chatter_count must be >= 2, chatter_window > 0, chatter_hold >= 0")
        super().__init__(journal, clock,
                         ChatterPolicy(chatter_count, chatter_window, chatter_hold),
                         FloodDetector(flood_count, flood_window, flood_clear_count),
                         clock_synced)  # (None: gateway.clocksync.SyncedCache of `clock`)
        self._prune_interval = prune_interval
        self._last_prune = self._mono
        self.apply_failures = 0
        """Evaluations whose alarm could not be updated (a bug): logged, the rest applied."""
        self._output_holds: set[str] = set()
        """Outputs held on until an operator reset (`output_event`; journal meta key)."""
        self._own_meta_dirty = False
        self._drill_open: dict[str, str | None] | None = None
        """The live drill whose start is journalled and whose end is not yet (meta key
        `drill_open`): a restart journals its end (`_restore`)."""
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
                rec.clear_since, rec.clear_since_ns = self._mono, self._now
            self._known.add(rec.key, rec)
            if rec.shelf is not None:
                self._shelved.add(rec.key)
            if rec.state.annunciated and not is_drill(rec.key.subject):
                self._rooms.enter(rec.key, rec.ev.room)
            self._index(rec)
        try:  # (any shape no version wrote — `null`, a list — is dropped, never a failed start:
            # an audit's `flood: null` kept the gateway from starting mid-alarm, AttributeError)
            self._flood.load(json.loads(contents.meta.get("flood", "{}")), self._mono,
                             self._now)
        except Exception as exc:
            log.error("event=alarm_meta_unreadable key=flood error=%r", exc)
            self._flood.load({}, self._mono, self._now)
        try:
            self._rooms.load(json.loads(contents.meta.get("first_out", "[]")))
        except Exception as exc:
            log.error("event=alarm_meta_unreadable key=first_out error=%r", exc)
            self._rooms.load([])
        try:
            holds = json.loads(contents.meta.get("output_holds", "[]"))
            self._output_holds = {h for h in holds if isinstance(h, str)}
        except Exception as exc:
            log.error("event=alarm_meta_unreadable key=output_holds error=%r", exc)
        self._kept = {key: value for key, value in contents.meta.items() if key in KEPT}
        drill_open = _drill_open(contents.meta.get("drill_open", ""))
        self._plan_expiry()
        if contents.records or contents.suppressions:
            log.info("event=alarms_restored alarms=%d suppressions=%d last_seq=%d",
                     len(contents.records), len(contents.suppressions), self._seq)
        # a drill does not outlive its gateway: its alarms end with the restart
        self._end_drill_alarms(SYSTEM_ACTOR, "drill ended: the gateway restarted")
        if drill_open is not None:  # and the drill's own end, which it had no time to write
            self._system_event(EventKind.DRILL, DRILL_RULE, str(drill_open["drill"]), _N, _N,
                               SYSTEM_ACTOR, "ended: the gateway restarted",
                               room=drill_open.get("room"), drill=True)
            self._own_meta_dirty = True
        self._flush()  # journals a recovery note, if any

    def held_conditions(self) -> dict[tuple[str, str], Value]:
        """(rule, subject) → last value of every alarm whose condition is held active (also
        shelved or suppressed ones): restored from the journal at a start, or carried from the
        config before. The rule engine holds their bindings active until good data says
        otherwise (`RuleEngine.hold`), so a restart never returns them nor re-runs an
        on-delay (DESIGN principle 7)."""
        return {key: rec.ev.value for key, rec in self._known.records.items() if rec.condition}

    # observing -------------------------------------------------------------------------------

    def observe(self, evaluations: Iterable[Evaluation], *,
                at: tuple[int, float] | None = None) -> list[AlarmEvent]:
        """Take this cycle's evaluations; returns the events (transitions) they caused.
        `at`: (wall-clock ns, monotonic s) to use instead of the clock's now — evaluations held
        while a config was on trial are raised at the time they were seen (issue 9)."""
        self._begin()
        if at is not None:  # issue 9
            self._now, self._mono = at
        records, quiet = self._known.records, self._known.update_quiet
        changed: list[Evaluation] = []
        for ev in evaluations:
            rec = records.get((ev.rule, ev.subject))
            if rec is None:  # new, or quiet: never active (gateway.alarms.ledger) and stays so
                if ev.active or not quiet(ev):
                    changed.append(ev)
            elif rec.condition == ev.active:
                if ev.active and regraded(rec.ev, ev):
                    changed.append(ev)
                else:
                    rec.ev = ev
            else:
                changed.append(ev)
        if changed:
            if len(changed) > 1:
                changed.sort(key=lambda e: e.ts)  # first-out by the evaluations' time
            for ev in changed:
                try:  # one evaluation's bug must not keep the others from their alarms
                    self._apply(ev)
                except Exception:
                    self.apply_failures += 1
                    log.exception("event=alarm_apply_failed rule=%s subject=%s active=%s",
                                  ev.rule, ev.subject, ev.active)
        self._expire()
        return self._flush()

    def _apply(self, ev: Evaluation) -> None:
        key = (ev.rule, ev.subject)
        rec = self._known.records.get(key)
        if rec is None:
            if not ev.active and self._stays_quiet(ev) and self._known.keep_quiet(ev):
                return  # known, normal, nothing to journal (suppressed or not)
            rec = AlarmRecord(key=AlarmKey(*key), ev=ev)
            self._known.add(key, rec)  # a quiet one's place: the order of first evaluation
        else:
            old, rec.ev = rec.ev, ev
            if ev.active and rec.condition and regraded(old, ev):
                self._regrade(rec, old)
                return
        prev, base, note = rec.state, rec.base, None
        if ev.active and self._suppressions and not rec.condition and rec.suppression is None:
            note = self._suppress_rising(rec)  # F5: a quiet one turns active under a suppression
        began = rec.set_condition(ev.active, self._mono, self._now, self._policy)
        # one event: suppressed, chattering, or latched under its shelf or suppression
        self._changed(rec, prev, SYSTEM_ACTOR, "chattering" if began else note, base=base)

    def _regrade(self, rec: AlarmRecord, old: Evaluation) -> None:
        """An active alarm regraded (gateway.alarms.regrade): journalled with its severity; an
        escalation annunciated afresh if acknowledged (the siren sounds), its shelf ended."""
        raised, note = escalation(old, rec.ev)
        if raised and rec.shelf is not None and rec.oos is None and rec.suppression is None:
            self._end_shelf(rec, SYSTEM_ACTOR, f"unshelved, {note}")
            self._plan_expiry()
            return
        prev = rec.state
        if raised:
            rec.reannunciate(self._now)
        self._changed(rec, prev, SYSTEM_ACTOR, note, force=True)

    def _stays_quiet(self, ev: Evaluation) -> bool:
        """An inactive evaluation of an unrecorded binding keeps it quiet (no record), under a
        suppression too; a test's reference manager answers False to keep a record of every
        binding, as the manager did before."""
        return True

    def tick(self, *, at: tuple[int, float] | None = None) -> list[AlarmEvent]:
        """Expire shelves and suppressions, release chattering alarms, end floods, prune the
        journal. `observe()` does the same; call `tick()` when there is nothing to observe.
        `at` as in `observe` (a chatter release replayed after a config trial)."""
        self._begin()
        if at is not None:
            self._now, self._mono = at
        self._expire()
        return self._flush()

    def next_chatter_release(self) -> tuple[int, float] | None:
        """(wall-clock ns, monotonic s) of the earliest chatter release due (a chattering
        alarm whose condition is clear), None if none."""
        policy = self._policy
        found = [due for key in self._chattering
                 if (due := self._record(key).chatter_release_due(policy)) is not None]
        return min(found, key=lambda due: due[1]) if found else None

    def system_event(self, kind: EventKind, rule: str, subject: str,
                     note: str) -> list[AlarmEvent]:
        """Journal one system event that changes no alarm (issue 9: `$config`, a config rolled
        back after its trial)."""
        self._begin()
        self._system_event(kind, rule, subject, _N, _N, SYSTEM_ACTOR, note)
        return self._flush()

    # live drills (gateway.drills.live) --------------------------------------------------------

    def drill_event(self, drill_id: str, actor: str, note: str,
                    room: str | None, *, running: bool) -> list[AlarmEvent]:
        """Journal a live drill's start (`running`) or end: kind `drill`, rule `$drill`,
        subject the drill's id, tagged drill; a running drill is kept in the journal's meta
        with its start, so that a gateway killed during it journals its end at the restart."""
        self._begin()
        self._drill_open = {"drill": drill_id, "room": room} if running else None
        self._own_meta_dirty = True
        self._system_event(EventKind.DRILL, DRILL_RULE, drill_id, _N, _N, actor, note,
                           room=room, drill=True)
        return self._flush()

    # outputs held until an operator reset (gateway.actions.planner) -----------------------

    def output_holds(self) -> frozenset[str]:
        """The outputs the journal holds on until an operator reset: restored at a start."""
        return frozenset(self._output_holds)

    def output_event(self, output_id: str, *, held: bool, actor: str, note: str,
                     room: str | None) -> list[AlarmEvent]:
        """Journal that an output that does not restore on clear is now held on until an
        operator reset (`held`), or no longer: rule `$output`, subject the output's id,
        together with the set of held outputs (one transaction)."""
        self._begin()
        if held:
            self._output_holds.add(output_id)
        else:
            self._output_holds.discard(output_id)
        self._own_meta_dirty = True
        self._system_event(OUTPUT_EVENT_KIND, OUTPUT_RULE, output_id, _N, _N, actor, note,
                           room=room)
        return self._flush()

    def _flush(self) -> list[AlarmEvent]:
        if self._own_meta_dirty or self._journal.needs_snapshot:
            self._own_meta_dirty = False
            self._batch.meta["output_holds"] = json.dumps(sorted(self._output_holds))
            self._batch.meta["drill_open"] = json.dumps(self._drill_open) \
                if self._drill_open is not None else ""
        return super()._flush()

    def end_drill(self, actor: str, note: str) -> list[AlarmEvent]:
        """The drill is over: every drill alarm back to normal (one event each, `note` saying
        why) and forgotten. Real alarms are not touched."""
        self._begin()
        self._end_drill_alarms(actor, note)
        return self._flush()

    def _end_drill_alarms(self, actor: str, note: str) -> None:
        for key in [k for k in self._known if is_drill(k[1])]:
            # straight to normal, whatever it was: a drill alarm has no hazard behind it
            self._forget(key, actor, note, shelf_note="drill ended")
        self._plan_expiry()

    # alarms the running config no longer has (gateway.safety `retire_unbound`) ---------------

    def retire(self, keys: Iterable[KeyLike], note: str) -> list[AlarmEvent]:
        """Return these alarms to normal and forget them, one event each (actor system,
        `note` saying why), their shelf, suppression or out-of-service overlay dropped: alarms
        whose rule the running config disabled or removed, or whose subject it removed or
        renamed. No rule evaluates them any more, so nothing else could ever return them (and
        Reset is refused while their condition is held). Unknown keys are skipped."""
        self._begin()
        for rule, subject in keys:
            if (rule, subject) in self._known:
                self._forget((rule, subject), SYSTEM_ACTOR, note)
        self._plan_expiry()
        return self._flush()

    # operator commands: gateway.alarms.commands; reading ------------------------------------

    def get(self, key: KeyLike) -> AlarmView:
        return self._view(self._require(key))

    def active(self) -> list[AlarmView]:
        """Every alarm that is not normal, by severity (critical first), then activation time
        (oldest first), with first-out markers."""
        return [self._view(r) for r in self._ordered()]

    def known(self) -> list[AlarmKey]:
        return [AlarmKey(*k) for k in self._known]

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

    # expiries --------------------------------------------------------------------------------

    def _expire(self) -> None:
        now, mono = self._now, self._mono
        if self._chattering:
            for key in list(self._chattering):
                rec = self._record(key)
                prev = rec.state
                if rec.release_chatter(mono, now, self._policy):
                    self._changed(rec, prev, SYSTEM_ACTOR, "chattering ended")
        self._expire_overlays()
        if self._flood.expire(mono):
            self._flood_event(EventKind.FLOOD_END)
            self._flood.finish()
        if mono - self._last_prune >= self._prune_interval:
            self._last_prune = mono
            pruned = self._journal.prune(now)
            if pruned:
                log.info("event=alarm_journal_pruned events=%d", pruned)


def _drill_open(text: str) -> dict[str, str | None] | None:
    """The journal's meta `drill_open`: {"drill": id, "room": room or null}, or None."""
    if not text:
        return None
    try:
        found = json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:
        log.error("event=alarm_meta_unreadable key=drill_open error=%r", exc)
        return None
    if not isinstance(found, dict) or not isinstance(found.get("drill"), str) \
            or not isinstance(found.get("room"), str | None):
        log.error("event=alarm_meta_unreadable key=drill_open value=%r", text[:200])
        return None
    return found

