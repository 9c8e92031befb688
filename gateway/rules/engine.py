"""The rule engine: binds every rule to its subjects once, then evaluates them on demand.

    engine = RuleEngine(packs, loaded, clock, overrides)
    engine.on_samples(batch)          # every poll batch: O(samples), no evaluation
    evaluations = engine.evaluate()   # e.g. once a second: one Evaluation per (rule, subject)

Binding happens at construction: each rule's `select` picks points of the site's enabled
devices (by quantity, room type, room, profile, …, with every device's `<device>.online`
point as quantity `device_online`), `subject` groups them per point, device or room, the
parameters are resolved for that subject (defaults, then site, room type, room, device
overrides) and the condition is compiled into a tree of small stateful nodes with the numbers
baked in. A binding whose condition needs a parameter that has no value (a breaker rating
nobody configured) is not evaluated; `unconfigured()` lists it. A subject that lacks the
inputs a condition needs (a dew point without humidity, a coincidence with one detector) is
not bound at all.

Continuity: `adopt(previous)` carries the evaluation state of every (rule, subject) and point
present in both configs (gateway.rules.carry), and `hold(alarms)` makes the bindings of alarms
the alarm manager holds active (restored from the journal) active without data, so an apply
or a restart neither returns an alarm nor runs its on-delay again.

Time: the engine runs on the clock's monotonic seconds. A sample's time is its acquisition
timestamp mapped onto that scale when the batch arrives, so wall-clock steps do not fire or
clear delays. Pure: no I/O, no threads; the caller owns the schedule.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from gateway.alarms.types import Evaluation
from gateway.clock import Clock
from gateway.config.loader import LoadedConfig
from gateway.field.bus_loop import ONLINE_POINT
from gateway.field.points import bind_points
from gateway.field.sample import Sample, Value
from gateway.rules import model as m
from gateway.rules.carry import carry_node, carry_point, held, hold
from gateway.rules.conditions import (
    Above,
    Below,
    Debounce,
    DewPointSignal,
    GroupSignal,
    Outside,
    Pick,
    PointState,
    RateSignal,
    Signal,
    Test,
    ValueSignal,
    load_pct,
    mean_of,
    spread_of,
    unbalance,
)
from gateway.rules.config import ParameterOverrides
from gateway.rules.differences import group_difference  # issue 11
from gateway.rules.model import DEVICE_ONLINE, RulePack, condition_refs
from gateway.rules.nodes import (
    AllNode,
    AnyNode,
    AtLeastNode,
    CompareLeaf,
    EqualsLeaf,
    FlatLeaf,
    InvalidLeaf,
    Node,
    StaleLeaf,
    accepted_values,
)
from gateway.rules.section import ParamValue

SubjectKind = Literal["point", "device", "room"]


@dataclass(frozen=True, slots=True)
class PointInfo:
    """A point of the site as rules see it."""

    id: str
    device: str
    room: str
    room_type: str
    profile: str
    quantity: str | None
    enum: dict[int, str] | None = None


@dataclass(frozen=True)
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
                 "states", "title")

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


class _Skip(Exception):
    """The subject lacks what the condition needs: no binding."""


class RuleEngine:
    def __init__(self, packs: Mapping[str, RulePack] | Iterable[RulePack],
                 loaded: LoadedConfig, clock: Clock,
                 overrides: ParameterOverrides | None = None) -> None:
        self.clock = clock
        self.overrides = overrides or ParameterOverrides()
        self.packs: tuple[RulePack, ...] = tuple(
            packs.values() if isinstance(packs, Mapping) else packs)
        start = clock.monotonic()
        self._infos: list[PointInfo] = []
        self._states: dict[str, PointState] = {}
        self._device_quantities: dict[str, set[str]] = {}
        rooms = {room.id: room.type for room in loaded.config.rooms}
        for device in loaded.config.devices:
            if not device.enabled:
                continue
            room_type = rooms.get(device.room, "other")
            online = PointInfo(f"{device.id}.{ONLINE_POINT}", device.id, device.room, room_type,
                               device.profile, DEVICE_ONLINE)
            infos = [online]
            for point in bind_points(device, loaded.profile_of(device)):
                infos.append(PointInfo(point.id, device.id, device.room, room_type,
                                       device.profile, point.quantity, point.enum))
                infos.extend(PointInfo(flag.id, device.id, device.room, room_type,
                                       device.profile, flag.quantity) for flag in point.flags)
            online_state = PointState(online.id, device.id, start)
            self._states[online.id] = online_state
            for info in infos[1:]:
                state = PointState(info.id, device.id, start)
                state.online = online_state
                self._states[info.id] = state
            self._infos.extend(infos)
            self._device_quantities[device.id] = {i.quantity for i in infos if i.quantity}
        self._live: list[_Live] = []
        self._unconfigured: list[Binding] = []
        for pack in self.packs:
            for rule in pack.rules:
                rule_id = pack.full_id(rule)
                if rule_id not in self.overrides.disabled:
                    self._bind(rule_id, rule)

    # --- binding ----------------------------------------------------------------------------

    def _select(self, select: m.Select) -> list[PointInfo]:
        quantities = set(select.quantity) if select.quantity else None
        excluded = set(select.exclude_quantity)
        room_types = set(select.room_type) if select.room_type else None
        room_ids = set(select.room) if select.room else None
        profiles = set(select.profile) if select.profile else None
        device_has = set(select.device_has) if select.device_has else None
        out = []
        for info in self._infos:
            quantity = info.quantity
            if quantities is None:
                if quantity is None or quantity == DEVICE_ONLINE:
                    continue
            elif quantity not in quantities:
                continue
            if quantity in excluded:
                continue
            if room_types is not None and info.room_type not in room_types:
                continue
            if room_ids is not None and info.room not in room_ids:
                continue
            if profiles is not None and info.profile not in profiles:
                continue
            if device_has is not None and not device_has & self._device_quantities[info.device]:
                continue
            out.append(info)
        return out

    def _bind(self, rule_id: str, rule: m.Rule) -> None:
        selected = self._select(rule.select)
        groups: dict[str, list[PointInfo]] = {}
        for info in selected:
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
                node = _Compiler(params, self._states).compile(rule.condition, members)
            except _Skip:
                continue
            self._live.append(_Live(binding, rule, node,
                                    [self._states[i.id] for i in members]))

    # --- run time ---------------------------------------------------------------------------

    def on_samples(self, batch: list[Sample]) -> None:
        """Take one poll batch: update the latest value, quality and windows of each point."""
        if not batch:
            return
        mono = self.clock.monotonic()
        offset = mono - self.clock.now_ns() * 1e-9
        states = self._states
        for sample in batch:
            state = states.get(sample.point)
            if state is None:
                continue
            t = sample.ts * 1e-9 + offset
            state.update(sample.value, sample.quality, sample.ts, t if t < mono else mono)

    def evaluate(self) -> list[Evaluation]:
        """Evaluate every binding at the clock's now; one Evaluation per (rule, subject).
        An unchanged result is handed on as the same Evaluation object as last time."""
        now = self.clock.monotonic()
        now_ns = self.clock.now_ns()
        out: list[Evaluation] = []
        append = out.append
        for live in self._live:
            active = live.node.eval(now)
            value = live.node.value
            single = live.single
            if single is not None:
                ts = single.ts_ns or now_ns
            else:
                ts = max(s.ts_ns for s in live.states) or now_ns
            last = live.last
            if last is not None and last.active is active and last.ts == ts and \
                    last.value == value:
                append(last)
                continue
            binding = live.binding
            evaluation = Evaluation(binding.rule, binding.subject, active, value,
                                    live.severity, ts, live.title, binding.room,
                                    live.actions, live.latching)
            live.last = evaluation
            append(evaluation)
        return out

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
        return carried

    def hold(self, alarms: Mapping[tuple[str, str], Value]) -> list[tuple[str, str]]:
        """Make the bindings of these alarms ((rule, subject) → last value) active unless their
        state already is: they stay active until good data says otherwise. Returns those
        made active."""
        out = []
        for live in self._live:
            key = (live.binding.rule, live.binding.subject)
            if key in alarms and not held(live.node):
                hold(live.node, alarms[key])
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


# --- compiling conditions -------------------------------------------------------------------


def _identity(value: float) -> float:
    return value


def _negate(value: float) -> float:
    return -value


class _Compiler:
    def __init__(self, params: Mapping[str, ParamValue], states: Mapping[str, PointState]
                 ) -> None:
        self.params = params
        self.states = states

    def num(self, value: float | str) -> float:
        if isinstance(value, str):
            resolved = self.params[value[1:]]
            assert resolved is not None  # unconfigured bindings are not compiled
            return float(resolved)
        return value

    def compile(self, cond: m.Condition, members: Sequence[PointInfo]) -> Node:
        if isinstance(cond, m.All):
            return AllNode([self.compile(c, members) for c in cond.all])
        if isinstance(cond, m.AnyOf):
            children = self._some(cond.any, members)
            if not children:
                raise _Skip
            return children[0] if len(children) == 1 else AnyNode(children)
        if isinstance(cond, m.AtLeast):
            return self._at_least(cond.at_least, members)
        chosen = [i for i in members if cond.quantity is None or i.quantity in cond.quantity]
        if not chosen:
            raise _Skip
        states = [self.states[i.id] for i in chosen]
        if isinstance(cond, m.Compare):
            return self._compare(cond, chosen, states)
        leaves: list[Node]
        if isinstance(cond, m.Stale):
            max_age = self.num(cond.stale)
            leaves = [StaleLeaf(s, max_age, cond.include_offline) for s in states]
        elif isinstance(cond, m.Flatline):
            window, epsilon = self.num(cond.flatline.window), self.num(cond.flatline.epsilon)
            leaves = [FlatLeaf(s, window, epsilon) for s in states]
        else:
            duration = self.num(cond.invalid_for)
            leaves = [InvalidLeaf(s, duration) for s in states]
        return leaves[0] if len(leaves) == 1 else AnyNode(leaves)

    def _some(self, conditions: Sequence[m.Condition], members: Sequence[PointInfo]
              ) -> list[Node]:
        out = []
        for cond in conditions:
            try:
                out.append(self.compile(cond, members))
            except _Skip:
                continue
        return out

    def _at_least(self, spec: m.AtLeastSpec, members: Sequence[PointInfo]) -> Node:
        count = max(1, round(self.num(spec.count)))
        if spec.of is not None:
            children = self._some(spec.of, members)
            if len(children) < count:
                raise _Skip
            return AtLeastNode(children, count)
        assert spec.each is not None
        nodes: list[Node] = []
        groups: list[str] = []
        for info in members:
            try:
                nodes.append(self.compile(spec.each, [info]))
            except _Skip:
                continue
            groups.append(info.device if spec.distinct == "device" else info.id)
        if len(set(groups)) < count:
            raise _Skip
        return AtLeastNode(nodes, count, groups)

    def _compare(self, cond: m.Compare, infos: Sequence[PointInfo],
                 states: Sequence[PointState]) -> Node:
        debounce = Debounce(self.num(cond.on_delay), self.num(cond.off_delay))
        if cond.equals is not None or cond.in_ is not None:
            wanted = (cond.equals,) if cond.equals is not None else (cond.in_ or ())
            return EqualsLeaf(states, [accepted_values(wanted, i.enum) for i in infos],
                              debounce)
        deadband = self.num(cond.deadband)
        test: Test
        key: Pick
        if cond.above is not None or cond.at_or_above is not None:
            limit = cond.above if cond.above is not None else cond.at_or_above
            assert limit is not None
            test, key = Above(self.num(limit), deadband, cond.at_or_above is not None), _identity
        elif cond.below is not None or cond.at_or_below is not None:
            limit = cond.below if cond.below is not None else cond.at_or_below
            assert limit is not None
            test, key = Below(self.num(limit), deadband, cond.at_or_below is not None), _negate
        else:
            assert cond.outside is not None
            outside = Outside(self.num(cond.outside[0]), self.num(cond.outside[1]), deadband)
            test, key = outside, outside.excursion
        return CompareLeaf(self._signal(cond.signal, infos, states, key), test, debounce,
                           states)

    def _signal(self, spec: m.Signal, infos: Sequence[PointInfo],
                states: Sequence[PointState], key: Pick) -> Signal:
        if spec == "value":
            return ValueSignal(states, key)
        if spec == "mean":
            return GroupSignal(states, mean_of, 1)
        if spec == "spread":
            if len(states) < 2:
                raise _Skip
            return GroupSignal(states, spread_of, 2)
        if spec == "unbalance":
            if len(states) < 2:
                raise _Skip
            return GroupSignal(states, unbalance, len(states))
        if spec == "dew_point":
            temperature = [s for i, s in zip(infos, states, strict=True)
                           if i.quantity == "temperature"]
            humidity = [s for i, s in zip(infos, states, strict=True)
                        if i.quantity == "relative_humidity"]
            if not temperature or not humidity:
                raise _Skip
            return DewPointSignal(temperature, humidity, key)
        # --- issue 11 (detection depth): rate span/noise guard and group differences -------
        if isinstance(spec, m.RateSignal):
            rate = spec.rate
            return RateSignal(states, self.num(rate.window), self.num(rate.per),
                              rate.min_samples, key, rate.absolute,
                              min_span=None if rate.min_span is None else self.num(
                                  rate.min_span), confidence=self.num(rate.confidence))
        if isinstance(spec, m.ExcessSignal) or spec == "outlier":
            different = group_difference(spec, [i.quantity for i in infos], states)
            if different is None:
                raise _Skip
            return different
        # --- end issue 11 ------------------------------------------------------------------
        assert isinstance(spec, m.LoadSignal)
        rating = self.num(spec.load_pct.rating)
        return GroupSignal(states, lambda values: load_pct(values, rating), 1)
