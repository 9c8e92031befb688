"""The incremental rate fit (gateway.rules.rate.RateWindow: running sums updated as samples
arrive, are thinned out and leave the window) gives the batch least-squares fit of the same
samples (`batch_fit`, one pass over them) within rounding, for any series: long runs that slide
the window many times and re-anchor its sums, times far from zero, constant series, values
that are not finite, windows carried across a config apply. And the rate signal's direct path
for one member (the ends of the interval without a key) reads as its general path."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.field.sample import Quality
from gateway.rules.conditions import PointState
from gateway.rules.rate import (
    REBUILD_OPS,
    Pick,
    RateSignal,
    RateWindow,
    batch_fit,
    falling,
    rising,
)

ULP = 2.0 ** -52


def _expected(window: RateWindow) -> tuple[float, float] | None:
    """What the window should answer for the samples it holds (after `fit` slid it)."""
    samples = list(window.samples)
    shape = window.shape
    if len(samples) < shape.min_samples or samples[-1][0] - samples[0][0] < shape.min_span:
        return None
    return batch_fit(samples, shape.confidence, shape.per)


def _assert_close(window: RateWindow, got: tuple[float, float] | None,
                  magnitude: float) -> None:
    """`got` is the batch fit within rounding: relative to the slopes this window's values
    make, plus what rounding of values up to `magnitude` (the largest the window has had
    since it was made: running sums carry the rounding of samples that have left, until
    their next rebuild) can leave in a slope over the window's span."""
    want = _expected(window)
    if want is None or got is None:
        assert got == want
        return
    samples = window.samples
    values = [v for _, v in samples]
    span = samples[-1][0] - samples[0][0]
    # the scale of a slope in this window, and what the values' own rounding can move it by
    scale = (max(values) - min(values)) / span * window.shape.per
    resolution = (1e5 * ULP * magnitude + 1e-100) / span * window.shape.per
    # the margin is a square root of the residuals' sum of squares, so the rounding those sums
    # carry (of values up to `magnitude`) moves it by about the root of their relative
    # rounding: a steady 0.0 after 256.0 left the window reads a margin of 7e-6 per minute
    margin_resolution = _margin_resolution(magnitude, span, window.shape.per)
    slope, margin = got
    want_slope, want_margin = want
    assert abs(slope - want_slope) <= 1e-6 * (abs(want_slope) + scale) + resolution, (
        got, want)
    assert abs(margin - want_margin) <= 1e-5 * (want_margin + scale) + margin_resolution, (
        got, want)


def _margin_resolution(magnitude: float, span: float, per: float) -> float:
    return (math.sqrt(1e5 * ULP) * magnitude + 1e-100) / span * per


steps = st.lists(st.tuples(st.floats(0.0, 30.0), st.floats(-100.0, 100.0)),
                 min_size=1, max_size=400)


@settings(max_examples=150, deadline=None)
@given(steps=steps,
       start=st.sampled_from([0.0, 1000.0, 1e6, 1.7e9]),
       base=st.floats(-1e4, 1e4),
       length=st.floats(5.0, 3600.0),
       confidence=st.sampled_from([0.0, 2.0, 3.5]),
       per=st.sampled_from([60.0, 3600.0]),
       span_share=st.floats(0.01, 1.0))
def test_the_incremental_fit_equals_the_batch_fit_after_every_sample(
        steps: list[tuple[float, float]], start: float, base: float, length: float,
        confidence: float, per: float, span_share: float) -> None:
    window = RateWindow(length, per, 3, max(1.0, span_share * length), confidence)
    t = start
    magnitude = 0.0
    for dt, value in steps:
        t += dt
        window.add(t, base + value)
        magnitude = max(magnitude, abs(base + value))
        _assert_close(window, window.fit(t), magnitude)


@settings(max_examples=40, deadline=None)
@given(seed_steps=st.lists(st.tuples(st.floats(0.1, 3.0), st.floats(-5.0, 5.0)),
                           min_size=5, max_size=40),
       repeats=st.integers(10, 60),
       start=st.sampled_from([0.0, 1.7e9]),
       slope=st.floats(-1.0, 1.0),
       base=st.floats(-500.0, 500.0))
def test_many_slides_and_re_anchors_stay_within_rounding(
        seed_steps: list[tuple[float, float]], repeats: int, start: float, slope: float,
        base: float) -> None:
    """Thousands of samples through a short window: it slides and empties of its oldest
    samples all the time, and its sums are rebuilt on a new origin many times over."""
    window = RateWindow(20.0, 60.0, 3, 5.0, 2.0)
    t = start
    count = 0
    magnitude = 0.0
    for _ in range(repeats):
        for dt, noise in seed_steps:
            t += dt
            value = base + slope * (t - start) + noise
            window.add(t, value)
            magnitude = max(magnitude, abs(value))
            count += 1
            if count % 7 == 0:
                _assert_close(window, window.fit(t), magnitude)
    _assert_close(window, window.fit(t), magnitude)
    assert count < REBUILD_OPS or window._ops < REBUILD_OPS + 2 * len(seed_steps) * repeats


@settings(max_examples=60, deadline=None)
@given(value=st.floats(-1e6, 1e6), count=st.integers(3, 600),
       dt=st.floats(0.05, 20.0), start=st.sampled_from([0.0, 1.7e9]),
       before=st.lists(st.floats(-1e3, 1e3), max_size=20))
def test_a_constant_series_has_no_slope_and_no_margin(
        value: float, count: int, dt: float, start: float, before: list[float]) -> None:
    """Whatever came before it (other values, now out of the window), a steady value reads a
    zero slope once it fills the window, and a margin no larger than what the rounding the
    running sums carry of the earlier values leaves (`_margin_resolution`; found by
    hypothesis on 4 Dec 2026: value 0.0 after 0.0, 256.0, 3.67 read a margin of 7e-6)."""
    window = RateWindow(60.0, 60.0, 3, 10.0, 2.0)
    t = start
    for earlier in before:
        t += dt
        window.add(t, earlier)
    t += 61.0  # the earlier values leave the window
    for _ in range(count):
        t += dt
        window.add(t, value)
    got = window.fit(t)
    magnitude = max([abs(value), *map(abs, before)])
    _assert_close(window, got, magnitude)
    if got is not None:
        slope, margin = got
        assert abs(slope) <= (1e5 * ULP * magnitude + 1e-100) / 10.0 * 60.0
        assert margin <= _margin_resolution(magnitude, 10.0, 60.0)


def test_a_value_that_is_not_finite_is_fitted_from_the_samples_and_leaves_no_trace() -> None:
    window = RateWindow(60.0, 60.0, 3, 10.0, 2.0)
    for t in range(0, 60, 2):
        window.add(float(t), 20.0 + 0.1 * t)
    window.add(60.0, math.inf)
    assert repr(window.fit(60.0)) == repr(_expected(window))  # the batch fit's, nan and all
    for t in range(62, 200, 2):  # the inf leaves the window
        window.add(float(t), 20.0 + 0.1 * t)
    fitted = window.fit(198.0)
    assert fitted is not None and fitted[0] == pytest.approx(6.0, rel=1e-9)
    _assert_close(window, fitted, 40.0)


@settings(max_examples=60, deadline=None)
@given(steps=steps, cut=st.integers(0, 400))
def test_a_carried_window_fits_like_the_one_it_came_from(
        steps: list[tuple[float, float]], cut: int) -> None:
    old = RateWindow(300.0, 3600.0, 5, 30.0, 2.0)
    new = RateWindow(300.0, 3600.0, 5, 30.0, 2.0)
    t = 1.7e9
    for index, (dt, value) in enumerate(steps):
        t += dt
        old.add(t, value)
        if index == cut:
            new.take(old)
    new.take(old)
    assert list(new.samples) == list(old.samples)
    _assert_close(new, new.fit(t), 100.0)
    t += 1.0
    old.add(t, 1.0)
    new.add(t, 1.0)
    old.fit(t)
    new.fit(t)
    assert list(new.samples) == list(old.samples)
    _assert_close(new, new.fit(t), 100.0)


@settings(max_examples=100, deadline=None)
@given(steps=steps,
       absolute=st.booleans(),
       confidence=st.sampled_from([0.0, 2.0]),
       lower_limit=st.booleans(),
       bad=st.lists(st.integers(0, 399), max_size=5))
def test_one_member_with_a_monotonic_key_reads_as_the_general_path(
        steps: list[tuple[float, float]], absolute: bool, confidence: float,
        lower_limit: bool, bad: list[int]) -> None:
    """`RateSignal.read` takes the ends of the interval directly for one member and the
    compiler's `rising` / `falling` keys; the same function under another name takes the
    general path (the calmest and most alarming end by key): both read the same value and
    ceiling, including while the member is bad and with non-finite values."""
    key = falling if lower_limit else rising
    general: Pick = (lambda v: -v) if lower_limit else (lambda v: v)
    direct_state = PointState("p", "d", 0.0)
    general_state = PointState("p", "d", 0.0)
    direct = RateSignal([direct_state], 120.0, 60.0, 3, key, absolute, min_span=10.0,
                        confidence=confidence)
    slow = RateSignal([general_state], 120.0, 60.0, 3, general, absolute, min_span=10.0,
                      confidence=confidence)
    assert direct.order and not slow.order
    t = 1.7e9
    for index, (dt, value) in enumerate(steps):
        t += dt
        sample = math.inf if index in bad and index % 2 else value
        quality = Quality.COMM_ERROR if index in bad and not index % 2 else Quality.GOOD
        for state in (direct_state, general_state):
            state.update(sample, quality, int(t * 1e9), t)
        assert repr((direct.read(t), direct.ceiling)) == repr((slow.read(t), slow.ceiling))
