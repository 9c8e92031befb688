"""Compiling a rule's condition for one subject into a tree of condition nodes
(gateway.rules.nodes), with the subject's resolved parameters baked in as numbers.

`Compiler(params, states).compile(condition, members)` picks each leaf's member points by
quantity, builds its signal (value, mean, spread, unbalance, dew point, rate, group
differences, load) and its test and delays. A subject that lacks what a condition needs (a dew
point without humidity, a coincidence with one detector, a spread of one point) raises
`Unbindable`: the rule is not bound to it. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
    unbalance,
)
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


class Unbindable(Exception):
    """The subject lacks what the condition needs: no binding."""


class Compiler:
    """Compiles one rule's condition for one subject, with its resolved parameters."""

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
                raise Unbindable
            return children[0] if len(children) == 1 else AnyNode(children)
        if isinstance(cond, m.AtLeast):
            return self._at_least(cond.at_least, members)
        chosen = [i for i in members if cond.quantity is None or i.quantity in cond.quantity]
        if not chosen:
            raise Unbindable
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
            except Unbindable:
                continue
        return out

    def _at_least(self, spec: m.AtLeastSpec, members: Sequence[PointInfo]) -> Node:
        count = max(1, round(self.num(spec.count)))
        if spec.of is not None:
            children = self._some(spec.of, members)
            if len(children) < count:
                raise Unbindable
            return AtLeastNode(children, count)
        assert spec.each is not None
        nodes: list[Node] = []
        groups: list[str] = []
        for info in members:
            try:
                nodes.append(self.compile(spec.each, [info]))
            except Unbindable:
                continue
            groups.append(info.device if spec.distinct == "device" else info.id)
        if len(set(groups)) < count:
            raise Unbindable
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
            test, key = Above(self.num(limit), deadband, cond.at_or_above is not None), rising
        elif cond.below is not None or cond.at_or_below is not None:
            limit = cond.below if cond.below is not None else cond.at_or_below
            assert limit is not None
            test, key = Below(self.num(limit), deadband, cond.at_or_below is not None), falling
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
                raise Unbindable
            return GroupSignal(states, spread_of, 2)
        if spec == "unbalance":
            if len(states) < 2:
                raise Unbindable
            return GroupSignal(states, unbalance, len(states))
        if spec == "dew_point":
            temperature = [s for i, s in zip(infos, states, strict=True)
                           if i.quantity == "temperature"]
            humidity = [s for i, s in zip(infos, states, strict=True)
                        if i.quantity == "relative_humidity"]
            if not temperature or not humidity:
                raise Unbindable
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
                raise Unbindable
            return different
        # --- end issue 11 ------------------------------------------------------------------
        assert isinstance(spec, m.LoadSignal)
        rating = self.num(spec.load_pct.rating)
        return GroupSignal(states, lambda values: load_pct(values, rating), 1)
