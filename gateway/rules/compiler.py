"""Compiling a rule's condition for one subject into a tree of condition nodes
(gateway.rules.nodes), with the subject's resolved parameters baked in as numbers.

Two steps, so that what depends only on the rule and its parameters is done once:
`prepare(condition, params)` reads the condition model once and gives a `Plan` with every
number resolved (one per rule and parameter set: most subjects of a rule share one), and
`plan.build(members, states)` makes one subject's tree — picking each leaf's member points by
quantity, building its signal (value, mean, spread, unbalance, dew point, rate, group
differences, load), its test and delays. A subject that lacks what a condition needs (a dew
point without humidity, a coincidence with one detector, a spread of one point) raises
`Unbindable`: the rule is not bound to it. `Compiler(params, states).compile(condition,
members)` does both. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial

from gateway.records import dataclass
from gateway.rules import model as m
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
)
from gateway.rules.conditions import unbalance as unbalance_of
from gateway.rules.differences import group_difference  # issue 11
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
from gateway.rules.rate import falling, rising
from gateway.rules.section import ParamValue


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
    valid_min: float | None = None
    valid_max: float | None = None
    """The point's valid range (None: unbounded; flags and `online` have none)."""
    field_device: bool = False
    """A field device of its own wired to its device (profile or site `field_device`)."""

    @property
    def source(self) -> str:
        """What `distinct: device` counts the point as: its device, or for a field device of
        its own (a detector zone on an input module) the point itself."""
        return self.id if self.field_device else self.device


class Unbindable(Exception):
    """The subject lacks what the condition needs: no binding."""


States = Mapping[str, PointState]


class Plan:
    """A condition with its numbers resolved: `build` makes one subject's node tree."""

    __slots__ = ()

    def build(self, members: Sequence[PointInfo], states: States) -> Node:
        raise NotImplementedError


def prepare(cond: m.Condition, params: Mapping[str, ParamValue]) -> Plan:
    """The plan of `cond` with these parameters (all that it refers to have a value)."""
    def num(value: float | str) -> float:
        if isinstance(value, str):
            resolved = params[value[1:]]
            assert resolved is not None  # unconfigured bindings are not compiled
            return float(resolved)
        return value

    def plan(cond: m.Condition) -> Plan:
        if isinstance(cond, m.All):
            return _All(tuple(plan(c) for c in cond.all))
        if isinstance(cond, m.AnyOf):
            return _Any(tuple(plan(c) for c in cond.any))
        if isinstance(cond, m.AtLeast):
            spec = cond.at_least
            count = max(1, round(num(spec.count)))
            if spec.of is not None:
                return _AtLeastOf(count, tuple(plan(c) for c in spec.of))
            assert spec.each is not None
            return _AtLeastEach(count, plan(spec.each), spec.distinct == "device")
        quantities = frozenset(cond.quantity) if cond.quantity is not None else None
        if isinstance(cond, m.Compare):
            return _compare(cond, quantities, num)
        if isinstance(cond, m.Stale):
            return _PerPoint(quantities, partial(StaleLeaf, max_age=num(cond.stale),
                                                 include_offline=cond.include_offline))
        if isinstance(cond, m.Flatline):
            return _PerPoint(quantities, partial(FlatLeaf, window=num(cond.flatline.window),
                                                 epsilon=num(cond.flatline.epsilon)))
        return _PerPoint(quantities, partial(InvalidLeaf, duration=num(cond.invalid_for)))

    return plan(cond)


class Compiler:
    """Compiles one rule's condition for one subject, with its resolved parameters."""

    def __init__(self, params: Mapping[str, ParamValue], states: States) -> None:
        self.params = params
        self.states = states

    def compile(self, cond: m.Condition, members: Sequence[PointInfo]) -> Node:
        return prepare(cond, self.params).build(members, self.states)


# --- combinators --------------------------------------------------------------------------------

def _some(plans: Sequence[Plan], members: Sequence[PointInfo], states: States) -> list[Node]:
    out = []
    for plan in plans:
        try:
            out.append(plan.build(members, states))
        except Unbindable:
            continue
    return out


class _All(Plan):
    __slots__ = ("children",)

    def __init__(self, children: tuple[Plan, ...]) -> None:
        self.children = children

    def build(self, members: Sequence[PointInfo], states: States) -> Node:
        return AllNode([c.build(members, states) for c in self.children])


class _Any(Plan):
    __slots__ = ("children",)

    def __init__(self, children: tuple[Plan, ...]) -> None:
        self.children = children

    def build(self, members: Sequence[PointInfo], states: States) -> Node:
        children = _some(self.children, members, states)
        if not children:
            raise Unbindable
        return children[0] if len(children) == 1 else AnyNode(children)


class _AtLeastOf(Plan):
    __slots__ = ("children", "count")

    def __init__(self, count: int, children: tuple[Plan, ...]) -> None:
        self.count, self.children = count, children

    def build(self, members: Sequence[PointInfo], states: States) -> Node:
        children = _some(self.children, members, states)
        if len(children) < self.count:
            raise Unbindable
        return AtLeastNode(children, self.count)


class _AtLeastEach(Plan):
    __slots__ = ("by_device", "count", "each")

    def __init__(self, count: int, each: Plan, by_device: bool) -> None:
        self.count, self.each, self.by_device = count, each, by_device

    def build(self, members: Sequence[PointInfo], states: States) -> Node:
        nodes: list[Node] = []
        groups: list[str] = []
        for info in members:
            try:
                nodes.append(self.each.build([info], states))
            except Unbindable:
                continue
            groups.append(info.source if self.by_device else info.id)
        if len(set(groups)) < self.count:
            raise Unbindable
        return AtLeastNode(nodes, self.count, groups)


# --- leaves -------------------------------------------------------------------------------------

class _Leaf(Plan):
    """A leaf over the subject's points of its quantities (all of them: None)."""

    __slots__ = ("quantities",)

    def __init__(self, quantities: frozenset[str] | None) -> None:
        self.quantities = quantities

    def chosen(self, members: Sequence[PointInfo]) -> Sequence[PointInfo]:
        quantities = self.quantities
        chosen = members if quantities is None else [
            i for i in members if i.quantity in quantities]
        if not chosen:
            raise Unbindable
        return chosen


class _PerPoint(_Leaf):
    """A sensor-health leaf (stale, flat-line, invalid) per chosen point; any of them."""

    __slots__ = ("leaf",)

    def __init__(self, quantities: frozenset[str] | None, leaf: Callable[[PointState], Node]
                 ) -> None:
        super().__init__(quantities)
        self.leaf = leaf

    def build(self, members: Sequence[PointInfo], states: States) -> Node:
        leaf = self.leaf
        leaves = [leaf(states[i.id]) for i in self.chosen(members)]
        return leaves[0] if len(leaves) == 1 else AnyNode(leaves)


ACCEPTED_KEPT = 64
"""Accepted-value sets an equals plan keeps (one per enum of its points); then it restarts."""


class _Equals(_Leaf):
    __slots__ = ("accepted", "off_delay", "on_delay", "wanted")

    def __init__(self, quantities: frozenset[str] | None, on_delay: float, off_delay: float,
                 wanted: tuple[bool | int | float | str, ...]) -> None:
        super().__init__(quantities)
        self.on_delay, self.off_delay, self.wanted = on_delay, off_delay, wanted
        self.accepted: dict[tuple[tuple[int, str], ...] | None, frozenset[object]] = {}
        """Per enum (by content): one set for the plan's leaves, not one a leaf (~200 B)."""

    def build(self, members: Sequence[PointInfo], states: States) -> Node:
        chosen = self.chosen(members)
        return EqualsLeaf([states[i.id] for i in chosen],
                          [self._accepted(i.enum) for i in chosen],
                          Debounce(self.on_delay, self.off_delay))

    def _accepted(self, enum: dict[int, str] | None) -> frozenset[object]:
        key = None if enum is None else tuple(enum.items())
        if (found := self.accepted.get(key)) is None:
            if len(self.accepted) >= ACCEPTED_KEPT:
                self.accepted.clear()
            found = self.accepted[key] = accepted_values(self.wanted, enum)
        return found


SignalMaker = Callable[[Sequence[PointInfo], list[PointState], Pick], Signal]
"""Makes a compare leaf's signal for the chosen points (raises Unbindable)."""


TestMaker = Callable[[], tuple[Test, Pick]]
"""A compare leaf's hysteresis test and its signal's key: one test for every leaf of the plan
(a leaf judges with its own latch: `Test.judge`)."""


class _Compare(_Leaf):
    __slots__ = ("off_delay", "on_delay", "signal", "test")

    def __init__(self, quantities: frozenset[str] | None, on_delay: float, off_delay: float,
                 test: TestMaker, signal: SignalMaker) -> None:
        super().__init__(quantities)
        self.on_delay, self.off_delay = on_delay, off_delay
        self.test, self.signal = test, signal

    def build(self, members: Sequence[PointInfo], states: States) -> Node:
        chosen = self.chosen(members)
        point_states = [states[i.id] for i in chosen]
        debounce = Debounce(self.on_delay, self.off_delay)
        test, key = self.test()
        return CompareLeaf(self.signal(chosen, point_states, key), test, debounce,
                           point_states)


def _compare(cond: m.Compare, quantities: frozenset[str] | None,
             num: Callable[[float | str], float]) -> Plan:
    on_delay, off_delay = num(cond.on_delay), num(cond.off_delay)
    if cond.equals is not None or cond.in_ is not None:
        wanted = (cond.equals,) if cond.equals is not None else (cond.in_ or ())
        return _Equals(quantities, on_delay, off_delay, wanted)
    deadband = num(cond.deadband)
    above = cond.above if cond.above is not None else cond.at_or_above
    below = cond.below if cond.below is not None else cond.at_or_below
    if above is not None:
        test = _above(num(above), deadband, cond.at_or_above is not None)
    elif below is not None:
        test = _below(num(below), deadband, cond.at_or_below is not None)
    else:
        assert cond.outside is not None
        test = _outside(num(cond.outside[0]), num(cond.outside[1]), deadband)
    return _Compare(quantities, on_delay, off_delay, test, _signal(cond.signal, num))


def _shared(make: Callable[[], tuple[Test, Pick]]) -> TestMaker:
    """`make` called once, at the first leaf (so an invalid test raises where it did)."""
    made: list[tuple[Test, Pick]] = []

    def shared() -> tuple[Test, Pick]:
        if not made:
            made.append(make())
        return made[0]
    return shared


def _above(limit: float, deadband: float, inclusive: bool) -> TestMaker:
    return _shared(lambda: (Above(limit, deadband, inclusive), rising))


def _below(limit: float, deadband: float, inclusive: bool) -> TestMaker:
    return _shared(lambda: (Below(limit, deadband, inclusive), falling))


def _outside(low: float, high: float, deadband: float) -> TestMaker:
    def make() -> tuple[Test, Pick]:
        outside = Outside(low, high, deadband)  # ValueError if low > high, as it was
        return outside, outside.excursion  # `excursion` reads only the limits
    return _shared(make)


def _signal(spec: m.Signal, num: Callable[[float | str], float]) -> SignalMaker:
    """What makes the signal `spec` names, its numbers resolved."""
    def need(count: int, make: SignalMaker) -> SignalMaker:
        def checked(infos: Sequence[PointInfo], states: list[PointState], key: Pick
                    ) -> Signal:
            if len(states) < count:
                raise Unbindable
            return make(infos, states, key)
        return checked

    if spec == "value":
        return lambda infos, states, key: ValueSignal(states, key)
    if spec == "mean":
        return lambda infos, states, key: GroupSignal(states, mean_of, 1, monotone=True)
    if spec == "spread":
        return need(2, lambda infos, states, key: GroupSignal(states, spread_of, 2))
    if spec == "unbalance":
        return need(2, lambda infos, states, key: GroupSignal(states, unbalance_of,
                                                              len(states)))
    if spec == "dew_point":
        return _dew_point
    # --- issue 11 (detection depth): rate span/noise guard and group differences -----------
    if isinstance(spec, m.RateSignal):
        rate = spec.rate
        window, per, confidence = num(rate.window), num(rate.per), num(rate.confidence)
        min_span = None if rate.min_span is None else num(rate.min_span)
        return lambda infos, states, key: RateSignal(
            states, window, per, rate.min_samples, key, rate.absolute, min_span=min_span,
            confidence=confidence)
    if isinstance(spec, m.ExcessSignal) or spec == "outlier":
        def different(infos: Sequence[PointInfo], states: list[PointState], key: Pick
                      ) -> Signal:
            found = group_difference(spec, [i.quantity for i in infos], states)
            if found is None:
                raise Unbindable
            return found
        return different
    # --- end issue 11 ----------------------------------------------------------------------
    assert isinstance(spec, m.LoadSignal)
    rating = num(spec.load_pct.rating)

    def load(values: list[float]) -> float | None:
        return load_pct(values, rating)
    return lambda infos, states, key: GroupSignal(states, load, 1, monotone=True)


def _dew_point(infos: Sequence[PointInfo], states: list[PointState], key: Pick) -> Signal:
    temperature = [s for i, s in zip(infos, states, strict=True)
                   if i.quantity == "temperature"]
    humidity = [s for i, s in zip(infos, states, strict=True)
                if i.quantity == "relative_humidity"]
    if not temperature or not humidity:
        raise Unbindable
    return DewPointSignal(temperature, humidity, key)
