"""Rate of change at run time: the least-squares slope of a point over a sliding window
(`RateWindow`) and the signal rate rules read (`RateSignal`). Pure and clock-free like
`gateway.rules.conditions`: every call takes the engine's `now` (monotonic seconds).

When a slope is judged (the minimum detection time of a rate rule):

* the good samples in the window must span at least `min_span` seconds (default a quarter of
  the window) and number at least `min_samples` — from a start, an apply or a gap in the data a
  rule sees a trend that soon, not only once its window is half full. After a restart the
  windows are warm-started from the samples the gateway saved (`gateway.rules.warm`), so a
  trend that began before the restart is judged at the first poll;
* the noise guard is two-sided: the slope comes with an uncertainty interval of ±`confidence`
  standard errors (from the fit's own residuals; of the magnitude, never below zero, for an
  `absolute` rate). The signal's value is the interval's calmest value for the rule's test
  (for a rising-rate limit: the slope less its margin) — a rule is past its limit only when the
  whole interval is; `ceiling` is its most alarming value. While the interval straddles the
  limit, the condition node answers unknown (`gateway.rules.nodes.CompareLeaf`): it keeps its
  last state, and says "not exceeded" only once the interval is confidently below. A short or
  noisy window right after a start therefore neither raises nor returns an alarm. With
  confidence 0 both ends are the plain slope;
* a sample leaves its window with the arrival within one slot (window / 240, at most
  `DEPARTURE_SLACK`) of its departure, before or after it, else one slot after its departure:
  judged after an arrival a window holds `window` less a slot, judged with no new sample up
  to `window` and a slot (`Shape.slack`). On a steady poll departures and arrivals are one
  round, not two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from gateway.rules.rate_window import DEFAULT_MIN_SPAN as DEFAULT_MIN_SPAN
from gateway.rules.rate_window import DEPARTURE_SLACK as DEPARTURE_SLACK
from gateway.rules.rate_window import FAR as FAR
from gateway.rules.rate_window import MAX_WINDOW_SAMPLES as MAX_WINDOW_SAMPLES
from gateway.rules.rate_window import PLANNED_SPACING as PLANNED_SPACING
from gateway.rules.rate_window import REBUILD_OPS as REBUILD_OPS
from gateway.rules.rate_window import SANE as SANE
from gateway.rules.rate_window import RateWindow as RateWindow
from gateway.rules.rate_window import batch_fit as batch_fit

if TYPE_CHECKING:
    from gateway.rules.conditions import PointState

Pick = Callable[[float], float]
"""How to rank values: the member with the highest key is the worst (most alarming)."""


def interval(fitted: tuple[float, float], absolute: bool) -> tuple[float, float]:
    """(low, high) of a fit's interval: slope ± margin; of its magnitude when `absolute`."""
    slope, margin = fitted
    if absolute:
        slope = abs(slope)
        return max(0.0, slope - margin), slope + margin
    return slope - margin, slope + margin


def rising(value: float) -> float:
    """The key of a test against an upper limit: higher is worse."""
    return value


def falling(value: float) -> float:
    """The key of a test against a lower limit: lower is worse."""
    return -value


class RateSignal:
    """Each member's slope over its window; for a group the worst by `key`. `read` gives the
    confident value (the worst of the members' calmest interval values), and leaves the worst
    of their most alarming values in `ceiling` (None when no member could be judged)."""

    __slots__ = ("_members", "_windows", "absolute", "ceiling", "key", "order", "point", "single")

    def __init__(self, members: Sequence[PointState], window: float, per: float,
                 min_samples: int, key: Pick, absolute: bool = False, *,
                 min_span: float | None = None, confidence: float = 0.0) -> None:
        self.absolute = absolute
        windows = []
        for member in members:
            rate = RateWindow(window, per, min_samples, min_span, confidence, decimal=True)
            member.rates += (rate,)
            windows.append(rate)
        one = len(windows) == 1
        self._members = () if one else tuple(members)
        self._windows = () if one else tuple(windows)
        """A group's members and windows (one member's: `point` and `single`, no tuples)."""
        self.point = members[0] if one else None
        self.key = key
        self.ceiling: float | None = None
        self.order = 1 if key is rising else -1 if key is falling else 0
        """1 / -1: `key` is `rising` / `falling`, so the calm end of an interval is its low /
        high end (what `read` finds by `key` in general)."""
        self.single = windows[0] if one else None
        """The window of the one member (its point: `point`); None for a group."""

    @property
    def members(self) -> tuple[PointState, ...]:
        return self._members if self.point is None else (self.point,)

    @property
    def windows(self) -> tuple[RateWindow, ...]:
        return self._windows if self.single is None else (self.single,)

    def read(self, now: float) -> float | None:
        window = self.single
        if window is not None and self.order:  # one member, monotonic key: the ends directly
            fitted = window.fit(now)
            if fitted is None or not self.point.good:  # type: ignore[union-attr]
                self.ceiling = None
                return None
            slope, margin = fitted
            if slope == slope and margin == margin:  # NaN: the general path's comparisons
                if self.absolute:
                    slope = abs(slope)
                    low = slope - margin
                    if not low > 0.0:
                        low = 0.0  # max(0.0, slope - margin)
                else:
                    low = slope - margin
                high = slope + margin
                if self.order > 0:
                    self.ceiling = high
                    return low
                self.ceiling = low
                return high
        best: float | None = None
        worst: float | None = None
        key = self.key
        for member, window in zip(self.members, self.windows, strict=True):
            fitted = window.fit(now)
            if fitted is None or not member.good:
                continue
            low, high = interval(fitted, self.absolute)
            # the calmest and the most alarming value of the interval by the test's key
            # (zero, if inside, for a band around it: `outside`)
            calm = min((low, high, min(max(0.0, low), high)), key=key)
            far = high if key(high) >= key(low) else low
            if best is None or key(calm) > key(best):
                best = calm
            if worst is None or key(far) > key(worst):
                worst = far
        self.ceiling = worst
        return best
