"""When a new value cannot change a binding: its quiet band.

On a busy site almost every value moves at every poll (noise in the last digit), and almost
every binding is normal and far from its limit. Evaluating each such binding at each new value
(gateway.rules.schedule's `CHANGE` input) is a no-op nearly every time: a normal leaf with no
delay running gives the same result and keeps the same state for every value on its side of
the limit. So after each evaluation the engine asks a binding's *quiet band*: the closed
interval [lo, hi] such that a new value inside it — for any point the binding reads, with the
same quality as that point's previous sample — leaves the whole tree's result and state as
they are. Such a sample does not mark the binding; a value outside the band, a quality change,
a non-numeric value, and every timer still do (gateway.rules.engine).

Per leaf, while it is normal with no on-delay running and its hysteresis latch open (anything
else: `NEVER`, no value is quiet):

* `CompareLeaf` over one point's own value: the values on the normal side of the limit —
  `Above(limit)`: ≤ limit (< limit when inclusive); `Below`: the mirror; `Outside(low, high)`:
  [low, high]. A value that is bad, missing or not a number is unknown, which keeps a normal
  leaf normal: quiet too. An invalid reading beyond the point's valid range counts only when
  it is past the limit (gateway.rules.nodes), so outside the normal side: never quiet;
* `InvalidLeaf`, `FlatLeaf`, `StaleLeaf`: every value (`ANY`). What can activate them is
  quality (invalid samples), time (their timers, which the schedule keeps) or, for a flat-line,
  time with values that stay put: a moving value only restarts the flat-line window, which
  makes its timer early, never late (an early evaluation is a no-op and sets the next one);
* anything else (a rate, a group, a dew point, a difference, an `EqualsLeaf`): no band — the
  binding is marked by every change as before.

A combinator's band is the intersection of its leaves' bands: a value inside it is inside the
band of whichever leaf reads its point, so no leaf changes, so neither does the tree. The band
is conservative by construction: it can only make the engine evaluate more than needed, never
less (tests/rules/test_change_driven.py compares the rounds with evaluating every binding at
every round, and tests/rules/test_quiet.py checks each band against its leaf).

Why the value a normal binding shows may be older than the latest sample: the engine reports
a value change only while a binding is active (gateway.rules.engine), so a skipped evaluation
of a normal binding hides nothing anyone is shown.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from gateway.rules.conditions import Above, Below, Outside
from gateway.rules.nodes import (
    AllNode,
    AnyNode,
    AtLeastNode,
    CompareLeaf,
    FlatLeaf,
    InvalidLeaf,
    Node,
    StaleLeaf,
)

INF = math.inf
NEVER: tuple[float, float] = (INF, -INF)
"""No value is quiet: every change marks the binding."""
ANY: tuple[float, float] = (-INF, INF)
"""Every value is quiet (only quality and time can change the binding)."""

Band = Node
"""A tree every part of which has a quiet band (`quiet_band`); `band_now(tree)` is its band
right after it was evaluated. The tree itself: no object is made per binding."""


class _Ungated(Exception):
    """A part whose result a new value may change in any state."""


def quiet_band(node: Node, sides: dict[tuple[float, float], tuple[float, float]] | None = None
               ) -> Band | None:
    """`node` if every part of it has a quiet band (`band_now` gives it), None if a part of
    it is never quiet (the binding is marked by every change). `sides`: equal normal sides
    shared between the compare leaves of the trees given the same dict."""
    try:
        _check(node, {} if sides is None else sides)
    except _Ungated:
        return None
    return node


def _check(node: Node, sides: dict[tuple[float, float], tuple[float, float]]) -> None:
    kind = type(node)
    if kind is AllNode or kind is AnyNode or kind is AtLeastNode:
        for child in node.children:  # type: ignore[attr-defined]
            _check(child, sides)
    elif kind is CompareLeaf:
        leaf: CompareLeaf = node  # type: ignore[assignment]
        if leaf.point is None:  # a rate, a group, a dew point, a difference: not by one value
            raise _Ungated("signal")
        side = normal_side(leaf.test)
        if side is None:
            raise _Ungated(type(leaf.test).__name__)
        leaf.side = sides.setdefault(side, side)
    elif not (kind is InvalidLeaf or kind is FlatLeaf or kind is StaleLeaf):
        raise _Ungated(kind.__name__)


def band_now(band: Band) -> tuple[float, float]:
    """The quiet band of a tree `quiet_band` accepted, right after it was evaluated."""
    return BANDS[type(band)](band)


def _combined(node: AllNode | AnyNode | AtLeastNode) -> tuple[float, float]:
    """The intersection of the children's bands."""
    lo, hi = -INF, INF
    for child in node.children:
        a, b = BANDS[type(child)](child)
        if a > lo:
            lo = a
        if b < hi:
            hi = b
    return (lo, hi) if lo <= hi else NEVER


def _any_value(leaf: InvalidLeaf | FlatLeaf | StaleLeaf) -> tuple[float, float]:
    """Normal, with no on-delay running (an off-delay runs only while active): any value."""
    return ANY if not leaf.active and leaf.on_since is None else NEVER  # a leaf is its debounce


def _compare(leaf: CompareLeaf) -> tuple[float, float]:
    if leaf.active or leaf.on_since is not None:  # its debounce's (and its test's latch)
        return NEVER
    return leaf.side  # type: ignore[return-value]  # set by quiet_band


BANDS: dict[type, Callable[[Any], tuple[float, float]]] = {
    AllNode: _combined, AnyNode: _combined, AtLeastNode: _combined, CompareLeaf: _compare,
    InvalidLeaf: _any_value, FlatLeaf: _any_value, StaleLeaf: _any_value}
"""Node type → its band now (`band_now`, inline in the engine)."""


def normal_side(test: object) -> tuple[float, float] | None:
    """The closed interval of values a hysteresis test with its latch open judges normal;
    None for a test this module does not know."""
    kind = type(test)
    if kind is Above:
        above: Above = test  # type: ignore[assignment]
        limit = above.limit
        return (-INF, math.nextafter(limit, -INF) if above.inclusive else limit)
    if kind is Below:
        below: Below = test  # type: ignore[assignment]
        limit = below.limit
        return (math.nextafter(limit, INF) if below.inclusive else limit, INF)
    if kind is Outside:
        outside: Outside = test  # type: ignore[assignment]
        return (outside.low, outside.high)
    return None
