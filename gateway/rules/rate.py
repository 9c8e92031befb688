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
  confidence 0 both ends are the plain slope.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from gateway.rules.rate_samples import SampleRing
from gateway.rules.rate_samples import batch_fit as batch_fit

if TYPE_CHECKING:
    from gateway.rules.conditions import PointState

Pick = Callable[[float], float]
"""How to rank values: the member with the highest key is the worst (most alarming)."""

MAX_WINDOW_SAMPLES = 240
"""A rate window keeps at most this many samples: faster samples are thinned out."""

PLANNED_SPACING = 1.0
"""A window is made with room for its samples at one a second (the fastest poll of the shipped
sites; a 60 s window: 64 samples, an hour's: all 241); under faster polls its storage grows
once to MAX_WINDOW_SAMPLES + 1 (gateway.rules.rate_samples)."""

DEFAULT_MIN_SPAN = 0.25
"""Without a `min_span`, a slope is judged once its samples span a quarter of the window."""

REBUILD_OPS = 2 * (MAX_WINDOW_SAMPLES + 1)
"""A window's running sums are recomputed from its samples after this many updates…"""
FAR = 16.0
"""…or once the mean of its times or values lies further from the origin than this many
times their spread (Σ(x − x̄)² and Σ(y − ȳ)²; at most 1× right after a rebuild, since the
origin is one of the samples): the cancellation in Σx² − (Σx)²/n then stays within
≈ 4n + 1 roundings of the spread."""

SANE = 1e150
"""Sample values of this magnitude or more (or NaN) are fitted from the samples: their
squares would overflow the running sums."""


class RateWindow:
    """Least-squares slope of the good samples of one point over a sliding window (see the
    module docstring for when it is judged and the noise guard).

    Incremental: the window keeps the running sums of its samples (n, Σx, Σy, Σx², Σxy, Σy²,
    with x and y measured from an origin sample so the sums stay small and precise); a sample
    that arrives, is replaced (thinning) or leaves the window updates them, so a fit costs the
    same for 3 samples as for 240. The sums are recomputed from the samples, on the oldest
    sample as the new origin, every `REBUILD_OPS` updates (rounding never accumulates), when
    the origin has drifted `FAR` from the samples (precision) and whenever the window
    empties. While a sample that is not a finite number of sane magnitude
    is in the window, the slope is computed from the samples (`batch_fit`) as before."""

    __slots__ = (
        "_bad",
        "_cache",
        "_dirty",
        "_last_t",
        "_last_v",
        "_n",
        "_ops",
        "_slot",
        "_sx",
        "_sxx",
        "_sxy",
        "_sy",
        "_syy",
        "_t0",
        "_v0",
        "confidence",
        "min_samples",
        "min_spacing",
        "min_span",
        "per",
        "samples",
        "window",
    )

    def __init__(self, window: float, per: float = 60.0, min_samples: int = 3,
                 min_span: float | None = None, confidence: float = 0.0) -> None:
        if window <= 0:
            raise ValueError("a rate window must be longer than 0 s")
        self.window = window
        self.min_span = DEFAULT_MIN_SPAN * window if min_span is None else min(min_span, window)
        self.per = per
        self.confidence = max(0.0, confidence)
        self.min_samples = max(3 if self.confidence else 2, min_samples)
        self.min_spacing = window / MAX_WINDOW_SAMPLES
        planned = window / PLANNED_SPACING
        self.samples = SampleRing(MAX_WINDOW_SAMPLES + 1, math.ceil(planned) + 4
                                  if planned < MAX_WINDOW_SAMPLES else None)
        """The window's samples (t, value), oldest first; at most MAX_WINDOW_SAMPLES + 1, in
        storage allocated when it is made (`gateway.rules.rate_samples`, `PLANNED_SPACING`).
        Read only: change them through `add`, `fit` and `take`."""
        self._cache: tuple[float, float] | None = None
        """(slope, confidence × standard error), both per `per`; None: not judged."""
        self._dirty = True
        self._slot = -math.inf
        self._last_t = self._last_v = math.nan
        """The newest sample (while there is one): read at every sample, kept out of the ring
        (an index into it is a method call)."""
        self._reset()

    def _reset(self) -> None:
        """Sums of nothing; the next sample is the origin."""
        self._n = self._bad = self._ops = 0
        self._sx = self._sy = self._sxx = self._sxy = self._syy = 0.0
        self._t0 = self._v0 = math.nan

    def _include(self, t: float, v: float) -> None:
        if not -SANE < v < SANE:
            self._bad += 1
            return
        if self._t0 != self._t0:  # no origin yet (NaN)
            self._t0, self._v0 = t, v
        x, y = t - self._t0, v - self._v0
        self._n += 1
        self._sx += x
        self._sy += y
        self._sxx += x * x
        self._sxy += x * y
        self._syy += y * y
        self._ops += 1

    def _exclude(self, t: float, v: float) -> None:
        if not -SANE < v < SANE:
            self._bad -= 1
            return
        x, y = t - self._t0, v - self._v0
        self._n -= 1
        self._sx -= x
        self._sy -= y
        self._sxx -= x * x
        self._sxy -= x * y
        self._syy -= y * y
        self._ops += 1

    def _rebuild(self) -> None:
        """The sums afresh from the samples, the oldest one the origin."""
        self._reset()
        for t, v in self.samples:
            self._include(t, v)
        self._ops = 0

    def add(self, t: float, value: float) -> None:
        # `_include`, `_exclude` and the ring's `append` and `set_last` inline (a sample a second
        # into each window): the same operations in the same order, the same sums bit for bit
        ring = self.samples
        n = ring._len
        if n and t < self._last_t:
            return  # out of order: ignore
        if n > 1 and t - self._slot < self.min_spacing:
            # thin out: one sample (the newest) per short slot; the oldest sample stays,
            # so the span a slope is judged on starts with the first sample
            last = self._last_v  # _exclude(self._last_t, last) and ring.set_last inline
            if -SANE < last < SANE:
                x, y = self._last_t - self._t0, last - self._v0
                self._n -= 1
                self._sx -= x
                self._sy -= y
                self._sxx -= x * x
                self._sxy -= x * y
                self._syy -= y * y
                self._ops += 1
            else:
                self._bad -= 1
            slot = ring._head + n - 1
            if slot >= ring._size:
                slot -= ring._size
            ring._t[slot] = t
            ring._v[slot] = value
        else:
            if not n:
                self._reset()
            elif n > MAX_WINDOW_SAMPLES:
                self._exclude(*ring.popleft())
                n -= 1
            size = ring._size
            if n < size:
                slot = ring._head + n
                if slot >= size:
                    slot -= size
                ring._t[slot] = t
                ring._v[slot] = value
                ring._len = n + 1
            else:
                ring.append(t, value)  # grows the ring once (or raises, as it did)
            self._slot = t
        if -SANE < value < SANE:
            t0 = self._t0
            if t0 != t0:  # no origin yet (NaN)
                self._t0 = t0 = t
                self._v0 = value
            x, y = t - t0, value - self._v0
            self._n += 1
            self._sx += x
            self._sy += y
            self._sxx += x * x
            self._sxy += x * y
            self._syy += y * y
            self._ops += 1
        else:
            self._bad += 1
        self._last_t, self._last_v = t, value
        self._dirty = True

    def take(self, other: RateWindow) -> None:
        """Hold `other`'s samples (a config apply carries a window: gateway.rules.carry)."""
        self.samples.copy_from(other.samples)
        self._last_t, self._last_v = self.samples[-1] if self.samples else (math.nan, math.nan)
        self._slot = other._slot
        self._rebuild()
        self._dirty = True

    def fit(self, now: float) -> tuple[float, float] | None:
        """(slope, margin) per `per` at `now`: the fitted slope and `confidence` standard
        errors of it; None while the window cannot be judged."""
        # the slide (`SampleRing.popleft` and `_exclude`) inline: a sample leaves each
        # window about once a second
        ring = self.samples
        n = ring._len
        if n:
            times, head = ring._t, ring._head
            horizon = now - self.window
            if times[head] < horizon:
                values, size = ring._v, ring._size
                t0, v0 = self._t0, self._v0
                while n and times[head] < horizon:
                    t, v = times[head], values[head]
                    head = 0 if head + 1 == size else head + 1
                    n -= 1
                    if -SANE < v < SANE:
                        x, y = t - t0, v - v0
                        self._n -= 1
                        self._sx -= x
                        self._sy -= y
                        self._sxx -= x * x
                        self._sxy -= x * y
                        self._syy -= y * y
                        self._ops += 1
                    else:
                        self._bad -= 1
                ring._head, ring._len = head, n
                if not n:
                    self._reset()
                self._dirty = True
        if not self._dirty:
            return self._cache
        self._dirty = False
        # the fit of the window's `n` samples, inline
        fitted: tuple[float, float] | None = None
        if n < self.min_samples or self._last_t - ring._t[ring._head] < self.min_span:
            fitted = None
        elif self._bad:
            fitted = batch_fit(ring, self.confidence, self.per)
        else:
            sx, sy = self._sx, self._sy
            mx, my = sx / n, sy / n
            sxx, syy = self._sxx - sx * mx, self._syy - sy * my
            if self._ops and (self._ops >= REBUILD_OPS or mx * mx > FAR * sxx
                              or my * my > FAR * syy):
                # the origin is far from the samples (left the window long ago) or rounding
                # has had many updates to build up: sums afresh on the oldest sample
                self._rebuild()
                sx, sy = self._sx, self._sy
                mx, my = sx / n, sy / n
                sxx, syy = self._sxx - sx * mx, self._syy - sy * my
            if not sxx <= 1e-12:  # (NaN included)
                sxy = self._sxy - sx * my
                slope = sxy / sxx
                margin = 0.0
                if self.confidence and n > 2:
                    residual = syy - slope * sxy
                    margin = self.confidence * math.sqrt(
                        (0.0 if residual < 0.0 else residual) / (n - 2) / sxx)  # max(r, 0.0)
                fitted = slope * self.per, margin * self.per
        self._cache = fitted
        return fitted

    def rate(self, now: float) -> float | None:
        """The slope shrunk towards zero by the margin, never past zero (the confident end of
        the interval); None while the window cannot be judged."""
        fitted = self.fit(now)
        if fitted is None:
            return None
        slope, margin = fitted
        return math.copysign(max(0.0, abs(slope) - margin), slope)


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

    __slots__ = ("absolute", "ceiling", "key", "members", "order", "single", "windows")

    def __init__(self, members: Sequence[PointState], window: float, per: float,
                 min_samples: int, key: Pick, absolute: bool = False, *,
                 min_span: float | None = None, confidence: float = 0.0) -> None:
        self.members = tuple(members)
        self.absolute = absolute
        windows = []
        for member in self.members:
            rate = RateWindow(window, per, min_samples, min_span, confidence)
            member.rates += (rate,)
            windows.append(rate)
        self.windows = tuple(windows)
        self.key = key
        self.ceiling: float | None = None
        self.order = 1 if key is rising else -1 if key is falling else 0
        """1 / -1: `key` is `rising` / `falling`, so the calm end of an interval is its low /
        high end (what `read` finds by `key` in general)."""
        self.single = self.windows[0] if len(self.members) == 1 else None
        """The window of the one member (its point: `members[0]`); None for a group."""

    def read(self, now: float) -> float | None:
        window = self.single
        if window is not None and self.order:  # one member, monotonic key: the ends directly
            fitted = window.fit(now)
            if fitted is None or not self.members[0].good:
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
