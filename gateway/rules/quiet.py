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
  leaf normal: quiet too;
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

from gateway.rules.conditions import Above, Below, Debounce, Outside
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

Band = Callable[[], tuple[float, float]]
"""A binding's quiet band now, right after it was evaluated."""


class _Ungated(Exception):
    """A part whose result a new value may change in any state."""


def quiet_band(node: Node) -> Band | None:
    """The band function of a compiled tree; None if a part of it is never quiet (the binding
    is marked by every change)."""
    parts: list[Band] = []
    try:
        _collect(node, parts)
    except _Ungated:
        return None
    if len(parts) == 1:
        return parts[0]
    bands = tuple(parts)

    def band() -> tuple[float, float]:
        lo, hi = -INF, INF
        for part in bands:
            a, b = part()
            if a > lo:
                lo = a
            if b < hi:
                hi = b
        return (lo, hi) if lo <= hi else NEVER
    return band


def _collect(node: Node, parts: list[Band]) -> None:
    kind = type(node)
    if kind is AllNode or kind is AnyNode or kind is AtLeastNode:
        for child in node.children:  # type: ignore[attr-defined]
            _collect(child, parts)
    elif kind is CompareLeaf:
        parts.append(_compare(node))  # type: ignore[arg-type]
    elif kind is InvalidLeaf or kind is FlatLeaf or kind is StaleLeaf:
        parts.append(_any_value(node.debounce))  # type: ignore[attr-defined]
    else:
        raise _Ungated(kind.__name__)


def _idle(debounce: Debounce) -> bool:
    """Normal, with no on-delay running (an off-delay runs only while active)."""
    return not debounce.active and debounce.on_since is None


def _any_value(debounce: Debounce) -> Band:
    def band() -> tuple[float, float]:
        return ANY if _idle(debounce) else NEVER
    return band


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


def _compare(leaf: CompareLeaf) -> Band:
    if leaf.point is None:  # a rate, a group, a dew point, a difference: not by one value
        raise _Ungated("signal")
    test, debounce = leaf.test, leaf.debounce
    side = normal_side(test)
    if side is None:
        raise _Ungated(type(test).__name__)
    quiet = side

    def band() -> tuple[float, float]:
        if test.active or debounce.active or debounce.on_since is not None:
            return NEVER
        return quiet
    return band
