"""Tests with hysteresis: `Above`, `Below`, `Outside` (pure; the condition vocabulary of
`gateway.rules.conditions`, which re-exports them).

A test's `step(value)` keeps its own latch (`active`); `judge(value, active)` is the same
comparison with the latch given and no state kept, so the leaves of one rule and parameter set
share one test (gateway.rules.nodes.CompareLeaf: a leaf's latch is its own held output).

`past(value, side, active)` is `judge` for a reading beyond its point's valid range (quality
invalid, kept as read): `side` +1 above the valid maximum, -1 below the minimum. It is True
only when the reading is past a limit on that side — an over-range reading satisfies an
"above" limit it exceeds, never a "below" one (fail-safe, as gas and current monitors treat
over-range; gateway.rules.nodes).
"""

from __future__ import annotations

from typing import Protocol


class Test(Protocol):
    """A hysteresis test. `step` keeps its own latch (`active`); `judge` is the same test with
    the latch given, and keeps no state: a condition leaf, whose latch is its own held output
    (gateway.rules.nodes.CompareLeaf), shares one test with every leaf of the same limits."""

    active: bool

    def step(self, value: float) -> bool: ...

    def judge(self, value: float, active: bool) -> bool: ...

    def past(self, value: float, side: int, active: bool) -> bool: ...


class Above:
    """Active above `limit` (or at it, `inclusive`); back to normal only once the value is
    below limit − deadband (at or below, for the strict form)."""

    __slots__ = ("active", "clear", "inclusive", "limit")

    def __init__(self, limit: float, deadband: float = 0.0, inclusive: bool = False) -> None:
        self.limit = limit
        self.clear = limit - abs(deadband)
        self.inclusive = inclusive
        self.active = False

    def step(self, value: float) -> bool:
        if self.inclusive:
            self.active = value >= (self.clear if self.active else self.limit)
        else:
            self.active = value > (self.clear if self.active else self.limit)
        return self.active

    def judge(self, value: float, active: bool) -> bool:
        """`step` with latch `active`, no state changed."""
        if self.inclusive:
            return value >= (self.clear if active else self.limit)
        return value > (self.clear if active else self.limit)

    def past(self, value: float, side: int, active: bool) -> bool:
        """`judge` for a reading beyond its valid range on `side`: only above it counts."""
        return side > 0 and self.judge(value, active)


class Below:
    """Mirror of Above: active below `limit`, normal again only above limit + deadband."""

    __slots__ = ("active", "clear", "inclusive", "limit")

    def __init__(self, limit: float, deadband: float = 0.0, inclusive: bool = False) -> None:
        self.limit = limit
        self.clear = limit + abs(deadband)
        self.inclusive = inclusive
        self.active = False

    def step(self, value: float) -> bool:
        if self.inclusive:
            self.active = value <= (self.clear if self.active else self.limit)
        else:
            self.active = value < (self.clear if self.active else self.limit)
        return self.active

    def judge(self, value: float, active: bool) -> bool:
        """`step` with latch `active`, no state changed."""
        if self.inclusive:
            return value <= (self.clear if active else self.limit)
        return value < (self.clear if active else self.limit)

    def past(self, value: float, side: int, active: bool) -> bool:
        """`judge` for a reading beyond its valid range on `side`: only below it counts."""
        return side < 0 and self.judge(value, active)


class Outside:
    """Active below `low` or above `high`; normal again only inside [low + db, high − db]."""

    __slots__ = ("active", "db", "high", "low")

    def __init__(self, low: float, high: float, deadband: float = 0.0) -> None:
        if low > high:
            raise ValueError(f"outside: low {low} is above high {high}")
        self.low, self.high, self.db = low, high, abs(deadband)
        self.active = False

    def excursion(self, value: float) -> float:
        """How far the value is outside the band (negative inside)."""
        below, above = self.low - value, value - self.high
        return above if above > below else below  # max(below, above), NaN included

    def step(self, value: float) -> bool:
        below, above = self.low - value, value - self.high
        self.active = (above if above > below else below) > (-self.db if self.active else 0.0)
        return self.active

    def judge(self, value: float, active: bool) -> bool:
        """`step` with latch `active`, no state changed."""
        below, above = self.low - value, value - self.high
        return (above if above > below else below) > (-self.db if active else 0.0)

    def past(self, value: float, side: int, active: bool) -> bool:
        """`judge` for a reading beyond its valid range on `side`, on that side's limit only
        (above `high` for an over-range reading, below `low` for an under-range one)."""
        if side == 0:
            return False
        beyond = value - self.high if side > 0 else self.low - value
        return beyond > (-self.db if active else 0.0)
