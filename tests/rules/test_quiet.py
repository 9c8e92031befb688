"""Quiet bands (gateway.rules.quiet): a value inside a binding's band, with the same quality as
its point's previous sample, changes neither the tree's result nor any of its state — so the
engine may leave the binding unevaluated. Checked against the leaves themselves with random
histories: after an evaluation at t0, a twin of the tree that takes the probe sample at
t1 (before the tree's next deadline) and is evaluated then ends in exactly the state the tree
is in, with the same result. The engine-level property (the rounds equal evaluating every
binding at every round) is tests/rules/test_change_driven.py."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.field.sample import Quality
from gateway.rules.conditions import Above, Below, Debounce, Outside, PointState, ValueSignal
from gateway.rules.conditions import Test as LeafTest  # (not a pytest class)
from gateway.rules.nodes import (
    AllNode,
    AnyNode,
    CompareLeaf,
    EqualsLeaf,
    FlatLeaf,
    InvalidLeaf,
    Node,
    StaleLeaf,
)
from gateway.rules.quiet import ANY, NEVER, band_now, normal_side, quiet_band
from gateway.rules.schedule import deadline, survey

QUALITIES = [Quality.GOOD, Quality.GOOD, Quality.GOOD, Quality.INVALID, Quality.COMM_ERROR,
             Quality.STALE]
numbers = st.floats(-120, 120, allow_nan=False) | st.integers(-120, 120)
history = st.lists(st.tuples(numbers | st.none(), st.sampled_from(QUALITIES),
                             st.floats(0, 40)), min_size=1, max_size=12)


def _state(node: Node) -> tuple[object, ...]:
    """Everything an evaluation can change, but the value (not reported while normal)."""
    if isinstance(node, AllNode | AnyNode):
        return tuple(_state(child) for child in node.children)
    debounce: Debounce = node.debounce  # type: ignore[attr-defined]
    # a compare leaf's test latch is its debounce's `active`
    return (debounce.active, debounce.on_since, debounce.off_since)


@st.composite
def leaves(draw: st.DrawFn, point: PointState) -> Node:
    kind = draw(st.sampled_from(["above", "below", "outside"] * 2 + ["invalid", "flat", "stale"]))
    limit = draw(st.floats(-100, 100))
    deadband = draw(st.floats(0, 10))
    debounce = Debounce(draw(st.sampled_from([0.0, 5.0, 30.0])),
                        draw(st.sampled_from([0.0, 5.0, 30.0])))
    if kind == "above":
        return CompareLeaf(ValueSignal([point], float), Above(limit, deadband, draw(
            st.booleans())), debounce)
    if kind == "below":
        return CompareLeaf(ValueSignal([point], float), Below(limit, deadband, draw(
            st.booleans())), debounce)
    if kind == "outside":
        return CompareLeaf(ValueSignal([point], float),
                           Outside(limit - 20, limit + 20, deadband), debounce)
    if kind == "invalid":
        leaf: Node = InvalidLeaf(point, draw(st.sampled_from([0.0, 10.0, 60.0])))
    elif kind == "flat":
        leaf = FlatLeaf(point, draw(st.sampled_from([10.0, 60.0])), draw(st.floats(0, 2)))
    else:
        leaf = StaleLeaf(point, draw(st.sampled_from([10.0, 60.0])))
    leaf.on_delay, leaf.off_delay = debounce.on_delay, debounce.off_delay  # type: ignore[attr-defined]
    return leaf


@st.composite
def trees(draw: st.DrawFn) -> tuple[Node, list[PointState]]:
    a, b = PointState("d.a", "d", 0.0), PointState("d.b", "d", 0.0)
    first = draw(leaves(a))
    shape = draw(st.sampled_from(["leaf", "any", "all"]))
    if shape == "leaf":
        return first, [a]
    second = draw(leaves(b))
    return (AnyNode if shape == "any" else AllNode)([first, second]), [a, b]


def _play(points: list[PointState], steps: list[tuple[object, Quality, float]], node: Node,
          start: float = 0.0) -> float:
    now = start
    for index, (value, quality, dt) in enumerate(steps):
        now += dt
        points[index % len(points)].update(value, quality, 0, now)  # type: ignore[arg-type]
        node.eval(now)
    return now


@settings(max_examples=1500, deadline=None)
@given(trees(), history, numbers, st.sampled_from(["free", "lo", "hi"]),
       st.sampled_from([0.0, 0.0, 1e-12]) | st.floats(0, 2),
       st.sampled_from([0.0]) | st.floats(0, 20), st.integers(0, 1))
def test_a_value_in_the_quiet_band_changes_nothing(
        tree: tuple[Node, list[PointState]], steps: list[tuple[object, Quality, float]],
        free: float, edge: str, offset: float, later: float, which: int) -> None:
    node, points = tree
    band = quiet_band(node)
    assert band is not None
    now = _play(points, steps, node)
    lo, hi = band_now(band)
    probe = (lo + offset if edge == "lo" and math.isfinite(lo) else
             hi - offset if edge == "hi" and math.isfinite(hi) else free)
    if not lo <= probe <= hi:
        return
    last_quality: list[Quality | None] = [None] * len(points)
    for index, (value, quality, _dt) in enumerate(steps):
        # the engine gates a number that follows a number of the same quality
        last_quality[index % len(points)] = None if value is None else quality
    found = survey(node)
    assert found is not None
    due = deadline(found[1], now)
    at = now + later
    if at >= due:
        return  # the deadline evaluates it anyway
    twin = copy.deepcopy((node, points))
    result, before = _result(node), _state(node)
    twin_node, twin_points = twin
    last = last_quality[which % len(points)]
    if last is None:
        return
    twin_points[which % len(points)].update(probe, last, 0, at)
    assert twin_node.eval(at) == result
    assert _state(twin_node) == before


def _result(node: Node) -> bool:
    if isinstance(node, AllNode):
        return all(_result(child) for child in node.children)
    if isinstance(node, AnyNode):
        return any(_result(child) for child in node.children)
    return bool(node.debounce.active)  # type: ignore[attr-defined]


def test_bands_of_the_tests() -> None:
    assert normal_side(Above(50.0)) == (-math.inf, 50.0)
    assert normal_side(Above(50.0, inclusive=True)) == (-math.inf, math.nextafter(50.0, 0))
    assert normal_side(Below(10.0)) == (10.0, math.inf)
    assert normal_side(Below(10.0, inclusive=True)) == (math.nextafter(10.0, 20), math.inf)
    assert normal_side(Outside(180.0, 250.0, 5.0)) == (180.0, 250.0)
    assert normal_side(object()) is None


@given(st.sampled_from(["above", "above=", "below", "below=", "outside"]),
       st.floats(-100, 100), st.floats(0, 10), st.integers(-1, 1))
def test_the_band_ends_exactly_where_the_leaf_would_activate(
        kind: str, limit: float, deadband: float, start: int) -> None:
    """Every finite end of the band keeps the leaf normal; the next float past it does not."""
    tests: dict[str, Callable[[], LeafTest]] = {
        "above": lambda: Above(limit, deadband), "above=": lambda: Above(limit, deadband, True),
        "below": lambda: Below(limit, deadband), "below=": lambda: Below(limit, deadband, True),
        "outside": lambda: Outside(limit - 20, limit + 20, deadband)}
    side = normal_side(tests[kind]())
    assert side is not None
    for end, outward in ((side[0], -math.inf), (side[1], math.inf)):
        if not math.isfinite(end):
            continue
        for value, activates in ((end, False), (math.nextafter(end, outward), True)):
            point = PointState("d.t", "d", 0.0)
            leaf = CompareLeaf(ValueSignal([point], float), tests[kind](), Debounce())
            point.update(limit + 60 * start if kind != "outside" else limit, Quality.GOOD, 0, 1.0)
            leaf.eval(1.0)
            band = quiet_band(leaf)
            assert band is not None
            if band_now(band) == NEVER:
                continue  # it started active
            point.update(value, Quality.GOOD, 0, 2.0)
            assert leaf.eval(2.0) is activates, (kind, value)


def test_an_active_or_pending_leaf_is_never_quiet() -> None:
    point = PointState("d.t", "d", 0.0)
    leaf = CompareLeaf(ValueSignal([point], float), Above(50.0, 2.0), Debounce(10.0, 0.0))
    band = quiet_band(leaf)
    assert band is not None
    point.update(20.0, Quality.GOOD, 0, 1.0)
    leaf.eval(1.0)
    assert band_now(band) == (-math.inf, 50.0)
    point.update(60.0, Quality.GOOD, 0, 2.0)
    assert not leaf.eval(2.0)  # the on-delay runs
    assert band_now(band) == NEVER
    point.update(60.0, Quality.GOOD, 0, 12.0)
    assert leaf.eval(12.0)
    assert band_now(band) == NEVER
    stale = StaleLeaf(point, 30.0)
    stale_band = quiet_band(stale)
    assert stale_band is not None and band_now(stale_band) == ANY


def test_parts_read_otherwise_than_by_one_value_are_never_gated() -> None:
    a, b = PointState("d.a", "d", 0.0), PointState("d.b", "d", 0.0)
    group = CompareLeaf(ValueSignal([a, b], float), Above(50.0), Debounce())
    assert quiet_band(group) is None
    contact = EqualsLeaf([a], [frozenset({True})], Debounce())
    assert quiet_band(AnyNode([contact, StaleLeaf(b, 10.0)])) is None
