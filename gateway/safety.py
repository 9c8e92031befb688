"""The safety core: samples → rules → alarms → wanted outputs. No I/O but the alarm journal.

The daemon runs it on the event loop (and drives real coils with what it wants); drills run it
on a manual clock. Nothing here waits on the network: an alarm and its local actions depend
only on the samples of this gateway's own buses.

Continuity (DESIGN principle 7): a core built at a start holds the rule bindings of every
alarm the journal restored with its condition active, and a core that replaces another (a
config apply or rollback, `take_over`) carries the rule engine's evaluation state, the output
planner's holds and then holds what the journal still has active — so neither a restart nor an
apply returns an alarm, re-runs its on-delay or changes an output (gateway.rules.carry).
An output held on until an operator reset (`restore_on_clear: false`) is journalled when a
real alarm makes it so and when it is released (`AlarmManager.output_event`, rule `$output`);
a core restores the journal's holds, so neither a restart nor a power cut releases one. An
interlock that holds such an output off suspends the hold, journalled as suspended and, when
its blocker goes off, resumed; only an operator's reset ends it.

What the config no longer has is not carried: an alarm held active whose rule this config
disables or removes, or whose subject (point, device, room, output) it removes or renames, has
no binding to judge it again, so it would stay active — its outputs on, its Reset refused —
for ever. `retire_unbound` returns each such alarm to normal (one event, actor system, note
`returned: no longer in the config (vN)`; its overlays dropped, its outputs released): at a
start on such a config at once, after a config apply only once the config is no longer on
trial (committed; or, after a rollback, for what only the candidate had), so a rolled-back
candidate costs no alarm — the config that runs again binds it, holds it and judges it as
before. A live drill's alarms and the `$…` system rules are not rule alarms;
`rules.evaluation_failed` has its own (gateway.rules.faults); an output's own trouble alarms
(`actions.*`) go when the output, or its feedback, is no longer in the config — but not the
`actions.output_failure` of a dropped output whose coil release the journal keeps pending
(gateway.actions.failures: it returns when the release is confirmed or dropped).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.actions.failures import OUTPUT_FAILURE_RULE as OUTPUT_FAILURE_RULE
from gateway.actions.failures import OutputFailures
from gateway.actions.field import InterlockField
from gateway.actions.orphans import Orphan, output_ids
from gateway.actions.planner import OutputPlanner, demand_of
from gateway.actions.supervision import (
    NO_FEEDBACK_RULE,
    UNEXPECTED_FEEDBACK_RULE,
    OutputSupervisor,
)
from gateway.alarms.events import (
    OUTPUT_RULE,
    SYSTEM_ACTOR,
    AlarmEvent,
    is_drill,
)
from gateway.alarms.journal import Journal
from gateway.alarms.ledger import COIL_RELEASES
from gateway.alarms.lifecycle import AlarmKey
from gateway.alarms.manager import AlarmManager
from gateway.alarms.types import Evaluation
from gateway.clock import Clock
from gateway.config.loaded import LoadedConfig
from gateway.field.sample import Sample
from gateway.rules.config import ParameterOverrides, default_rules_dir, load_rule_packs
from gateway.rules.engine import RuleEngine
from gateway.rules.faults import EVALUATION_FAILED_RULE
from gateway.rules.model import RulePack

if TYPE_CHECKING:
    from gateway.drills.live import LiveDrill  # issue 12
    from gateway.flashing.trial import TrialHold  # issue 9

log = logging.getLogger("roomwarden.safety")

OUTPUT_RULES = frozenset({OUTPUT_FAILURE_RULE, NO_FEEDBACK_RULE, UNEXPECTED_FEEDBACK_RULE})
"""The safety core's own alarms on an output (subject: the output's id), raised outside the
rule packs (`output_failures`: gateway.actions.failures; gateway.actions.supervision)."""
SUSPENDED = "suspended: "
"""How a hold event's note says an interlock holds the output off (`_journal_holds`)."""
HOUSEKEEPING_TICK = 1.0
"""While an alarm chatters or a flood is on, rounds run at least this often (the alarm
manager's chatter release and flood end have no deadline it reports)."""


def acquisition(loaded: LoadedConfig, device_id: str) -> tuple[object, ...] | None:
    """How a config reads a device (its entry, its bus, its profile); None if it has none."""
    device = next((d for d in loaded.config.devices if d.id == device_id), None)
    if device is None or not device.enabled:
        return None
    bus = next((b for b in loaded.config.buses if b.id == device.bus), None)
    return device, bus, loaded.profiles.get(device.profile)


class SafetyCore:
    def __init__(self, loaded: LoadedConfig, clock: Clock, journal_path: Path | str,
                 *, rules_dir: Path | None = None,
                 packs: dict[str, RulePack] | None = None, open_alarms: bool = True,
                 config_version: int | None = None) -> None:
        """`open_alarms` False: the alarm journal is opened by `take_over` (a config apply
        builds the core first, and opens the journal once the running core has stopped
        writing to it). `config_version`: the config's version, for the journal's notes."""
        cfg = loaded.config
        self.loaded = loaded
        self.clock = clock
        if packs is None:
            packs = loaded.packs  # those it was checked against (load_checked_config)
        if packs is None:
            ids = list(cfg.rules.packs) if cfg.rules.packs is not None else None
            packs = load_rule_packs(rules_dir or default_rules_dir(), ids)
        self.engine = RuleEngine(packs, loaded, clock,
                                 ParameterOverrides.for_site(loaded, packs))  # issue 11
        self.journal_path = journal_path
        self.journal: Journal
        self.alarms: AlarmManager
        if open_alarms:
            self._open_alarms()
            self.engine.hold(self.alarms.held_conditions())  # a restart: restored alarms hold
        rooms = {d.id: d.room for d in cfg.devices}
        self.planner = OutputPlanner(cfg.outputs, cfg.interlocks, rooms, clock)
        self._output_events: list[AlarmEvent] = []
        """Events journalled outside a round — holds by a plan (`plan_outputs`), a drill ended
        by a config apply (`take_over`) —, handed on by the next round or
        `take_output_events`."""
        self._suspended: set[str] = set()
        """Held outputs whose suspension by an interlock is journalled (`_journal_holds`)."""
        if open_alarms:  # a restart: the holds until an operator reset come back on at once
            self.planner.restore(self.alarms.output_holds())
            self._suspended = self._journalled_suspensions(self.planner.held())
        self.outputs = {o.id: o for o in cfg.outputs}
        self.failures = OutputFailures(self.outputs, self.planner.rooms)
        self.wanted: dict[str, bool] = {o: False for o in self.outputs}
        self._undelivered: list[Evaluation] = []
        """The rules' changed evaluations of a round that raised before the alarm manager took
        them (the engine reports a change once): handed on at the next round."""
        # --- issue 11: supervised outputs (feedback) -----------------------------------------
        self.supervisor = OutputSupervisor(
            cfg.outputs, self.planner.rooms, {r.id: r.type for r in cfg.rooms}, clock,
            OutputSupervisor.escalations_of(packs.values()))
        # --- end issue 11 --------------------------------------------------------------------
        self.field = InterlockField(self.planner, self.supervisor, clock)
        """The blockers the field shows on (the driver's `source` set by the daemon)."""
        self.drill: LiveDrill | None = None
        """Issue 12: a live drill's overlay on one room's rule inputs (gateway.drills.live)."""
        self.config_version = config_version
        self.journal_passed_on = False  # (`take_over`)
        self._retire_due = False
        """A config apply carried alarms this config may not have: `retire_unbound` is due
        once the config is no longer on trial."""
        if open_alarms:  # a start: what this config does not have returns to normal now
            # journalled only (as a drill's end at a start): the daemon sends the journal's
            # events the outbox has not stored (gateway.handoff `resend_unsent`)
            self._retire_due = True
            self.retire_unbound(at_start=True)
            self.failures.remember(self.alarms.active())  # a release's, of a dropped output

    def _open_alarms(self, journal: Journal | None = None) -> None:
        settings = self.loaded.config.alarms  # `journal`: one passed on (`take_over`)
        self.journal = journal or Journal(self.journal_path, clock=self.clock,
                                          retention_days=settings.retention_days)
        self.journal.retention_days = settings.retention_days
        self.alarms = AlarmManager(
            self.journal, self.clock, chatter_count=settings.chatter_count,
            chatter_window=settings.chatter_window, chatter_hold=settings.chatter_hold,
            flood_count=settings.flood_count, flood_window=settings.flood_window)

    def take_over(self, previous: SafetyCore, earlier: SafetyCore | None = None
                  ) -> tuple[int, int]:
        """Replace `previous` (a config apply; built with `open_alarms=False`, called once
        `previous` has stopped): take over its alarm journal (its writer thread, what it has
        not yet written), carry the rule engine's state and the output planner's holds, and
        hold the bindings of alarms still active. `earlier`: the core `previous` replaced, if
        any — a device that `previous` reached with other settings than this config's and
        never read (a rolled-back candidate) takes its state from `earlier`. Returns
        (bindings carried whole, bindings held from the journal). A live drill of `previous`
        ends here, journalled as ended by the config change (its events go out with this
        core's first round)."""
        drill = previous.drill
        if drill is not None and not drill.finished:  # before this core reads the journal
            self._output_events += drill.end(previous.alarms, "the gateway's config changed")
        previous.journal_passed_on = True
        self._open_alarms(previous.journal)
        from_earlier: set[str] = set()
        if earlier is not None:
            fresh = previous.engine.fresh_devices()
            for device in self.loaded.config.devices:
                mine = acquisition(self.loaded, device.id)
                if device.id not in fresh and mine != acquisition(previous.loaded, device.id) \
                        and mine == acquisition(earlier.loaded, device.id):
                    from_earlier.add(device.id)
        carried = self.engine.adopt(previous.engine, earlier.engine if earlier else None,
                                    from_earlier)
        held = self.engine.hold(self.alarms.held_conditions())
        self.planner.adopt(previous.planner)  # holds until reset, min_on timers
        self.field.adopt(previous.field, self.outputs)  # the driver's view, blocks logged
        self.planner.restore(self.alarms.output_holds())  # and the journal's (a rollback)
        holds = self.planner.held()
        self._suspended = (previous._suspended & holds) | self._journalled_suspensions(
            holds - previous.planner.outputs.keys())
        self._retire_due = True  # what this config no longer has: once it is not on trial
        self.failures.remember(self.alarms.active())
        return carried, len(held)

    def _journalled_suspensions(self, outputs: Iterable[str]) -> set[str]:
        """Those of `outputs` whose last journalled hold event is a suspension by an
        interlock (a restart, or a rollback to a config with an output the candidate lacked,
        goes on from the journal's word instead of journalling it again)."""
        found = set()
        for output_id in outputs:
            last = self.journal.last_event(OUTPUT_RULE, output_id)
            note = last.note if last is not None else None
            if note is not None and (note.startswith(SUSPENDED) or f"; {SUSPENDED}" in note):
                found.add(output_id)
        return found

    def unbound(self) -> list[AlarmKey]:
        """The alarms held active (`AlarmManager.held_conditions`) that nothing in this
        config evaluates: rule alarms this engine does not bind, output alarms of outputs
        (or feedback) it does not have. Not a live drill's, not a `$…` system rule's, not
        `rules.evaluation_failed` (the engine adopts those: gateway.rules.faults), not the
        `actions.output_failure` of an output whose coil release the journal keeps pending
        (gateway.actions.release: it clears when the release does)."""
        bound = set(self.engine.bindings())
        releasing = output_ids(self.alarms.kept(COIL_RELEASES))
        out = []
        for rule, subject in self.alarms.held_conditions():
            if (rule, subject) in bound or is_drill(subject) or rule.startswith("$") \
                    or rule == EVALUATION_FAILED_RULE:
                continue
            if rule == OUTPUT_FAILURE_RULE and (subject in self.outputs
                                                or subject in releasing):
                continue
            if rule in OUTPUT_RULES - {OUTPUT_FAILURE_RULE} \
                    and subject in self.supervisor.watches:
                continue
            out.append(AlarmKey(rule, subject))
        return out

    def retire_unbound(self, *, at_start: bool = False) -> list[AlarmEvent]:
        """Return to normal the alarms this config no longer has (`unbound`), if a start or a
        config apply left any to look for: one event each, actor system, note `returned: no
        longer in the config (vN)`; their outputs are released at the next plan. Call it only
        when the config is not on trial (a rollback must find them as they were)."""
        if not self._retire_due:
            return []
        self._retire_due = False
        keys = self.unbound()
        if not keys:
            return []
        why = [f"v{self.config_version}"] if self.config_version is not None else []
        why += ["at start"] if at_start else []
        note = "returned: no longer in the config" + (f" ({', '.join(why)})" if why else "")
        for key in keys:
            log.warning("event=alarm_retired rule=%s subject=%s reason=%r", key.rule,
                        key.subject, note)
        return self.alarms.retire(keys, note)

    def ingest(self, batch: list[Sample]) -> None:
        self.engine.on_samples(batch)
        self.supervisor.ingest(batch)  # issue 11
        if self.drill is not None:  # issue 12: the drill's engine sees the room's samples
            self.drill.on_samples(batch)

    def step(self, extra: Iterable[Evaluation] = (),
             trial: TrialHold | None = None) -> list[AlarmEvent]:
        """A round: evaluate the rules that are due (gateway.rules.engine: what samples changed
        and what timers came), run the alarm lifecycle on what changed, plan the outputs.
        `trial`: a config on trial holds its own trouble alarms (gateway.flashing.trial)."""
        evaluations = self.engine.evaluate_changed()
        if self._undelivered:  # a round that raised after the rules: theirs first
            evaluations = [*self._undelivered, *evaluations]
            if len(evaluations) > 2 * self.engine.counts()[1] + 64:  # rounds keep failing
                evaluations = list({(e.rule, e.subject): e for e in evaluations}.values())
        self._undelivered = evaluations
        extra = list(extra)
        if self.supervisor.watches:  # issue 11
            extra.extend(self.supervisor.evaluate(self.wanted, self.alarms.active()))
        batch = [*evaluations, *extra] if extra else evaluations
        drill_events: list[AlarmEvent] = []
        if self.drill is not None:  # --- issue 12: a live drill's alarms (gateway.drills.live)
            # a real alarm of the drill's room ends it: the rules' and the outputs' own
            # (a supervised fan that stops during a drill is no part of it); only active ones
            # count, so no normal binding's evaluation is made (gateway.rules.latest)
            real = [*self.engine.active(), *extra] if extra else self.engine.active()
            drill_events, drilled = self.drill.step(real, self.alarms)
            batch = [*batch, *drilled]
            if self.drill.finished:
                self.drill = None  # --- end issue 12
        if trial is not None:  # issue 9: the trial hold
            batch = trial.admit(batch, self.alarms, self.engine.packs)
        events = self.alarms.observe(batch)
        self._undelivered = []  # the alarm manager has them (it takes one again as a no-op)
        events.extend(self.alarms.tick())
        if trial is None and self._retire_due:  # after a config apply (see `retire_unbound`)
            events.extend(self.retire_unbound())
        self.plan_outputs()
        events.extend(self.take_output_events())
        return [*drill_events, *events] if drill_events else events

    def next_deadline(self) -> float | None:
        """Monotonic time of the next round the core needs with no new sample — the rules'
        next timer, an output's `min_on` ending, a supervised output's feedback limit, a shelf
        or suppression expiring, a live drill's own times, and every `HOUSEKEEPING_TICK` while
        an alarm chatters or a flood is on (the alarm manager's own timers); None: nothing
        waits on time."""
        now = self.clock.monotonic()
        times = [self.engine.next_deadline()]
        for output_id, plan in self.planner.state.items():
            min_on = self.planner.outputs[output_id].min_on
            if plan.on and plan.on_since is not None and now - plan.on_since < min_on:
                times.append(plan.on_since + min_on)
        for watch in self.supervisor.watches.values():  # issue 11
            since = watch.mismatch_since
            if since is not None and now - since < watch.feedback.within:
                times.append(since + watch.feedback.within)
        active = self.alarms.active()
        times.append(self.alarms.next_overlay_expiry())  # by either clock (the clock audit)
        if self.alarms.flood.active or any(v.chattering for v in active):
            times.append(now + HOUSEKEEPING_TICK)
        if self.drill is not None:  # issue 12: a live drill's end, steps and timers
            times.append(self.drill.next_deadline())
        known = [t for t in times if t is not None]
        return min(known) if known else None

    def plan_outputs(self) -> dict[str, bool]:
        demands = [d for d in map(demand_of, self.alarms.active()) if d is not None]
        self.wanted = self.planner.plan(demands, self.field.view())  # interlocks: the field too
        self.field.note(self.planner.state)
        self._journal_holds()
        return self.wanted

    def take_output_events(self) -> list[AlarmEvent]:
        """The hold events journalled since the last call (for the uplink and the panel)."""
        events, self._output_events = self._output_events, []
        return events

    def _journal_holds(self) -> None:
        """Journal what changed in the holds until an operator reset: a new hold (a real
        alarm wanted the output), one the plan dropped without a reset (the output restores
        on clear in this config), and a hold an interlock suspends (held off while its
        blocker is on) or resumes — an interlock never ends a hold. An operator's reset is
        journalled by the command (gateway.operator.commands)."""
        planner = self.planner
        held, journalled = planner.held(), self.alarms.output_holds()
        suspended = {o for o in held if planner.state[o].blocked_by is not None}
        if held == journalled & planner.outputs.keys() and suspended == self._suspended:
            return
        for output_id in sorted(held - journalled):
            plan = planner.state[output_id]
            why = ", ".join(plan.reasons if plan.demanded_by else ()) or "a real alarm"
            note = f"held until reset: switched on by {why}"
            if plan.blocked_by is not None:
                note = (f"held until reset: wanted by {why}; {SUSPENDED}interlocked off "
                        f"while {plan.blocked_by} is on{_because(plan.block_reason)}")
            self._output_events += self.alarms.output_event(
                output_id, held=True, actor=SYSTEM_ACTOR, note=note,
                room=self._room_of(output_id))
        for output_id in sorted(held & journalled):
            blocker = planner.state[output_id].blocked_by
            if blocker is not None and output_id not in self._suspended:
                because = _because(planner.state[output_id].block_reason)
                note = (f"{SUSPENDED}interlocked off while {blocker} is on{because}; still "
                        "held until reset")
            elif blocker is None and output_id in self._suspended:
                note = "resumed: no interlock holds it off; on again until reset"
            else:
                continue
            self._output_events += self.alarms.output_event(
                output_id, held=True, actor=SYSTEM_ACTOR, note=note,
                room=self._room_of(output_id))
        for output_id in sorted((journalled & planner.outputs.keys()) - held):
            self._output_events += self.alarms.output_event(
                output_id, held=False, actor=SYSTEM_ACTOR,
                note="hold ended: the output restores on clear in this config",
                room=self._room_of(output_id))
        self._suspended = suspended

    def _room_of(self, output_id: str) -> str | None:
        rooms = sorted(r for r in self.planner.rooms.get(output_id, set()) if r)
        return rooms[0] if len(rooms) == 1 else None

    def output_failures(self, failed: dict[str, str | None], now_ns: int,
                        released: Iterable[Orphan] = ()) -> list[Evaluation]:
        """Alarms of outputs whose last write failed (`failed`: output id → error or None)
        or whose coil released by a config apply is not confirmed off (`released`: the
        releases pending): gateway.actions.failures."""
        return self.failures.evaluate(failed, now_ns, released)

    def close(self) -> None:
        if not self.journal_passed_on:  # else the core that took over journals on it now
            self.alarms.close()


def _because(reason: str | None) -> str:
    """An interlock's `reason` for a journal note: ` (no recirculation while purging)`."""
    return f" ({reason})" if reason else ""
