"""One rate window at run time (`RateWindow`, re-exported by `gateway.rules.rate`, which says
when a slope is judged and what its noise guard is): the least-squares slope of a point's good
samples over a sliding window, kept incrementally, and `batch_fit`, the fit of samples in one
pass over them (the window's reference, and its path for non-finite values). Pure and
clock-free: every call takes the engine's `now` (monotonic seconds)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from gateway.rules.rate_samples import SampleRing
from gateway.rules.shared import but, shared

MAX_WINDOW_SAMPLES = 240
"""A rate window keeps at most this many samples: faster samples are thinned out."""

PLANNED_SPACING = 1.0
"""A window is made with room for its samples at one a second (the fastest poll of the shipped
sites; a 60 s window: 64 samples, an hour's: all 241); under faster polls its storage grows
once to MAX_WINDOW_SAMPLES + 1 (gateway.rules.rate_samples)."""

DEPARTURE_SLACK = 1.0
"""The most a sample's departure from its window moves to meet an arrival (a window's
`Shape.slack`: one slot, window / MAX_WINDOW_SAMPLES, at most this)."""

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
NEG_SANE = -SANE
"""(`-SANE` in a function is a negation, a new float, at every call.)"""


class Shape:
    """What the windows of one rate rule's parameters have in common: one object for them all
    (gateway.rules.shared), not six fields (and two floats) a window."""

    __slots__ = ("__weakref__", "confidence", "due", "leaves", "min_samples", "min_spacing",
                 "min_span", "per", "size", "slack", "window")

    def __init__(self, window: float, per: float, min_samples: int, min_span: float | None,
                 confidence: float) -> None:
        if window <= 0:
            raise ValueError("a rate window must be longer than 0 s")
        self.window = window
        self.min_span = DEFAULT_MIN_SPAN * window if min_span is None else min(min_span, window)
        self.per = per
        self.confidence = max(0.0, confidence)
        self.min_samples = max(3 if self.confidence else 2, min_samples)
        self.min_spacing = window / MAX_WINDOW_SAMPLES
        self.slack = min(self.min_spacing, DEPARTURE_SLACK)
        """How far a departure moves to meet an arrival. Samples arrive and leave at the
        poll's pace, each departure a few milliseconds before or after an arrival: judged
        at their exact times, every departure would be a round of its own beside an
        arrival's (a quarter of a site's rate evaluations and rounds at 2,000 points @1 s).
        So a window judged after a sample of its own arrived drops the samples older than
        `window - slack`, and one judged with no new sample (at its deadline, or in another
        round) keeps them until they are `window + slack` old (its deadline): a departure
        within one slot of an arrival — the window's resolution in time, it keeps one sample
        a slot — is judged with it, and with no arrival it is judged one slot late at
        most."""
        planned = window / PLANNED_SPACING
        self.size = math.ceil(planned) + 4 if planned < MAX_WINDOW_SAMPLES else None
        """The samples a window's storage is made for (None: its capacity)."""
        self.leaves = self.due = math.nan
        """The last oldest-sample time a window of this shape asked its deadline for, and that
        deadline (gateway.rules.schedule: the windows of one block read hold samples of one
        time, so nearly all of them ask for the same one in turn)."""

    def __copy__(self) -> Shape:
        """A copy (`gateway.rules.shared.but`) that remembers no deadline: its window may be
        another."""
        copied = Shape(self.window, self.per, self.min_samples, self.min_span, self.confidence)
        for name in _SHAPE_FIELDS:  # (made as this one was; every field then as this one's)
            setattr(copied, name, getattr(self, name))
        copied.leaves = copied.due = math.nan
        return copied


_SHAPE_FIELDS = ("confidence", "due", "leaves", "min_samples", "min_spacing", "min_span", "per",
                 "size", "slack", "window")
"""A `Shape`'s fields, named (a class compiled with mypyc has no `__slots__` to walk)."""


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

    __slots__ = ("_bad", "_cache", "_dirty", "_last_t", "_last_v", "_n", "_ops", "_slot", "_sx",
                 "_sxx", "_sxy", "_sy", "_syy", "_t0", "_v0", "due", "leaves", "samples", "shape")

    def __init__(self, window: float, per: float = 60.0, min_samples: int = 3,
                 min_span: float | None = None, confidence: float = 0.0, *,
                 decimal: bool = False) -> None:
        """`decimal`: the values are likely decoded register values, kept as integers while
        they are (`gateway.rules.rate_samples`)."""
        self.shape = shared(Shape, window, per, min_samples, min_span, confidence)
        self.samples = SampleRing(MAX_WINDOW_SAMPLES + 1, self.shape.size, decimal=decimal)
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
        self.leaves = math.nan
        self.due = math.inf
        """(time of the oldest sample, when it leaves the window): gateway.rules.schedule's
        deadline of the window, the same until the oldest sample changes (a window is its own
        timed part)."""
        self._reset()

    # the window's length, as its own (a property, not a `shared.Field`, which mypyc cannot
    # compile: tests/bench/bench_compiled.py); the other shape fields are read from `shape`
    @property
    def window(self) -> float:
        return self.shape.window

    @window.setter
    def window(self, value: float) -> None:
        self.shape = but(self.shape, window=value)

    def _reset(self) -> None:
        """Sums of nothing; the next sample is the origin. (When the sums are rebuilt or the
        window is empty, its storage is narrowed again where it can be.)"""
        self.samples.compact()
        self._n = self._bad = self._ops = 0
        self._sx = self._sy = self._sxx = self._sxy = self._syy = 0.0
        self._t0 = self._v0 = math.nan

    def _include(self, t: float, v: float) -> None:
        if not NEG_SANE < v < SANE:
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
        if not NEG_SANE < v < SANE:
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
        # `_include` and `_exclude` inline (a sample a second into each window): the same
        # operations in the same order, the same sums bit for bit
        ring = self.samples
        n = ring._len
        if n and t < self._last_t:
            return  # out of order: ignore
        if n > 1 and t - self._slot < self.shape.min_spacing:
            # thin out: one sample (the newest) per short slot; the oldest sample stays,
            # so the span a slope is judged on starts with the first sample
            last = self._last_v  # _exclude(self._last_t, last) inline
            if NEG_SANE < last < SANE:
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
            ring.set_last(t, value)
        else:
            if not n:
                self._reset()
            elif n > MAX_WINDOW_SAMPLES:
                self._exclude(*ring.popleft())
            ring.append(t, value)  # grows the ring once under faster polls
            self._slot = t
        if NEG_SANE < value < SANE:
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
        # the slide (`SampleRing.popleft` and `_exclude` inline): a sample leaves each window
        # about once a second
        ring, shape = self.samples, self.shape
        n = ring._len
        if n:  # a departure within `slack` of an arrival is judged with it (`Shape.slack`)
            horizon = now - shape.window + shape.slack if self._dirty \
                else now - (shape.window + shape.slack)
            t = ring.first
            if t < horizon:
                times, values, size, head = ring._t, ring._v, ring._size, ring._head
                q, d = ring._q, ring._d
                t0, v0 = self._t0, self._v0
                while n and t < horizon:
                    v = values[head] / d if d > 0 else values[head]
                    head = 0 if head + 1 == size else head + 1
                    n -= 1
                    after = t + times[head] * q if q else times[head]  # (if n: the next)
                    if NEG_SANE < v < SANE:
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
                    t = after
                ring._head, ring._len, ring.first = head, n, t
                if not n:
                    self._reset()
                self._dirty = True
        if not self._dirty:
            return self._cache
        self._dirty = False
        # the fit of the window's `n` samples, inline
        fitted: tuple[float, float] | None = None
        if n < shape.min_samples or self._last_t - ring.first < shape.min_span:
            fitted = None
        elif self._bad:
            fitted = batch_fit(ring, shape.confidence, shape.per)
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
                if shape.confidence and n > 2:
                    residual = syy - slope * sxy
                    margin = shape.confidence * math.sqrt(
                        (0.0 if residual < 0.0 else residual) / (n - 2) / sxx)  # max(r, 0.0)
                fitted = slope * shape.per, margin * shape.per
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


def batch_fit(samples: Sequence[tuple[float, float]], confidence: float, per: float
              ) -> tuple[float, float] | None:
    """(slope, confidence × standard error) per `per` of these samples in one pass over them,
    times from the first (what `RateWindow` computes incrementally; None: the times do not
    spread). The reference its tests compare with, and its path for non-finite values."""
    n = len(samples)
    t0 = samples[0][0]
    st = sv = stt = stv = 0.0
    for t, v in samples:
        x = t - t0
        st += x
        sv += v
        stt += x * x
        stv += x * v
    sxx = stt - st * st / n
    if sxx <= 1e-12:
        return None
    slope = (stv - st * sv / n) / sxx
    margin = 0.0
    if confidence and n > 2:
        intercept = (sv - slope * st) / n
        residual = 0.0
        for t, v in samples:
            r = v - intercept - slope * (t - t0)
            residual += r * r  # not r ** 2: a float power raises OverflowError (a value
            # above SANE), a product gives inf (an infinite margin: never past a limit)
        margin = confidence * math.sqrt(max(residual, 0.0) / (n - 2) / sxx)
    return slope * per, margin * per
