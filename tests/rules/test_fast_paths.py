"""The rules' fast paths give what the general paths give (hypothesis, random streams):

* a compare leaf of one point's own value reads it inline (`CompareLeaf.point`): the same
  result, deciding value, hysteresis latch and delay timers at every step as the same leaf
  reading through its `ValueSignal`, for any test (above, at or above, below, at or below,
  outside; deadband), delays, values (numbers, booleans, text, None) and qualities;
* a compare leaf over a signal (a rate, a group) that is normal with no timer running and not
  past its limit returns without its debounce's step (which would change nothing): the same
  result, deciding value, latch, timers and rate ceiling at every step as the leaf before
  (`ReferenceLeaf`, its `eval` kept verbatim), for rates of one member and of a group (rising,
  falling, absolute, a noise guard or none) and groups (mean: over-range counted; spread);
* the engine's build shares a compiled plan between subjects and engines
  (`gateway.rules.binding`): an engine built again on the same config and packs equals one
  built on a freshly loaded copy of them, binding by binding and node by node.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.clock import ManualClock
from gateway.config.loader import load_gateway_config
from gateway.field.sample import Quality, Value
from gateway.rules import conditions
from gateway.rules.conditions import (
    Above,
    Below,
    Debounce,
    GroupSignal,
    Outside,
    PointState,
    RateSignal,
    Signal,
    ValueSignal,
    mean_of,
    spread_of,
)
from gateway.rules.config import ParameterOverrides, default_rules_dir, load_rule_packs
from gateway.rules.engine import RuleEngine
from gateway.rules.nodes import GOOD, CompareLeaf
from gateway.rules.rate import Pick, falling, rising
from gateway.rules.schedule import timed_parts

REPO = Path(__file__).resolve().parents[2]

VALUES = st.one_of(st.floats(-5.0, 5.0, allow_nan=False), st.integers(-5, 5), st.booleans(),
                   st.just("open"), st.none(), st.sampled_from([float("nan"), 0.0, 1.0]))
QUALITIES = st.sampled_from([Quality.GOOD] * 4 + [Quality.INVALID, Quality.COMM_ERROR])
STEPS = st.lists(st.tuples(VALUES, QUALITIES, st.sampled_from([0.0, 0.1, 0.5, 1.0, 3.0])),
                 min_size=1, max_size=60)


@st.composite
def limit_specs(draw: st.DrawFn) -> tuple[str, tuple[float, ...], bool]:
    kind = draw(st.sampled_from(["above", "below", "outside"]))
    deadband = draw(st.sampled_from([0.0, 0.5, 2.0]))
    if kind == "outside":
        low = draw(st.floats(-3.0, 1.0))
        return kind, (low, low + draw(st.floats(0.0, 3.0)), deadband), False
    return kind, (draw(st.floats(-3.0, 3.0)), deadband), draw(st.booleans())


def leaf(spec: tuple[str, tuple[float, ...], bool], delays: tuple[float, float],
         point: PointState) -> CompareLeaf:
    kind, numbers, inclusive = spec
    test: conditions.Test
    key: Pick
    if kind == "outside":
        low, high, deadband = numbers
        outside = Outside(low, high, deadband)
        test, key = outside, outside.excursion
    else:
        limit, deadband = numbers
        test, key = ((Above(limit, deadband, inclusive), rising) if kind == "above"
                     else (Below(limit, deadband, inclusive), falling))
    return CompareLeaf(ValueSignal([point], key), test, Debounce(*delays), [point])


def state(node: CompareLeaf) -> tuple[object, ...]:
    d = node.debounce
    return (node.value, d.active, d.on_since, d.off_since)  # d.active: the test's latch too


@given(limit_specs(), st.tuples(st.sampled_from([0.0, 0.5, 2.0]), st.sampled_from([0.0, 1.0])),
       STEPS)
def test_inline_point_compare_equals_the_signal_read(
        spec: tuple[str, tuple[float, ...], bool], delays: tuple[float, float],
        steps: list[tuple[Value, Quality, float]]) -> None:
    fast_point, general_point = PointState("p", "d", 0.0), PointState("p", "d", 0.0)
    fast, general = leaf(spec, delays, fast_point), leaf(spec, delays, general_point)
    assert fast.point is fast_point
    general._signal, general.point = general.signal, None  # the general path: ValueSignal.read
    now = 0.0
    for value, quality, step in steps:
        now += step
        for point in (fast_point, general_point):
            point.update(value, quality, 0, now)
        assert fast.eval(now) is general.eval(now)
        assert state(fast) == state(general) or (
            state(fast)[0] != state(fast)[0] and state(general)[0] != state(general)[0]
            and state(fast)[1:] == state(general)[1:])  # NaN is not equal to itself



class ReferenceLeaf(CompareLeaf):
    """`CompareLeaf.eval` over a signal before the early return of a quiet leaf, verbatim."""

    __slots__ = ()

    def eval(self, now: float) -> bool:
        shape = self.shape
        signal = self._signal
        value = signal.read(now)  # type: ignore[union-attr]
        test = shape.test
        latched = self.active
        raw: bool | None = None
        if value is not None:
            self.value = value
            raw = test.judge(value, latched)
            if not raw:
                if isinstance(signal, RateSignal) and signal.ceiling is not None and \
                        test.judge(signal.ceiling, latched):
                    raw = None
                if not raw and self.members and not all(map(GOOD, self.members)):
                    raw = None
        if not raw and shape.saturable:
            saturable: ValueSignal | GroupSignal = self._signal  # type: ignore[assignment]
            for side in (1, -1):
                found = saturable.read_beyond(side)
                if found is not None and test.past(found, side, latched):
                    self.value = found
                    return self.step(True, now)
        return self.step(raw, now)


SIGNALS = st.sampled_from(["rate", "rate_abs", "rate_guard", "mean", "spread"])
READINGS = st.one_of(st.floats(-6.0, 6.0, allow_nan=False), st.integers(-6, 6),
                   st.sampled_from([5.0, -5.0, None, "open", float("nan")]))
"""Readings of members whose valid range is ±2: often beyond it (over- or under-range, which
a monotone group counts when invalid)."""
MEMBER_STEPS = st.lists(st.tuples(st.lists(st.tuples(READINGS, st.sampled_from(
    [Quality.GOOD, Quality.GOOD, Quality.INVALID, Quality.COMM_ERROR])), min_size=2,
                                           max_size=2),
                                  st.sampled_from([0.1, 0.5, 1.0, 3.0])),
                        min_size=1, max_size=60)


def signal_leaf(kind: str, spec: tuple[str, tuple[float, ...], bool],
                delays: tuple[float, float], members: list[PointState], leaf_type: type
                ) -> CompareLeaf:
    probe = leaf(spec, delays, PointState("probe", "d", 0.0))
    test, key = probe.shape.test, probe.signal.key  # type: ignore[attr-defined]
    signal: Signal
    if kind.startswith("rate"):
        signal = RateSignal(members, 4.0, 1.0, 2, key, kind == "rate_abs",
                            confidence=2.0 if kind == "rate_guard" else 0.0)
    elif kind == "mean":
        signal = GroupSignal(members, mean_of, 1, monotone=True)
    else:
        signal = GroupSignal(members, spread_of, 2)
    made: CompareLeaf = leaf_type(signal, test, Debounce(*delays), members)
    return made


@settings(max_examples=300, deadline=None)
@given(SIGNALS, st.integers(1, 2), limit_specs(),
       st.tuples(st.sampled_from([0.0, 0.5, 2.0]), st.sampled_from([0.0, 1.0])), MEMBER_STEPS)
def test_a_quiet_signal_leaf_returns_as_its_step_would(
        kind: str, count: int, spec: tuple[str, tuple[float, ...], bool],
        delays: tuple[float, float], steps: list[tuple[list[tuple[Value, Quality]], float]]
        ) -> None:
    twins = []
    for leaf_type in (CompareLeaf, ReferenceLeaf):
        members = [PointState(f"p{i}", "d", 0.0, -2.0, 2.0) for i in range(count)]
        twins.append((members, signal_leaf(kind, spec, delays, members, leaf_type)))
    now = 0.0
    for readings, step in steps:
        now += step
        for members, _ in twins:
            for member, (value, quality) in zip(members, readings, strict=False):
                member.update(value, quality, 0, now)
        (_, fast), (_, reference) = twins
        assert fast.eval(now) is reference.eval(now)
        got, want = state(fast), state(reference)
        assert got[1:] == want[1:]
        assert repr(got[0]) == repr(want[0])
        if isinstance(fast.signal, RateSignal):
            assert repr(fast.signal.ceiling) == repr(
                reference.signal.ceiling)  # type: ignore[attr-defined]

@pytest.mark.parametrize("site", ["telecom_equipment_room", "datacenter_lithium_room"])
def test_an_engine_built_again_equals_one_built_on_fresh_objects(site: str) -> None:
    path = REPO / "firmware_configs" / f"{site}.yaml"
    engines = []
    loaded, packs = load_gateway_config(path), load_rule_packs(default_rules_dir())
    for fresh in (False, False, True):
        if fresh:
            loaded, packs = load_gateway_config(path), load_rule_packs(default_rules_dir())
        engines.append(RuleEngine(packs, loaded, ManualClock(),
                                  ParameterOverrides.for_site(loaded, packs)))
    first, again, new = engines
    for engine in (again, new):
        assert engine.binding_details() == first.binding_details()
        assert engine.unconfigured() == first.unconfigured()
        assert engine.points() == first.points()
        for mine, theirs in zip(engine._nodes, first._nodes, strict=True):
            assert mine is not theirs and _shape(mine) == _shape(theirs)
        for timed, their_timed in zip(engine._timed, first._timed, strict=True):
            assert len(timed_parts(timed)) == len(timed_parts(their_timed))
        for point_id, entry in engine._intake.points.items():
            their = first._intake.points[point_id]
            assert (entry.readers, entry.gated, entry.every, entry.gap, entry.gap_marks) == (
                their.readers, their.gated, their.every, their.gap, their.gap_marks)


def _shape(node: object) -> object:
    """A node tree as nested tuples: class, numbers, the points it reads (by id)."""
    out: list[object] = [type(node).__name__]
    for cls in type(node).__mro__:
        for name in getattr(cls, "__slots__", ()):
            item = getattr(node, name, None)
            if isinstance(item, PointState):
                out.append(item.id)
            elif isinstance(item, tuple | list):
                out.append(tuple(_shape(i) if not isinstance(i, PointState) else i.id
                                 for i in item))
            elif isinstance(item, int | float | str | bool | None):
                out.append(item)
            elif hasattr(type(item), "__slots__"):
                out.append(_shape(item))
    return tuple(out)
