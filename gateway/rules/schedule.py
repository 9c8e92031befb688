"""When a rule binding must be evaluated again: the engine's change-driven rounds.

A binding's condition tree changes its result — or any state of its nodes — only when
(a) a sample changes something one of its leaves reads, or (b) time passes one of its timers.
Evaluating it at any other moment is a no-op: every leaf is idempotent over unchanged inputs
before its next timer (a debounce with the same raw result keeps its timer, a hysteresis test
fed the same value with its latch following the debounced output gives the same raw result,
a rate window with nothing to drop keeps its fit). So the engine evaluates a binding only when
it is marked by a sample or its deadline has come, and gets what evaluating every binding at
every round would give (tests/rules/test_change_driven.py proves it with random sample
streams and clock steps). This module says, for one compiled tree:

* `survey(node)` walks a tree once and gives its inputs and its timers (None for a tree with
  a node or signal this module does not know: such a binding is evaluated at every round —
  correct for anything, only slower). Its inputs: the points it reads, and which samples of
  each matter —
  `CHANGE`: a sample with another value or quality than the point's previous one;
  `EVERY`: every sample (a rate window takes every good sample, same value or not);
  a gap (`Inputs.gaps`, seconds): a repeated good sample after that long without one (a stale
  leaf can only be stale, and so be cleared by such a sample, after its `max_age`).
  Its timed parts, and `deadline(timed, now)`: after an evaluation, the earliest time at which
  its result can change with no new sample — an on- or off-delay expiring, a stale timeout,
  a flat-line window filled, an invalid-for duration reached, the oldest sample of a rate
  window leaving it. Exact to the float: the first representable time at which the leaf's
  own comparison flips (never later, so no change is missed; `math.inf`: none). Found once
  per binding; a timed leaf is its own timed part (no object per binding), read by its type.

`Schedule` (gateway.rules.agenda) keeps the marks and the deadlines. Pure: no clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

from gateway.records import dataclass, field
from gateway.rules.agenda import Schedule as Schedule
from gateway.rules.conditions import (
    Debounce,
    DewPointSignal,
    GroupSignal,
    PointState,
    Signal,
    ValueSignal,
)
from gateway.rules.differences import ExcessSignal, OutlierSignal
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
)
from gateway.rules.rate import RateSignal, RateWindow

INF = math.inf
_TIMELESS_SIGNALS = (ValueSignal, GroupSignal, DewPointSignal, ExcessSignal, OutlierSignal)
"""Signals whose value depends on their members' latest samples only, not on the time."""


@dataclass(slots=True)
class Inputs:
    """The points a tree reads (by id): `change` — a new value or quality matters; `every` —
    every sample matters; `gaps` — a repeated good sample matters after this many seconds
    without a good one (the smallest such gap per point)."""

    change: set[str] = field(default_factory=set)
    every: set[str] = field(default_factory=set)
    gaps: dict[str, float] = field(default_factory=dict)

    def gap(self, point: str, seconds: float) -> None:
        self.gaps[point] = min(seconds, self.gaps.get(point, INF))


Timed = Any
"""A tree's time-dependent parts (`survey`): a timed leaf (stale, flat-line, invalid-for; a
compare or equals leaf with delays: itself, no object made), a rate window (itself: when its
oldest sample leaves it), or a tuple of several."""


class _Unknown(Exception):
    """A node or signal this module does not know."""


def survey(node: Node) -> tuple[Inputs, Timed | None] | None:
    """What samples can change `node` and its time-dependent parts (see the module
    docstring), in one walk; None: unknown parts. The timed parts are found once per binding,
    and only its timed parts count (a leaf without delays has none; None: no part is timed):
    after an evaluation at `now`, the tree's deadline is `deadline(timed, now)`."""
    found = Inputs()
    timed: list[Timed] = []
    try:
        _walk(node, found, timed)
    except _Unknown:
        return None
    return found, (None if not timed else timed[0] if len(timed) == 1 else tuple(timed))


def timed_parts(timed: Timed | None) -> tuple[Timed, ...]:
    """The timed parts `survey` found, as a tuple (for introspection)."""
    return () if timed is None else timed if type(timed) is tuple else (timed,)


def _walk(node: Node, found: Inputs, timed: list[Timed]) -> None:
    walker = _WALKERS.get(type(node))
    if walker is None:
        kind = next((k for k in _WALKERS if isinstance(node, k)), None)
        if kind is None:
            raise _Unknown(type(node).__name__)
        walker = _WALKERS[kind]
    walker(node, found, timed)


def _children(node: AllNode | AnyNode | AtLeastNode, found: Inputs, timed: list[Timed]
              ) -> None:
    for child in node.children:
        _walk(child, found, timed)


def _debounced(leaf: CompareLeaf | EqualsLeaf, timed: list[Timed]) -> None:
    if leaf.on_delay or leaf.off_delay:
        # without delays no timer is ever left running after a step
        timed.append(leaf)


def _compare(node: CompareLeaf, found: Inputs, timed: list[Timed]) -> None:
    change = found.change
    for member in node.members:
        change.add(member.id)
    if node.point is not None:  # one point's own value (its `signal` would be made to ask)
        change.add(node.point.id)
        _debounced(node, timed)
        return
    signal = node.signal
    if type(signal) is ValueSignal or type(signal) is GroupSignal:  # the common ones, directly
        for member in signal.members:
            change.add(member.id)
    else:
        for member, every in _signal_members(signal):
            change.add(member.id)
            if every:
                found.every.add(member.id)
    _debounced(node, timed)
    if isinstance(signal, RateSignal):
        timed.extend(signal.windows)


def _equals(node: EqualsLeaf, found: Inputs, timed: list[Timed]) -> None:
    found.change.update(m.id for m in node.members)
    _debounced(node, timed)


def _stale(node: StaleLeaf, found: Inputs, timed: list[Timed]) -> None:
    member = node.member
    found.change.add(member.id)
    found.gap(member.id, node.max_age)
    if member.online is not None:  # "offline" is read from the device's online point
        found.change.add(member.online.id)
    timed.append(node)  # its own timer, and its debounce's


def _flat(node: FlatLeaf, found: Inputs, timed: list[Timed]) -> None:
    found.change.add(node.member.id)
    timed.append(node)  # its own timer, and its debounce's


def _invalid(node: InvalidLeaf, found: Inputs, timed: list[Timed]) -> None:
    found.change.add(node.member.id)
    timed.append(node)  # its own timer, and its debounce's


def _signal_members(signal: Signal) -> Iterator[tuple[PointState, bool]]:
    """(member, every sample matters) of a signal."""
    if isinstance(signal, RateSignal):
        for member in signal.members:
            yield member, True
    elif isinstance(signal, DewPointSignal):
        for member in (*signal.temperature, *signal.rh):
            yield member, False
    elif isinstance(signal, ExcessSignal):
        for member in (*signal.members, *signal.references):
            yield member, False
    elif isinstance(signal, ValueSignal | GroupSignal | OutlierSignal):
        for member in signal.members:
            yield member, False
    else:
        raise _Unknown(type(signal).__name__)


# --- deadlines --------------------------------------------------------------------------------

def _elapsed(start: float, length: float) -> float:
    """The first float t with `t - start >= length` (how the leaves and `Debounce` compare):
    start + length, moved by the few ulps rounding may need."""
    t = start + length
    if t - start >= length:
        before = math.nextafter(t, -INF)
        while before - start >= length:
            t, before = before, math.nextafter(before, -INF)
        return t
    while t - start < length:
        t = math.nextafter(t, INF)
    return t


def _after(t0: float, length: float) -> float:
    """The first float t with `t0 < t - length` (when a rate window drops a sample of t0)."""
    t = t0 + length
    if t0 < t - length:
        before = math.nextafter(t, -INF)
        while t0 < before - length:
            t, before = before, math.nextafter(before, -INF)
        return t
    while not t0 < t - length:
        t = math.nextafter(t, INF)
    return t


def _debounce_due(debounce: Debounce) -> float:
    """When a running on- or off-delay expires (`math.inf`: none runs)."""
    if debounce.on_since is not None and not debounce.active:
        return _elapsed(debounce.on_since, debounce.on_delay)
    if debounce.off_since is not None and debounce.active:
        return _elapsed(debounce.off_since, debounce.off_delay)
    return INF


def _next(now: float, own: float, debounce: Debounce) -> float:
    """The earlier of a leaf's own time and its debounce's, of those after `now`."""
    due = own if now < own else INF
    t = _debounce_due(debounce)
    return t if now < t < due else due


def _delays_due(leaf: CompareLeaf | EqualsLeaf, now: float) -> float:
    t = _debounce_due(leaf)
    return t if now < t else INF


def _window_due(window: RateWindow, now: float) -> float:
    """When the window's oldest sample leaves it with no sample of its own arriving first
    (`Shape.slack` after its departure; kept in the window: `RateWindow.due`)."""
    samples = window.samples
    if not samples._len:  # (`len()`: a call)
        return INF
    t0 = samples.first
    if t0 != window.leaves:
        shape = window.shape
        if t0 != shape.leaves:  # asked by another window of the shape already: its answer
            shape.leaves, shape.due = t0, _after(t0, shape.window + shape.slack)
        window.leaves, window.due = t0, shape.due
    when = window.due
    return when if now < when else INF


def _stale_due(leaf: StaleLeaf, now: float) -> float:
    member, shape = leaf.member, leaf.shape
    if not shape.include_offline and member.offline:
        own = INF  # offline: an input, not a timer
    else:
        own = _elapsed(member.last_good_t, shape.max_age)
    return _next(now, own, leaf)  # a leaf is its debounce


def _flat_due(leaf: FlatLeaf, now: float) -> float:
    since = leaf.since  # (the leaf is its tracker)
    own = _elapsed(since, leaf.shape.window) if leaf.member.good and since is not None else INF
    return _next(now, own, leaf)  # a leaf is its debounce


def _invalid_due(leaf: InvalidLeaf, now: float) -> float:
    since = leaf.member.invalid_since
    own = INF if since is None else _elapsed(since, leaf.shape.duration)
    return _next(now, own, leaf)  # a leaf is its debounce


def _many_due(parts: tuple[Timed, ...], now: float) -> float:
    due = INF
    for part in parts:
        t = DUE[type(part)](part, now)
        if t < due:
            due = t
    return due


DUE: dict[type, Callable[[Any, float], float]] = {
    CompareLeaf: _delays_due, EqualsLeaf: _delays_due, StaleLeaf: _stale_due,
    FlatLeaf: _flat_due, InvalidLeaf: _invalid_due, RateWindow: _window_due,
    tuple: _many_due, type(None): lambda _, now: INF}
"""Timed part's type → its deadline after `now` (`deadline`, inline in the engine)."""


def deadline(timed: Timed | None, now: float) -> float:
    """The earliest time after `now` at which the tree of these timed parts (`survey`) can
    change with no new sample, right after it was evaluated at `now` (a time at or before
    `now` has passed already: the leaf judged it in this evaluation); `math.inf`: never."""
    return DUE[type(timed)](timed, now)


_WALKERS: dict[type, Callable[[Any, Inputs, list[Timed]], None]] = {
    AllNode: _children, AnyNode: _children, AtLeastNode: _children, CompareLeaf: _compare,
    EqualsLeaf: _equals, StaleLeaf: _stale, FlatLeaf: _flat, InvalidLeaf: _invalid}
"""Node type → its walk (by exact type: one dict look-up per node)."""
