"""The rate window's compact storage (gateway.rules.rate_samples.SampleRing: a preallocated
ring of two `array('d')`) gives exactly what the deque of `(t, value)` tuples it replaced gave:
the same samples, the same fits bit for bit (the running sums see the same numbers in the same
order), the same thinning, sliding, horizon and carrying, for any stream of samples — times
out of order, bursts faster than the window's slots, gaps longer than the window, values that
are not finite or too large for the sums. The reference is the old class, kept verbatim below.
And the ring's own sequence behaviour against a deque, and that a window's storage is all
allocated when it is made."""

from __future__ import annotations

import math
import re
import tracemalloc
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.rules import rate as rate_module
from gateway.rules import rate_samples as rate_samples_module
from gateway.rules.rate import (
    DEFAULT_MIN_SPAN,
    DEPARTURE_SLACK,
    FAR,
    MAX_WINDOW_SAMPLES,
    REBUILD_OPS,
    SANE,
    RateWindow,
    batch_fit,
)
from gateway.rules.rate_samples import SampleRing, stored_times, stored_values


class DequeWindow:
    """The window as it was before 2026-12-04 (a deque of (t, value) tuples), verbatim but for
    the departure slack of 7 Dec (`fit`)."""

    __slots__ = (
        "_bad",
        "_cache",
        "_dirty",
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
        self.samples: deque[tuple[float, float]] = deque(maxlen=MAX_WINDOW_SAMPLES + 1)
        self._cache: tuple[float, float] | None = None
        """(slope, confidence × standard error), both per `per`; None: not judged."""
        self._dirty = True
        self._slot = -math.inf
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
        samples = self.samples
        if samples:
            last = samples[-1]
            if t < last[0]:
                return  # out of order: ignore
            if len(samples) > 1 and t - self._slot < self.min_spacing:
                # thin out: one sample (the newest) per short slot; the oldest sample stays,
                # so the span a slope is judged on starts with the first sample
                self._exclude(*last)
                samples[-1] = (t, value)
                self._include(t, value)
                self._dirty = True
                return
            if len(samples) > MAX_WINDOW_SAMPLES:
                self._exclude(*samples.popleft())
        else:
            self._reset()
        samples.append((t, value))
        self._include(t, value)
        self._slot = t
        self._dirty = True

    def take(self, other: DequeWindow) -> None:
        """Hold `other`'s samples (a config apply carries a window: gateway.rules.carry)."""
        self.samples.clear()
        self.samples.extend(other.samples)
        self._slot = other._slot
        self._rebuild()
        self._dirty = True

    def fit(self, now: float) -> tuple[float, float] | None:
        """(slope, margin) per `per` at `now`: the fitted slope and `confidence` standard
        errors of it; None while the window cannot be judged."""
        samples = self.samples
        # (since 7 Dec 2026: a departure within a slot of an arrival is judged with it:
        # gateway.rules.rate_window.Shape.slack)
        slack = min(self.min_spacing, DEPARTURE_SLACK)
        horizon = now - self.window + slack if self._dirty else now - (self.window + slack)
        if samples and samples[0][0] < horizon:
            while samples and samples[0][0] < horizon:
                self._exclude(*samples.popleft())
            if not samples:
                self._reset()
            self._dirty = True
        if self._dirty:
            self._dirty = False
            self._cache = self._fit()
        return self._cache

    def rate(self, now: float) -> float | None:
        """The slope shrunk towards zero by the margin, never past zero (the confident end of
        the interval); None while the window cannot be judged."""
        fitted = self.fit(now)
        if fitted is None:
            return None
        slope, margin = fitted
        return math.copysign(max(0.0, abs(slope) - margin), slope)

    def _fit(self) -> tuple[float, float] | None:
        samples = self.samples
        n = len(samples)
        if n < self.min_samples or samples[-1][0] - samples[0][0] < self.min_span:
            return None
        if self._bad:
            return batch_fit(samples, self.confidence, self.per)
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
        if sxx <= 1e-12:
            return None
        sxy = self._sxy - sx * my
        slope = sxy / sxx
        margin = 0.0
        if self.confidence and n > 2:
            residual = syy - slope * sxy
            margin = self.confidence * math.sqrt(max(residual, 0.0) / (n - 2) / sxx)
        return slope * self.per, margin * self.per




def _key(samples: object) -> list[tuple[str, str]]:
    """Samples compared bit for bit (NaN equal to NaN, -0.0 apart from 0.0)."""
    return [(repr(t), repr(v)) for t, v in samples]  # type: ignore[attr-defined]


_NEGATIVE_ZERO = re.compile(r"-0\.0(?![0-9e])")


def _same(a: object, b: object) -> bool:
    """Bit for bit, but for the sign of a zero (a slope of -0.0 is one of 0.0: hypothesis
    once found a window of subnormal values whose ring and deque fits differed only so)."""
    return _NEGATIVE_ZERO.sub("0.0", repr(a)) == _NEGATIVE_ZERO.sub("0.0", repr(b))


def _assert_alike(new: RateWindow, old: DequeWindow, now: float) -> None:
    assert _key(new.samples) == _key(old.samples)
    assert len(new.samples) == len(old.samples) <= MAX_WINDOW_SAMPLES + 1
    got, want = new.fit(now), old.fit(now)
    assert _same(got, want), (got, want)
    assert _same(new.rate(now), old.rate(now))
    assert _key(new.samples) == _key(old.samples)  # after the slide to `now`
    assert (new._n, new._bad, new._ops) == (old._n, old._bad, old._ops)
    assert _same((new._sx, new._sy, new._sxx, new._sxy, new._syy, new._slot),
                 (old._sx, old._sy, old._sxx, old._sxy, old._syy, old._slot))


values = st.one_of(
    st.floats(-100.0, 100.0),
    st.floats(-1e6, 1e6),
    st.sampled_from([0.0, -0.0, 1.5, math.nan, math.inf, -math.inf, SANE, -SANE, 1e200]),
)
gaps = st.one_of(
    st.floats(0.0, 2.0),  # faster than a short window's slots: thinning
    st.floats(0.0, 30.0),
    st.floats(-5.0, 0.0),  # out of order: ignored
    st.floats(500.0, 5000.0),  # longer than many windows: they slide empty
)
operations = st.lists(st.one_of(
    st.tuples(st.just("add"), gaps, values),
    st.tuples(st.just("add"), gaps, values),
    st.tuples(st.just("add"), gaps, values),
    st.tuples(st.just("fit"), st.floats(0.0, 100.0), st.just(0.0)),
    st.tuples(st.just("carry"), st.floats(5.0, 3600.0), st.just(0.0)),
), min_size=1, max_size=700)
shapes = st.tuples(st.floats(5.0, 3600.0), st.sampled_from([60.0, 3600.0]),
                   st.integers(2, 6), st.one_of(st.none(), st.floats(0.0, 600.0)),
                   st.sampled_from([0.0, 2.0, 3.5]))


@settings(max_examples=300, deadline=None)
@given(shape=shapes, ops=operations, start=st.sampled_from([0.0, 1000.0, 1e6, 1.7e9]))
def test_the_ring_window_answers_as_the_deque_window_bit_for_bit(
        shape: tuple[float, float, int, float | None, float],
        ops: list[tuple[str, float, float]], start: float) -> None:
    new, old = RateWindow(*shape), DequeWindow(*shape)
    t = start
    for kind, number, value in ops:
        if kind == "add":
            t += number
            new.add(t, value)
            old.add(t, value)
            _assert_alike(new, old, t)
        elif kind == "fit":
            _assert_alike(new, old, t + number)
        else:  # a config apply carries the windows into ones of another length
            carried_new = RateWindow(number, *shape[1:])
            carried_old = DequeWindow(number, *shape[1:])
            carried_new.take(new)
            carried_old.take(old)
            new, old = carried_new, carried_old
            _assert_alike(new, old, t)


@settings(max_examples=40, deadline=None)
@given(length=st.sampled_from([60.0, 600.0, 3600.0]), dt=st.sampled_from([0.1, 1.0, 5.0]),
       start=st.sampled_from([0.0, 1.7e9]), drift=st.floats(-0.01, 0.01))
def test_a_long_steady_stream_stays_alike(length: float, dt: float, start: float,
                                          drift: float) -> None:
    """Hours of polls: the ring wraps round hundreds of times, the sums are rebuilt on new
    origins many times over, and every fit is still the deque's."""
    new, old = RateWindow(length, 3600.0, 5, None, 2.0), DequeWindow(length, 3600.0, 5, None, 2.0)
    t = start
    for i in range(int(3 * length / dt) + 500):
        t += dt
        value = 20.0 + drift * i + math.sin(i * 0.7) * 0.3
        new.add(t, value)
        old.add(t, value)
        if i % 97 == 0:
            _assert_alike(new, old, t)
    _assert_alike(new, old, t)


ring_ops = st.lists(st.one_of(
    st.tuples(st.just("append"), st.floats(allow_nan=False), st.floats()),
    st.tuples(st.just("popleft"), st.just(0.0), st.just(0.0)),
    st.tuples(st.just("set_last"), st.floats(allow_nan=False), st.floats()),
    st.tuples(st.just("clear"), st.just(0.0), st.just(0.0)),
), max_size=200)


@settings(max_examples=200, deadline=None)
@given(capacity=st.integers(1, 9), size=st.one_of(st.none(), st.integers(-1, 12)),
       ops=ring_ops, other=st.lists(st.tuples(st.floats(allow_nan=False), st.floats()),
                                    max_size=12))
def test_the_ring_is_a_sequence_like_a_bounded_deque(
        capacity: int, size: int | None, ops: list[tuple[str, float, float]],
        other: list[tuple[float, float]]) -> None:
    """Made with room for `size` samples (it grows to `capacity` when it fills up)."""
    ring, ref = SampleRing(capacity, size), deque[tuple[float, float]]()
    for kind, t, v in ops:
        if kind == "append":
            if len(ref) == capacity:
                with pytest.raises(IndexError):
                    ring.append(t, v)
                continue
            ring.append(t, v)
            ref.append((t, v))
        elif kind == "popleft":
            if not ref:
                with pytest.raises(IndexError):
                    ring.popleft()
                continue
            assert _key([ring.popleft()]) == _key([ref.popleft()])
        elif kind == "set_last":
            if not ref:
                with pytest.raises(IndexError):
                    ring.set_last(t, v)
                continue
            ring.set_last(t, v)
            ref[-1] = (t, v)
        else:
            ring.clear()
            ref.clear()
        assert len(ring) == len(ref) and bool(ring) == bool(ref)
        assert len(ref) <= ring.allocated <= capacity
        assert _key(ring) == _key(ref)
        assert _key(ring[:]) == _key(ref) and _key(ring[1:-1]) == _key(list(ref)[1:-1])
        assert _key(zip(ring.times(), ring.values(), strict=True)) == _key(ref)
        times, first, unit, values, divisor = ring.stored()  # a save's copy, read back
        assert _key(zip(stored_times(times, first, unit), stored_values(values, divisor),
                        strict=True)) == _key(ref)
        for index in range(-len(ref) - 2, len(ref) + 2):
            if -len(ref) <= index < len(ref):
                assert _key([ring[index]]) == _key([ref[index]])
            else:
                with pytest.raises(IndexError):
                    ring[index]
        if ref:
            assert repr(ring.first_t()) == repr(ref[0][0])
            assert repr(ring.last_t()) == repr(ref[-1][0])
        else:
            with pytest.raises(IndexError):
                ring.first_t()
    source = SampleRing(len(other) or 1)
    for t, v in other:
        source.append(t, v)
    ring.copy_from(source)
    assert _key(ring) == _key(other[-capacity:] if capacity < len(other) else other)
    assert _key(ring) == _key(deque(other, maxlen=capacity))


def _window_bytes() -> int:
    """What this test and the window's modules hold, traced (not another test's thread still
    running in the same worker: make test, 2026-12-06)."""
    files = (__file__, rate_module.__file__, rate_samples_module.__file__)
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, name) for name in files])
    return sum(stat.size for stat in snapshot.statistics("filename"))


@pytest.mark.parametrize(("length", "poll", "held"), [
    (3600.0, 1.0, MAX_WINDOW_SAMPLES + 1),  # an hour's window: 15 s slots
    # judged at an arrival, a window holds its length less a slot (`Shape.slack`): the sample
    # of exactly a window ago has left
    (60.0, 1.0, 60),  # a minute's window at 1 s polls (the shipped sites' fastest)
    (600.0, 5.0, 120),
])
def test_a_window_allocates_its_storage_when_it_is_made(length: float, poll: float,
                                                        held: int) -> None:
    """Three window lengths of polls, fitted every poll as the engine does: what a window
    holds does not grow after it is made (the deque of tuples grew by 13 KiB as an hour's
    window filled), and it is 16 bytes a sample it can hold at one sample a second."""
    tracemalloc.start()
    try:
        before = _window_bytes()
        window = RateWindow(length, 3600.0, 5, None, 2.0)
        made = _window_bytes()
        t = 0.0
        for _ in range(int(3 * length / poll)):
            t += poll
            window.add(t, 20.0 + 0.001 * t)
            window.fit(t)
        assert window.fit(t) is not None
        assert len(window.samples) == held
        grown = _window_bytes()
    finally:
        tracemalloc.stop()
    room = min(MAX_WINDOW_SAMPLES + 1, int(length) + 4)
    assert window.samples.allocated == room
    assert made - before < 16 * room + 1024
    assert grown - made < 1024  # its sums, origin and cached fit: a few floats


def test_faster_polls_grow_a_window_once_to_its_bound() -> None:
    """10 polls a second into a minute's window: room for 64 samples at first, then once
    for all 241 it may hold (thinned to 0.25 s slots); the fits are the deque's all along."""
    new, old = RateWindow(60.0, 60.0, 3, None, 2.0), DequeWindow(60.0, 60.0, 3, None, 2.0)
    sizes = set()
    for i in range(3000):
        t = i * 0.1
        new.add(t, 20.0 + 0.01 * t + (i % 5) * 0.01)
        old.add(t, 20.0 + 0.01 * t + (i % 5) * 0.01)
        sizes.add(new.samples.allocated)
        if i % 13 == 0:
            _assert_alike(new, old, t)
    assert sizes == {64, MAX_WINDOW_SAMPLES + 1}


def test_the_reference_is_the_batch_fit() -> None:
    """The kept class is the reference it claims to be (its fit is `batch_fit` of what it
    holds), so the property above compares with a working window."""
    old = DequeWindow(600.0, 60.0, 3, 60.0, 2.0)
    for i in range(400):
        old.add(float(i), 0.5 * i + (i % 3) * 0.1)
    fitted, expected = old.fit(400.0), batch_fit(list(old.samples), 2.0, 60.0)
    assert fitted is not None and expected is not None
    assert abs(fitted[0] - expected[0]) < 1e-9 and abs(fitted[1] - expected[1]) < 1e-9
    assert FAR > 1 and REBUILD_OPS > MAX_WINDOW_SAMPLES
