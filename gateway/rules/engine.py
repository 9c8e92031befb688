"""The rule engine: binds every rule to its subjects once, then evaluates what is due.

    engine = RuleEngine(packs, loaded, clock, overrides)
    engine.on_samples(batch)               # every poll batch: O(samples), marks their readers
    changed = engine.evaluate_changed()    # a round: the evaluations that changed
    engine.next_deadline()                 # when the next timer of any binding comes

Binding happens at construction: each rule's `select` picks points of the site's enabled
devices (gateway.rules.sitepoints), `subject` groups them per point, device or room, the
parameters are resolved for that subject (defaults, then site, room type, room, device
overrides) and the condition is compiled into a tree of small stateful nodes with the numbers
baked in (gateway.rules.compiler). A binding whose condition needs a parameter that has no
value (a breaker rating nobody configured) is not evaluated; `unconfigured()` lists it. A
subject that lacks the inputs a condition needs (a dew point without humidity, a coincidence
with one detector) is not bound at all.

Change-driven rounds (gateway.rules.schedule): a round evaluates only the bindings a sample
marked — one with another value or quality for a point the binding reads; for rate windows any
sample; for a stale leaf a repeated sample after its max age — and those whose own deadline
has come (an on- or off-delay, a stale timeout, a flat-line window, an invalid-for duration, a
rate window's oldest sample leaving it). The first round evaluates everything. The results are
those of evaluating every binding at every round (`RuleEngine(…, every_round=True)` does that,
the reference the property test compares against). An evaluation is a new object only when
its result (active, value) changed; its `ts` is then the newest sample time of its inputs
(the round's time while none has arrived).

Continuity: `adopt(previous)` carries the evaluation state of every (rule, subject) and point
present in both configs (gateway.rules.carry), and `hold(alarms)` makes the bindings of alarms
the alarm manager holds active (restored from the journal) active without data, so an apply
or a restart neither returns an alarm nor runs its on-delay again.

Time: the engine runs on the clock's monotonic seconds. A sample's time is its acquisition
timestamp mapped onto that scale when the batch arrives, so wall-clock steps do not fire or
clear delays. Pure: no I/O, no threads; the caller owns the schedule.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Literal

from gateway.alarms.types import Evaluation, evaluation
from gateway.clock import Clock
from gateway.config.loader import LoadedConfig
from gateway.field.sample import Quality, Sample, Value
from gateway.rules import model as m
from gateway.rules.carry import carry_node, carry_point, held, hold
from gateway.rules.compiler import Compiler, PointInfo, Unbindable
from gateway.rules.conditions import PointState
from gateway.rules.config import ParameterOverrides
from gateway.rules.model import RulePack, condition_refs
from gateway.rules.nodes import Node
from gateway.rules.schedule import Schedule, Timer, deadline, inputs, timers
from gateway.rules.section import ParamValue
from gateway.rules.sitepoints import SitePoints

SubjectKind = Literal["point", "device", "room"]

EVERY_ROUND_TICK = 1.0
"""A binding this engine cannot schedule (a node kind gateway.rules.schedule does not know) is
evaluated at every round, and asks for a round at least this often."""

__all__ = ["Binding", "PointInfo", "RuleEngine", "SubjectKind"]


@dataclass(frozen=True, slots=True)
class Binding:
    """One rule bound to one subject."""

    rule: str
    subject: str
    kind: SubjectKind
    room: str | None
    points: tuple[str, ...]
    parameters: dict[str, ParamValue] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    """Parameters the condition needs that have no value: the binding is not evaluated."""


class _Live:
    __slots__ = ("actions", "binding", "last", "latching", "node", "severity", "single",
                 "states", "timers", "title")

    def __init__(self, binding: Binding, rule: m.Rule, node: Node,
                 states: Sequence[PointState]) -> None:
        self.binding = binding
        self.node = node
        self.states = tuple(states)
        self.single = self.states[0] if len(self.states) == 1 else None
        self.severity = rule.severity
        self.title = rule.title
        self.actions = rule.actions
        self.latching = rule.latching
        self.last: Evaluation | None = None
        self.timers: tuple[Timer, ...] = ()
        """The tree's time-dependent parts (gateway.rules.schedule.timers)."""


_TS = attrgetter("ts_ns")
INF = math.inf


class RuleEngine:
    def __init__(self, packs: Mapping[str, RulePack] | Iterable[RulePack],
                 loaded: LoadedConfig, clock: Clock,
                 overrides: ParameterOverrides | None = None, *,
                 every_round: bool = False) -> None:
        """`every_round`: evaluate every binding at every round (the reference behaviour the
        change-driven rounds are tested against; slower, same results)."""
        self.clock = clock
        self.overrides = overrides or ParameterOverrides()
        self.packs: tuple[RulePack, ...] = tuple(
            packs.values() if isinstance(packs, Mapping) else packs)
        self.every_round = every_round
        site = SitePoints(loaded, clock.monotonic())
        self._site = site
        self._infos = site.infos
        self._states = site.states
        self._live: list[_Live] = []
        self._unconfigured: list[Binding] = []
        for pack in self.packs:
            for rule in pack.rules:
                rule_id = pack.full_id(rule)
                if rule_id not in self.overrides.disabled:
                    self._bind(rule_id, rule)
        self._schedule = Schedule(len(self._live))
        self._seen: dict[str, tuple[Value, Quality]] = {}
        """Point id → (value, quality) of its latest sample: what "changed" compares with."""
        self._readers: dict[str, list[int]] = {}
        self._every: dict[str, list[int]] = {}
        self._gaps: dict[str, tuple[float, list[int]]] = {}
        self._always: list[int] = []
        self._index_readers()
        self.evaluated = 0
        """Binding evaluations since start (a round evaluates only what is due)."""
        self._last_round: float | None = None

    # --- binding ----------------------------------------------------------------------------

    def _bind(self, rule_id: str, rule: m.Rule) -> None:
        groups: dict[str, list[PointInfo]] = {}
        for info in self._site.select(rule.select):
            key = info.id if rule.subject == "point" else (
                info.device if rule.subject == "device" else info.room)
            groups.setdefault(key, []).append(info)
        refs = condition_refs(rule.condition)
        for subject, members in groups.items():
            if len(members) < rule.select.min_members:
                continue
            first = members[0]
            device = first.device if rule.subject != "room" else None
            params = self.overrides.resolve(rule_id, rule.parameters, device=device,
                                            room=first.room, room_type=first.room_type)
            binding = Binding(rule_id, subject, rule.subject, first.room,
                              tuple(i.id for i in members), params,
                              tuple(sorted(n for n in refs if params.get(n) is None)))
            if binding.missing:
                self._unconfigured.append(binding)
                continue
            try:
                node = Compiler(params, self._states).compile(rule.condition, members)
            except Unbindable:
                continue
            self._live.append(_Live(binding, rule, node,
                                    [self._states[i.id] for i in members]))

    def _index_readers(self) -> None:
        """Which bindings each point's samples mark (gateway.rules.schedule.inputs)."""
        gaps: dict[str, tuple[float, list[int]]] = {}
        for index, live in enumerate(self._live):
            found = inputs(live.node)
            if found is None:
                self._always.append(index)
                continue
            live.timers = timers(live.node)
            for point in found.change:
                self._readers.setdefault(point, []).append(index)
            for point in found.every:
                self._every.setdefault(point, []).append(index)
            for point, gap in found.gaps.items():
                least, readers = gaps.get(point, (math.inf, []))
                readers.append(index)
                gaps[point] = (min(least, gap), readers)
        self._gaps = gaps

    # --- run time ---------------------------------------------------------------------------

    def on_samples(self, batch: list[Sample]) -> None:
        """Take one poll batch: update the latest value, quality and windows of each point,
        and mark the bindings the samples concern for the next round."""
        if not batch:
            return
        mono = self.clock.monotonic()
        offset = mono - self.clock.now_ns() * 1e-9
        states, seen, mark = self._states, self._seen, self._schedule.mark_many
        readers, every, gaps = self._readers, self._every, self._gaps
        good = Quality.GOOD
        for sample in batch:
            point = sample.point
            state = states.get(point)
            if state is None:
                continue
            value, quality = sample.value, sample.quality
            before = seen.get(point)
            last_good = state.last_good_t
            t = sample.ts * 1e-9 + offset
            state.update(value, quality, sample.ts, t if t < mono else mono)
            seen[point] = (value, quality)
            if before is None or before[1] is not quality or not (
                    before[0] is value or (type(before[0]) is type(value)
                                           and before[0] == value)):  # the same value
                found = readers.get(point)
                if found is not None:
                    mark(found)
                continue
            found = every.get(point)
            if found is not None:
                mark(found)
            gap = gaps.get(point)
            if gap is not None and quality is good and mono - last_good >= gap[0]:
                mark(gap[1])

    def evaluate(self) -> list[Evaluation]:
        """A round (see `evaluate_changed`), then every binding's evaluation, one per
        (rule, subject) in binding order; an unchanged result is the same object as before."""
        self.evaluate_changed()
        return self.current()

    def evaluate_changed(self) -> list[Evaluation]:
        """A round at the clock's now: evaluate the bindings that are due (all of them with
        `every_round`); returns the evaluations that changed (new objects), in binding order.
        The first round returns every binding's."""
        now = self.clock.monotonic()
        schedule = self._schedule
        if self.every_round:
            schedule.mark_all()
        elif self._always:
            for index in self._always:
                schedule.mark(index)
        due = schedule.due(now)
        self._last_round = now
        if not due:
            return []
        self.evaluated += len(due)
        now_ns = self.clock.now_ns()
        lives = self._live
        changed: list[Evaluation] = []
        set_deadline = schedule.set_deadline
        for index in due:
            live = lives[index]
            node = live.node
            active = node.eval(now)
            value = node.value
            last = live.last
            if last is None or last.active is not active or not (
                    last.value is value or (type(last.value) is type(value)
                                            and last.value == value)):  # the same value
                single = live.single
                ts = (single.ts_ns if single is not None
                      else max(map(_TS, live.states))) or now_ns
                binding = live.binding
                last = live.last = evaluation(binding.rule, binding.subject, active, value,
                                              live.severity, ts, live.title, binding.room,
                                              live.actions, live.latching)
                changed.append(last)
            timers = live.timers
            if timers:
                if len(timers) == 1:  # deadline(timers, now), one timer: most bindings
                    when = timers[0]()
                    set_deadline(index, when if now < when else INF)
                else:
                    set_deadline(index, deadline(timers, now))
        return changed

    def current(self) -> list[Evaluation]:
        """Every evaluated binding's latest evaluation, in binding order (no round)."""
        return [live.last for live in self._live if live.last is not None]

    def next_deadline(self) -> float | None:
        """Monotonic time of the next round some binding needs with no new sample (now or
        earlier: one is due now); None when nothing waits on time."""
        if self._schedule.pending:
            return self.clock.monotonic()
        due = self._schedule.next_deadline()
        if self._always and self._last_round is not None:
            due = min(due, self._last_round + EVERY_ROUND_TICK)
        return None if due == math.inf else due

    def refresh(self) -> None:
        """Evaluate every binding at the next round (evaluation state was changed other than
        through `on_samples`)."""
        self._schedule.mark_all()

    def unscheduled(self) -> list[tuple[str, str]]:
        """(rule, subject) of the bindings evaluated at every round (see EVERY_ROUND_TICK)."""
        return [(self._live[i].binding.rule, self._live[i].binding.subject)
                for i in self._always]

    # --- introspection ----------------------------------------------------------------------

    def bindings(self) -> list[tuple[str, str]]:
        """(rule id, subject) of every evaluated binding, in evaluation order."""
        return [(live.binding.rule, live.binding.subject) for live in self._live]

    def binding_details(self) -> list[Binding]:
        return [live.binding for live in self._live]

    def unconfigured(self) -> list[Binding]:
        """Bindings left out because a parameter they need has no value (see `missing`)."""
        return list(self._unconfigured)

    def points(self) -> list[PointInfo]:
        return list(self._infos)

    # --- continuity across configs and restarts (gateway.rules.carry) ------------------------

    def adopt(self, previous: RuleEngine, earlier: RuleEngine | None = None,
              from_earlier: Collection[str] = ()) -> int:
        """Carry the state of every point and (rule, subject) present in `previous` (the engine
        this one replaces; same clock) into this engine; for the devices in `from_earlier`,
        take it from `earlier` instead (a rollback: what the candidate config read of a device
        it could not reach is no fact about that device). Returns how many bindings carried
        their whole condition tree."""
        def source(devices: Collection[str]) -> RuleEngine:
            if earlier is not None and any(d in from_earlier for d in devices):
                return earlier
            return previous

        for point_id, state in self._states.items():
            before = source((state.device,))._states.get(point_id)
            if before is not None:
                carry_point(state, before)
        lives = {id(e): {(x.binding.rule, x.binding.subject): x for x in e._live}
                 for e in (previous, earlier) if e is not None}
        carried = 0
        for live in self._live:
            key = (live.binding.rule, live.binding.subject)
            before_live = lives[id(source({s.device for s in live.states}))].get(key)
            if before_live is not None and carry_node(live.node, before_live.node):
                carried += 1
        self._schedule.mark_all()
        return carried

    def hold(self, alarms: Mapping[tuple[str, str], Value]) -> list[tuple[str, str]]:
        """Make the bindings of these alarms ((rule, subject) → last value) active unless their
        state already is: they stay active until good data says otherwise. Returns those
        made active."""
        out = []
        for index, live in enumerate(self._live):
            key = (live.binding.rule, live.binding.subject)
            if key in alarms and not held(live.node):
                hold(live.node, alarms[key])
                self._schedule.mark(index)
                out.append(key)
        return out

    # --- issue 11: warm start of rate windows across restarts (gateway.rules.warm) ---------
    def rate_points(self) -> dict[str, PointState]:
        """Point id → state, of the points whose good samples feed rate windows."""
        return {point_id: s for point_id, s in self._states.items() if s.rates}
    # --- end issue 11 ------------------------------------------------------------------------

    def fresh_devices(self) -> set[str]:
        """Devices of which a good reading (not just `online`) arrived while this engine ran."""
        return {s.device for s in self._states.values() if s.fresh and s.online is not None}
