"""Which local outputs should be on, given the alarms that demand them. Pure, clock-injected.

An alarm demands every output whose role its rule names (`siren`, `exhaust_fan` …) and that
serves the alarm's room. Per output:

* a siren-like output (`silence_on_ack`, default for sirens) is on while a demanding alarm is
  active and unacknowledged — acknowledge silences it, the alarm stays active;
* any other output (strobe, exhaust fan) is on while a demanding alarm's condition is active,
  acknowledged or not (a visual alarm cannot be silenced; a fan keeps purging);
* `latch_until_ack`: also on after the condition cleared, until the alarm is acknowledged;
* `restore_on_clear: false`: once a real alarm switched it on, stays on until an operator
  resets it (`reset`; a live drill's alarm switches it like any other, but leaves no such
  hold). The safety core journals each hold and restores it at a start (`restore`);
* `min_on`: once switched on, stays on at least that long;
* interlocks are applied last: an output interlocked with one that is on is held off, and the
  block is reported (`blocked_by`). "On" is the blocker's own outcome, its interlocks applied
  first, or what the field shows: the locks are evaluated in dependency order
  (`interlock_order`), so a set of locks gives the same outputs in any list order, and a
  blocker that is itself held off blocks nothing — unless the field shows it running. An
  interlock suspends an output held until reset, it does not end the hold: the output comes
  back on when its blocker goes off, unless an operator reset it meanwhile. A cycle of
  interlocks (refused by `check`) holds each of its outputs off while any of its blockers in
  the cycle is wanted (or shown on);
* the field: a blocker the field shows on (`plan`'s `field_on`, gateway.actions.field — a
  welded contact read back on after an off write, the module's poll of its coil, its feedback
  showing it acting) blocks whatever the plan wants of it, and says so in `blocked_by`:
  `fan-1 (running in the field: read back on)`. A blocker wanted on blocks though its write
  failed; a field that shows nothing (unknown: module offline, nothing read yet) adds nothing.

A shelved or suppressed alarm hides from the operator, it does not switch the protection off
(ISA-18.2 / IEC 62682): while its condition is active (or it is latched active — a latching
alarm latches under the overlay too: gateway.alarms.lifecycle) it still demands its
*protective* outputs (`Output.is_protective`: exhaust fan, HVAC stop, charge inhibit, or an
output the site marks `protective`), as an acknowledged alarm would (`Demand.overlay`), and
none of its annunciation (siren, strobe, alarm panel). The output's reasons say so
(`hydrogen@h2-1 (shelved: protective output stays on)`), so the panel tells why a fan runs
with no alarm in the list. An out-of-service alarm, or a shelved or suppressed one whose
condition is clear and that is not latched, demands nothing; the caller leaves it out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from gateway.clock import Clock
from gateway.config.site import Interlock, Output
from gateway.records import dataclass, field

if TYPE_CHECKING:
    from gateway.alarms.events import AlarmView


@dataclass(frozen=True, slots=True)
class Demand:
    """What one alarm asks of the outputs."""

    alarm: str
    roles: tuple[str, ...]
    room: str | None
    active: bool
    """The alarm's condition is active (or it is latched active)."""
    unacknowledged: bool
    drill: bool = False
    """A live drill's alarm: it may switch an output on (an evacuation drill), but never
    latches one that does not restore on clear — a drill leaves nothing held for a reset."""
    overlay: str | None = None
    """`shelved` or `suppressed`: the alarm is hidden from the operator and demands only the
    protective outputs of its roles (`Output.is_protective`); None for an annunciated one."""

    @property
    def reason(self) -> str:
        """How an output's reasons name this demand (the panel's outputs table, status)."""
        if self.overlay is None:
            return self.alarm
        return f"{self.alarm} ({self.overlay}: protective output stays on)"


def demand_of(view: AlarmView) -> Demand | None:
    """What one alarm asks of the outputs; None when it asks nothing (normal, out of service,
    shelved or suppressed with its condition clear). A shelved or suppressed alarm whose
    condition is active (or latched) asks for its protective outputs, as acknowledged."""
    if not view.actions:
        return None
    if view.annunciated:
        return Demand(alarm=str(view.key), roles=view.actions, room=view.room,
                      active=view.demands_actions, unacknowledged=view.state.unacknowledged,
                      drill=view.drill)
    if view.hidden_active:
        return Demand(alarm=str(view.key), roles=view.actions, room=view.room, active=True,
                      unacknowledged=False, drill=view.drill, overlay=view.state.value)
    return None


@dataclass
class OutputPlan:
    on: bool = False
    on_since: float | None = None
    held_by_reset: bool = False
    """restore_on_clear is off and a real alarm wanted the output: it waits for an operator
    reset (an interlock may hold it off meanwhile: `blocked_by`)."""
    blocker: str | None = None
    """The output that holds it off now (an interlock), None when nothing does."""
    blocker_seen: str | None = None
    """What shows `blocker` on in the field when the plan has it off (`read back on`), None
    when the plan has it on (or nothing blocks)."""
    block_reason: str | None = None
    """The interlock's `reason` (its config) while `blocker` holds it off, None without one."""
    reasons: list[str] = field(default_factory=list)
    """The alarms (or hold) keeping it on, for the panel and logs (`Demand.reason`: a shelved
    or suppressed alarm is named as such)."""
    demanded_by: list[str] = field(default_factory=list)
    """The alarms that wanted it at the last plan (a reset leaves it on for them)."""
    released: set[str] = field(default_factory=set)
    """Alarms that wanted it when an operator reset it: they keep it on while they do, but
    do not hold it again (an alarm that stops wanting it and comes back does)."""

    @property
    def blocked_by(self) -> str | None:
        """What holds it off, for the panel, status and the journal: the blocker's id, and
        what shows it running when only the field does."""
        if self.blocker is None or self.blocker_seen is None:
            return self.blocker
        return f"{self.blocker} (running in the field: {self.blocker_seen})"


class OutputPlanner:
    def __init__(self, outputs: Iterable[Output], interlocks: Iterable[Interlock],
                 device_rooms: dict[str, str], clock: Clock) -> None:
        self.outputs = {o.id: o for o in outputs}
        self.interlocks = tuple(interlocks)
        self.clock = clock
        self.rooms = {o.id: set(o.rooms) or {device_rooms.get(o.device, "")}
                      for o in self.outputs.values()}
        self.state = {o: OutputPlan() for o in self.outputs}
        self.blockers: dict[str, tuple[str, ...]] = {}
        self.lock_reasons = {(lock.output, lock.while_on): lock.reason
                             for lock in self.interlocks if lock.reason}
        """(output, blocker) → the interlock's `reason`, shown while that blocker holds it off."""
        """Output → the outputs whose running holds it off (sorted ids: an output shows the
        first of them that is on, whatever the order of the locks in the config)."""
        for lock in self.interlocks:
            if lock.output in self.outputs and lock.while_on in self.outputs:
                self.blockers[lock.output] = tuple(sorted(
                    {*self.blockers.get(lock.output, ()), lock.while_on}))
        self.groups = interlock_order(self.blockers)
        self.blocking = frozenset(b for locks in self.blockers.values() for b in locks)
        """The outputs some interlock names as its blocker: all the field view needs."""

    def plan(self, demands: Iterable[Demand],
             field_on: Mapping[str, str] | None = None) -> dict[str, bool]:
        """The wanted on/off state of every output (also kept in `state`). `field_on`: the
        outputs the field shows on, each with what shows it (gateway.actions.field); such a
        blocker holds off the outputs interlocked with it whatever the plan wants of it."""
        demands = list(demands)
        now = self.clock.monotonic()
        wanted: dict[str, bool] = {}
        latching: dict[str, bool] = {}
        """A real (not drill) alarm wants the output: it latches if it does not restore."""
        for output_id, output in self.outputs.items():
            plan = self.state[output_id]
            wanting = [d for d in demands if self._wants(output, d)]
            reasons = [d.reason for d in wanting]
            plan.demanded_by = [d.alarm for d in wanting]
            if plan.released:  # (every round, every output: no set made when none)
                plan.released &= set(plan.demanded_by)
            on = bool(reasons)
            latching[output_id] = any(not d.drill and d.alarm not in plan.released
                                      for d in wanting)
            if not on and plan.on and plan.on_since is not None \
                    and now - plan.on_since < output.min_on:
                on, reasons = True, [f"min_on {output.min_on:g}s"]
            if not on and plan.held_by_reset:
                on, reasons = True, ["held until reset"]
            plan.reasons = reasons
            wanted[output_id] = on
        final = self._interlocked(wanted, field_on or {})
        for output_id, on in final.items():
            plan, output = self.state[output_id], self.outputs[output_id]
            if on and not plan.on:
                plan.on_since = now
            if not on:
                plan.on_since = None
            plan.on = on
            # from what the alarms and the hold want, not from what the interlocks leave: an
            # interlock suspends a hold, only an operator's reset ends it
            plan.held_by_reset = wanted[output_id] and not output.restore_on_clear and (
                plan.held_by_reset or latching[output_id])
        return final

    def _interlocked(self, wanted: dict[str, bool], field_on: Mapping[str, str]
                     ) -> dict[str, bool]:
        """`wanted` with the interlocks applied (and each output's `blocker` set): every
        blocker is decided before the outputs it blocks, so the outcome does not depend on the
        order of the locks; the outputs of a cycle of locks are decided together, each held
        off while a blocker in the cycle is wanted at all (or one outside it is on). A blocker
        in `field_on` is on whatever the plan makes of it."""
        final = dict(wanted)
        for group in self.groups:
            for output_id in group:
                plan = self.state[output_id]
                plan.blocker = plan.blocker_seen = plan.block_reason = None
                if not wanted[output_id]:
                    continue
                for blocker in self.blockers[output_id]:
                    planned = wanted[blocker] if blocker in group else final[blocker]
                    if planned or blocker in field_on:
                        plan.blocker = blocker
                        plan.blocker_seen = None if planned else field_on[blocker]
                        plan.block_reason = self.lock_reasons.get((output_id, blocker))
                        final[output_id] = False
                        break
        return final

    def adopt(self, previous: OutputPlanner) -> None:
        """Carry over what the previous planner holds for outputs that still exist (a config
        apply): an output held until an operator reset stays held, a `min_on` keeps running.
        The alarms themselves carry over through the journal."""
        for output_id, plan in previous.state.items():
            if output_id in self.state:
                self.state[output_id] = OutputPlan(on=plan.on, on_since=plan.on_since,
                                                   held_by_reset=plan.held_by_reset,
                                                   reasons=list(plan.reasons),
                                                   demanded_by=list(plan.demanded_by),
                                                   released=set(plan.released))

    def restore(self, held: Iterable[str]) -> list[str]:
        """Hold the outputs the journal holds until an operator reset (a start, or a config
        apply): those that exist and still do not restore on clear; the next `plan` switches
        them on. Returns the ones held."""
        restored = []
        for output_id in held:
            output = self.outputs.get(output_id)
            if output is not None and not output.restore_on_clear:
                self.state[output_id].held_by_reset = True
                restored.append(output_id)
        return restored

    def held(self) -> set[str]:
        """The outputs held on until an operator reset."""
        return {o for o, plan in self.state.items() if plan.held_by_reset}

    def reset(self, output_id: str) -> list[str]:
        """An operator releases an output that does not restore on clear (KeyError: no such
        output). Returns the alarms that wanted it at the last plan: it stays on while they
        do, and goes off when they clear (they do not hold it again; another real alarm
        does)."""
        if output_id not in self.state:
            raise KeyError(f"no output {output_id!r}")
        plan = self.state[output_id]
        plan.held_by_reset = False
        plan.released = set(plan.demanded_by)
        return list(plan.demanded_by)

    def _wants(self, output: Output, demand: Demand) -> bool:
        if output.role not in demand.roles:
            return False
        if demand.overlay is not None and not output.is_protective:
            return False
        if demand.room is not None and demand.room not in self.rooms[output.id]:
            return False
        if output.silences_on_ack:
            return demand.unacknowledged and (demand.active or output.latch_until_ack)
        return demand.active or (output.latch_until_ack and demand.unacknowledged)



def interlock_order(blockers: dict[str, tuple[str, ...]]) -> tuple[frozenset[str], ...]:
    """The interlocked outputs in groups, every group after the groups of its blockers: one
    output each, or the outputs of a cycle of locks together (refused by `check`, decided by
    `OutputPlanner._interlocked` all the same). Sorted where the locks leave a choice."""
    reach: dict[str, set[str]] = {}
    for start in blockers:
        seen: set[str] = set()
        todo = list(blockers[start])
        while todo:
            here = todo.pop()
            if here not in seen:
                seen.add(here)
                todo.extend(blockers.get(here, ()))
        reach[start] = seen
    group_of = {o: frozenset({o} | {b for b in reach[o] if b in reach and o in reach[b]})
                for o in blockers}
    waiting = {g: {group_of[b] for o in g for b in blockers[o] if b in group_of} - {g}
               for g in set(group_of.values())}
    order: list[frozenset[str]] = []
    while waiting:
        ready = min((g for g, left in waiting.items() if not left), key=sorted)
        order.append(ready)
        del waiting[ready]
        for left in waiting.values():
            left.discard(ready)
    return tuple(order)
