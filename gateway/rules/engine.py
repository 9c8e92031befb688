"""The rule engine: binds every rule to its subjects once, then evaluates what is due.

    engine = RuleEngine(packs, loaded, clock, overrides)
    engine.on_samples(batch)               # every poll batch: O(samples), marks their readers
    changed = engine.evaluate_changed()    # a round: the evaluations that changed
    engine.next_deadline()                 # when the next timer of any binding comes

Binding happens at construction: each rule's `select` picks points of the site's enabled
devices (gateway.rules.sitepoints), `subject` groups them per point, device or room, the
parameters are resolved for that subject (defaults, then site, room type, room, device
overrides) and the condition is compiled into a tree of small stateful nodes with the numbers
baked in (gateway.rules.compiler; gateway.rules.binding does it, sharing what depends on the
rule or the config alone between subjects and engines). A binding whose condition needs a
parameter that has no value (a breaker rating nobody configured) is not evaluated;
`unconfigured()` lists it, `unconfigured_report()` says it for people (gateway.rules.coverage:
logged once per config when the engine is built, the `rule_parameters` health item, and
`roomwarden check`'s warnings). A subject that lacks the inputs a condition needs (a dew point
without humidity, a coincidence with one detector) is not bound at all.

Change-driven rounds (gateway.rules.schedule): a round evaluates only the bindings a sample
marked — one with another value or quality for a point the binding reads (another value of
the same quality only when it leaves the binding's quiet band: gateway.rules.quiet); for rate
windows any sample; for a stale leaf a repeated sample after its max age — and those whose
own deadline has come (an on- or off-delay, a stale timeout, a flat-line window, an
invalid-for duration, a rate window's oldest sample leaving it). The first round evaluates
everything. The results are those of evaluating every binding at every round
(`RuleEngine(…, every_round=True)` does that, the reference the property test compares
against). An evaluation is a new object only when the binding became active or normal, or
its value changed while it is active: a normal binding's value is the one it had when it
became normal (or was first evaluated) — nobody is shown a normal binding's value, and on a
busy site reporting each new value of thousands of normal bindings was most of the rules'
cost. Its `ts` is the newest sample time of its inputs (the round's time while none has
arrived). A normal binding's is kept as its value and time, made again when asked for
(gateway.rules.latest).

Continuity: `adopt(previous)` carries the evaluation state of every (rule, subject) and point
present in both configs (gateway.rules.carry), and `hold(alarms)` makes the bindings of alarms
the alarm manager holds active (restored from the journal) active without data, so an apply
or a restart neither returns an alarm nor runs its on-delay again.

A binding whose evaluation raises (a bug, or a value no test foresaw) fails alone: its own
evaluation stays the last good one (an active alarm stays active, its outputs stay on), every
other due binding is evaluated in the same round, and the failure is an alarm of its own,
`rules.evaluation_failed` (major) on the subject `<rule>@<subject>`, that returns to normal
at the binding's first good evaluation. A failing binding is tried again at its next sample
and at least every `FAILED_BINDING_RETRY` seconds; the log has the first failure's traceback
(gateway.rules.faults).

Time: the engine runs on the clock's monotonic seconds. A sample's time is its acquisition
timestamp mapped onto that scale when the batch arrives, so wall-clock steps do not fire or
clear delays. Pure: no I/O but the log line of a failing binding, no threads; the caller owns
the schedule.
"""

from __future__ import annotations

import gc
import math
from array import array
from collections.abc import Collection, Iterable, Mapping

from gateway.alarms.types import Evaluation, evaluation
from gateway.clock import Clock
from gateway.config.loaded import LoadedConfig
from gateway.field.sample import Sample, Value
from gateway.rules.binding import Binding, Shared, SubjectKind, bind, make_binding
from gateway.rules.carry import carry_node, carry_point, held, hold
from gateway.rules.compiler import PointInfo
from gateway.rules.conditions import PointState
from gateway.rules.config import ParameterOverrides
from gateway.rules.faults import EVALUATION_FAILED_RULE, FAILED_BINDING_RETRY, BindingFaults
from gateway.rules.intake import Intake, IntakePoint
from gateway.rules.latest import ACTIVE, Latest
from gateway.rules.model import RulePack
from gateway.rules.nodes import Node
from gateway.rules.quiet import BANDS, quiet_band
from gateway.rules.schedule import DUE, Schedule, Timed, survey
from gateway.rules.sitepoints import SitePoints, subject_name
from gateway.rules.unconfigured import Unconfigured, log_unconfigured, unconfigured

EVERY_ROUND_TICK = 1.0
"""A binding this engine cannot schedule (a node kind gateway.rules.schedule does not know) is
evaluated at every round, and asks for a round at least this often."""

__all__ = ["Binding", "PointInfo", "RuleEngine", "SubjectKind"]


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
        # one entry per evaluated binding, by index (lists, not an object per binding: a site
        # has thousands); its `Binding` is made again when asked for (`_binding`)
        self._commons: list[Shared] = []
        self._common = array("I")  # per binding, its `Shared`'s index in `_commons`
        self._points: list[str | tuple[str, ...]] = []
        """A binding's point id, or its points' ids (a tuple shared: gateway.rules.sitepoints);
        its subject and room are its first point's (gateway.rules.binding: `_subject`,
        `_room`)."""
        self._nodes: list[Node] = []
        self._latest = Latest(0)
        """Each binding's latest evaluation, a normal one's as its value and time."""
        self._timed: list[Timed | None] = []
        """The tree's time-dependent parts (gateway.rules.schedule.survey); None: none."""
        self._gated = bytearray()
        """1: the tree has a quiet band after an evaluation (gateway.rules.quiet); 0: never
        quiet."""
        self._unconfigured: list[Binding] = []
        self._always: list[int] = []
        self.faults = BindingFaults()
        """The bindings whose last evaluation raised (gateway.rules.faults)."""
        collecting = gc.isenabled()
        gc.disable()  # tens of thousands of new objects, none garbage: no cycle hunt meanwhile
        try:
            site = SitePoints(loaded, clock.monotonic(), IntakePoint)
            self._site = site
            self._infos = site.infos
            self._by_id = site.by_id
            self._states = site.states
            shared: dict[tuple[str, int], int] = {}
            for binding, rule, node in bind(self.packs, site, self.overrides):
                if node is None:
                    self._unconfigured.append(binding)
                    continue
                key = (binding.rule, id(binding.parameters))  # a rule's sets share one dict
                common = shared.get(key)
                if common is None:
                    common = shared[key] = len(self._commons)
                    self._commons.append(Shared(binding, rule))
                self._common.append(common)
                ids = binding.points
                self._points.append(ids[0] if len(ids) == 1 else ids)
                self._nodes.append(node)
            count = len(self._nodes)
            self._latest = Latest(count)
            self._timed = [None] * count
            self._gated = bytearray(count)
            self._schedule = Schedule(count)
            self._intake = Intake(self._states, self._schedule)
            self._index_readers()
        finally:
            if collecting:
                gc.enable()
        self._report = unconfigured(self._unconfigured, self._infos, self.overrides)
        if self._report:
            log_unconfigured(loaded, self._report)
        self.evaluated = 0
        """Binding evaluations since start (a round evaluates only what is due)."""
        self._last_round: float | None = None

    # --- binding ----------------------------------------------------------------------------

    def _index_readers(self) -> None:
        """Which bindings each point's samples mark (gateway.rules.schedule.inputs,
        gateway.rules.quiet, gateway.rules.intake)."""
        sides: dict[tuple[float, float], tuple[float, float]] = {}
        for index, node in enumerate(self._nodes):
            surveyed = survey(node)
            if surveyed is None:
                self._always.append(index)
                continue
            found, self._timed[index] = surveyed
            gated = quiet_band(node, sides) is not None
            self._gated[index] = gated
            self._intake.index(index, found, gated=gated)
        self._intake.freeze()

    # --- run time ---------------------------------------------------------------------------

    def on_samples(self, batch: list[Sample]) -> None:
        """Take one poll batch: update the latest value, quality and windows of each point,
        and mark the bindings the samples concern for the next round."""
        if not batch:
            return
        mono = self.clock.monotonic()
        self._intake.take(batch, mono, mono - self.clock.now_ns() * 1e-9)

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
        faults = self.faults
        changed: list[Evaluation] = []
        if faults.orphans:  # failure alarms of bindings this engine does not have: normal now
            changed.extend(faults.clear_orphans(self.clock.now_ns()))
        if not due:
            return changed
        self.evaluated += len(due)
        now_ns = self.clock.now_ns()
        nodes, timeds, gated = self._nodes, self._timed, self._gated
        kinds, lasts, keep = self._latest.kinds, self._latest.items, self._latest.keep
        states = self._states
        set_deadline, deadlines, queued, queue = (schedule.set_deadline, schedule._deadline,
                                                  schedule._queued, schedule._queue)
        set_band = self._intake.set_band
        failing = faults.failing
        for index in due:
            try:  # free in Python 3.11 unless it raises: then this binding alone fails
                node = nodes[index]
                active = node.eval(now)
                value = node.value
                kind = kinds[index]
                if gated[index]:  # the tree is its band: gateway.rules.quiet.band_now, inline
                    set_band(index, BANDS[type(node)](node))
                if not kind or (kind == ACTIVE) is not active or (active and not (
                        (was := lasts[index].value) is value  # type: ignore[union-attr]
                        or (type(was) is type(value) and was == value))):  # the same value
                    points = self._points[index]
                    ts = (states[points].ts_ns if type(points) is str
                          else max(states[p].ts_ns for p in points)) or now_ns
                    last = self._evaluation(index, active, value, ts)
                    keep(index, last)
                    changed.append(last)
                timed = timeds[index]
                if timed is not None:  # schedule.deadline and Schedule.set_deadline, inline
                    deadlines[index] = when = DUE[type(timed)](timed, now)
                    if when < queued[index]:
                        queue(index, when)
            except Exception as exc:  # this binding alone: logged and alarmed (rules.faults)
                raised = faults.failed(index, self._rule(index), self._subject(index),
                                       self._room(index), exc, now_ns)
                if raised is not None:
                    changed.append(raised)
                set_deadline(index, now + FAILED_BINDING_RETRY)
                continue
            if failing and index in failing:
                changed.append(faults.recovered(index, now_ns))
        return changed

    def current(self) -> list[Evaluation]:
        """Every evaluated binding's latest evaluation, in binding order (no round)."""
        return self._latest.current(lambda i, value, ts: self._evaluation(i, False, value, ts))

    def active(self) -> list[Evaluation]:
        """`current()`'s active evaluations (no normal one's made)."""
        return self._latest.active()

    def _evaluation(self, index: int, active: bool, value: Value, ts: int) -> Evaluation:
        common = self._commons[self._common[index]]
        rule, first = common.model, self._first(index)
        return evaluation(common.rule, subject_name(first, common.kind), active, value,
                          rule.severity, ts, rule.title, first.room, rule.actions, rule.latching)

    def next_deadline(self) -> float | None:
        """Monotonic time of the next round some binding needs with no new sample (now or
        earlier: one is due now); None when nothing waits on time."""
        if self._schedule.pending or self.faults.orphans:
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
        return [(self._rule(i), self._subject(i)) for i in self._always]

    # --- introspection ----------------------------------------------------------------------

    def bindings(self) -> list[tuple[str, str]]:
        """(rule id, subject) of every evaluated binding, in evaluation order."""
        return [(self._rule(index), self._subject(index)) for index in range(len(self._nodes))]

    def counts(self) -> tuple[int, int]:
        """(rules, bindings) evaluated: what `bindings()` would count, without its list."""
        return len({common.rule for common in self._commons}), len(self._nodes)

    def binding_details(self) -> list[Binding]:
        """Every evaluated binding, in evaluation order (made anew at each call, equal to
        those the rules were bound as)."""
        return [self._binding(index) for index in range(len(self._nodes))]

    def binding(self, rule: str, subject: str) -> Binding | None:
        """The evaluated binding of `rule` to `subject` (None: none), made anew: a search of
        the bindings, for a caller that asks for few (the panel's alarm cards)."""
        for index in range(len(self._nodes)):
            if self._rule(index) == rule and self._subject(index) == subject:
                return self._binding(index)
        return None

    def _binding(self, index: int) -> Binding:
        common = self._commons[self._common[index]]
        return make_binding(common.rule, self._subject(index), common.kind,
                            self._room(index), self._ids(index), common.parameters, ())

    def _rule(self, index: int) -> str:
        return self._commons[self._common[index]].rule

    def _subject(self, index: int) -> str:  # not kept (8 bytes a binding)
        return subject_name(self._first(index), self._commons[self._common[index]].kind)

    def _room(self, index: int) -> str | None:  # its first point's (gateway.rules.binding)
        return self._first(index).room

    def _first(self, index: int) -> PointInfo:
        points = self._points[index]
        return self._by_id[points if type(points) is str else points[0]]

    def _ids(self, index: int) -> tuple[str, ...]:
        points = self._points[index]
        return (points,) if isinstance(points, str) else points

    def unconfigured(self) -> list[Binding]:
        """Bindings left out because a parameter they need has no value (see `missing`)."""
        return list(self._unconfigured)

    def unconfigured_report(self) -> list[Unconfigured]:
        """`unconfigured()` for people: scope to set, chemistry that leaves it unset."""
        return list(self._report)

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
        trees = {id(e): dict(zip(e.bindings(), e._nodes, strict=True))
                 for e in (previous, earlier) if e is not None}
        carried = 0
        for index, (key, node) in enumerate(zip(self.bindings(), self._nodes, strict=True)):
            points = self._ids(index)
            devices = {self._states[p].device for p in points}
            tree = trees[id(source(devices))].get(key)
            if tree is not None and carry_node(node, tree):
                carried += 1
        self._schedule.mark_all()
        return carried

    def hold(self, alarms: Mapping[tuple[str, str], Value]) -> list[tuple[str, str]]:
        """Make the bindings of these alarms ((rule, subject) → last value) active unless their
        state already is: they stay active until good data says otherwise. Returns those
        made active."""
        out = []
        keys = self.bindings()
        for index, (key, node) in enumerate(zip(keys, self._nodes, strict=True)):
            if key in alarms and not held(node):
                hold(node, alarms[key])
                self._schedule.mark(index)
                out.append(key)
        faulted = [(subject, value) for (rule, subject), value in alarms.items()
                   if rule == EVALUATION_FAILED_RULE]
        if faulted:  # a binding's failure alarm, restored or carried: judged at its next round
            rooms = [self._room(index) for index in range(len(keys))]
            for index in self.faults.adopt(faulted, keys, rooms):
                self._schedule.mark(index)
        return out

    # --- issue 11: warm start of rate windows across restarts (gateway.rules.warm) ---------
    def rate_points(self) -> dict[str, PointState]:
        """Point id → state, of the points whose good samples feed rate windows."""
        return {point_id: s for point_id, s in self._states.items() if s.rates}
    # --- end issue 11 ------------------------------------------------------------------------

    def fresh_devices(self) -> set[str]:
        """Devices of which a good reading (not just `online`) arrived while this engine ran."""
        return {s.device for s in self._states.values() if s.fresh and s.online is not None}
