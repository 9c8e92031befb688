"""The condition vocabulary: hysteresis, delays, windows, derived values, unknown handling."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.field.sample import Quality
from gateway.rules.conditions import (
    Above,
    Below,
    Debounce,
    DewPointSignal,
    FlatTracker,
    Outside,
    PointState,
    ValueSignal,
    dew_point,
    load_pct,
    unbalance,
)
from gateway.rules.nodes import (
    AllNode,
    AnyNode,
    AtLeastNode,
    CompareLeaf,
    EqualsLeaf,
    FlatLeaf,
    InvalidLeaf,
    StaleLeaf,
    accepted_values,
)
from gateway.rules.rate import RateWindow

values = st.floats(min_value=-1000, max_value=1000, allow_nan=False)


# --- hysteresis ------------------------------------------------------------------------------


def test_above_with_deadband_clears_only_past_the_band() -> None:
    test = Above(25.0, deadband=2.0)
    assert [test.step(v) for v in (24, 25, 25.1, 24, 23.5, 23.1, 23.0, 22.9, 24.9, 25.5)] == [
        False, False, True, True, True, True, False, False, False, True]


def test_at_or_above_includes_the_limit() -> None:
    assert Above(300, inclusive=True).step(300)
    assert not Above(300).step(300)
    assert Below(2.5, inclusive=True).step(2.5)
    assert not Below(2.5).step(2.5)


def test_below_and_outside_mirror_above() -> None:
    below = Below(2.5, deadband=0.1)
    assert [below.step(v) for v in (2.6, 2.4, 2.55, 2.61)] == [False, True, True, False]
    outside = Outside(18, 27, deadband=0.5)
    assert [outside.step(v) for v in (20, 27.2, 26.8, 26.4, 17.9, 18.3, 18.6)] == [
        False, True, True, False, True, True, False]


@pytest.mark.slow
@settings(max_examples=300)
@given(limit=values, deadband=st.floats(min_value=0.01, max_value=50),
       start_active=st.booleans(), fractions=st.lists(
           st.floats(min_value=0.001, max_value=0.999), min_size=1, max_size=50))
def test_above_never_toggles_inside_the_band(limit: float, deadband: float,
                                             start_active: bool, fractions: list[float]) -> None:
    test = Above(limit, deadband)
    test.step(limit + deadband if start_active else limit - 2 * deadband)
    state = test.active
    assert state is start_active
    for fraction in fractions:  # values strictly inside (limit - deadband, limit)
        assert test.step(limit - deadband * fraction) is state


@pytest.mark.slow
@settings(max_examples=300)
@given(low=values, width=st.floats(min_value=1, max_value=100),
       deadband=st.floats(min_value=0.01, max_value=0.5), seq=st.lists(
           st.floats(min_value=0.001, max_value=0.999), min_size=1, max_size=50),
       start_active=st.booleans())
def test_outside_never_toggles_inside_either_band(low: float, width: float, deadband: float,
                                                  seq: list[float], start_active: bool) -> None:
    high = low + width
    test = Outside(low, high, deadband)
    test.step(high + 1 if start_active else (low + high) / 2)
    state = test.active
    for index, fraction in enumerate(seq):
        value = (low + deadband * fraction) if index % 2 else (high - deadband * fraction)
        assert test.step(value) is state


@given(st.lists(values, max_size=60), values, st.floats(min_value=0, max_value=10))
def test_above_activates_exactly_when_past_the_limit_from_normal(
        seq: list[float], limit: float, deadband: float) -> None:
    test = Above(limit, deadband)
    for value in seq:
        was = test.active
        now = test.step(value)
        if not was:
            assert now == (value > limit)
        else:
            assert now == (value > limit - deadband)


@given(st.sampled_from(["above", "above=", "below", "below=", "outside"]), values,
       st.floats(min_value=0, max_value=10), st.lists(values, max_size=40))
def test_judge_is_step_with_the_latch_given_and_keeps_no_state(
        kind: str, limit: float, deadband: float, seq: list[float]) -> None:
    def make() -> Above | Below | Outside:
        if kind == "outside":
            return Outside(limit - 5, limit + 5, deadband)
        return (Above if kind.startswith("above") else Below)(limit, deadband,
                                                               kind.endswith("="))
    stepped, judged = make(), make()
    latch = False
    for value in [*seq, math.nan, math.inf, -math.inf]:
        was = stepped.active
        assert was is latch
        latch = judged.judge(value, latch)
        assert stepped.step(value) is latch
        assert judged.active is False  # judge leaves the test as it was


def test_compare_leaves_sharing_a_test_keep_their_own_latches() -> None:
    a, b = PointState("d.a", "d", 0.0), PointState("d.b", "d", 0.0)
    test = Above(50.0, 10.0)
    leaf_a = CompareLeaf(ValueSignal([a], lambda v: v), test, Debounce())
    leaf_b = CompareLeaf(ValueSignal([b], lambda v: v), test, Debounce())
    a.update(60.0, Quality.GOOD, 1, 1.0)
    b.update(45.0, Quality.GOOD, 1, 1.0)
    assert leaf_a.eval(1.0) and not leaf_b.eval(1.0)
    a.update(45.0, Quality.GOOD, 2, 2.0)  # inside the deadband: a stays active
    assert leaf_a.eval(2.0) and not leaf_b.eval(2.0)
    b.update(55.0, Quality.GOOD, 3, 3.0)
    a.update(39.0, Quality.GOOD, 3, 3.0)
    assert not leaf_a.eval(3.0) and leaf_b.eval(3.0)
    b.update(41.0, Quality.GOOD, 4, 4.0)  # b's own latch holds it
    assert leaf_b.eval(4.0) and not leaf_a.eval(4.0)


# --- delays ----------------------------------------------------------------------------------

steps = st.lists(st.tuples(st.one_of(st.none(), st.booleans()),
                           st.floats(min_value=0.0, max_value=5.0)), max_size=80)


@pytest.mark.slow
@settings(max_examples=300)
@given(steps, st.floats(min_value=0, max_value=20), st.floats(min_value=0, max_value=20))
def test_on_delay_never_activates_before_continuous_truth(
        seq: list[tuple[bool | None, float]], on_delay: float, off_delay: float) -> None:
    debounce = Debounce(on_delay, off_delay)
    now = 0.0
    true_since: float | None = None
    false_since: float | None = None
    for raw, dt in seq:
        now += dt
        was = debounce.active
        true_since = (true_since if true_since is not None else now) if raw is True else None
        false_since = (false_since if false_since is not None else now) \
            if raw is False else None
        active = debounce.step(raw, now)
        if active and not was:
            assert true_since is not None and now - true_since >= on_delay
        if was and not active:
            assert false_since is not None and now - false_since >= off_delay
        if raw is None:
            assert active is was  # unknown keeps the state


def test_on_and_off_delay() -> None:
    debounce = Debounce(on_delay=10, off_delay=5)
    assert not debounce.step(True, 0)
    assert not debounce.step(True, 9.9)
    assert debounce.step(True, 10)
    assert debounce.step(False, 11)
    assert debounce.step(False, 15.9)
    assert not debounce.step(False, 16)
    # an interruption restarts the on-delay
    assert not debounce.step(True, 20)
    assert not debounce.step(False, 25)
    assert not debounce.step(True, 26)
    assert not debounce.step(True, 35)
    assert debounce.step(True, 36)


# --- windows ---------------------------------------------------------------------------------


def test_rate_window_least_squares_slope_per_minute() -> None:
    window = RateWindow(window=60, per=60, min_samples=3)
    for t in range(0, 61, 5):
        window.add(float(t), 20.0 + 0.1 * t)  # 6 °C/min
    rate = window.rate(60.0)
    assert rate == pytest.approx(6.0)
    assert window.rate(200.0) is None  # every sample aged out


def test_rate_window_is_bounded_and_thins_fast_samples() -> None:
    window = RateWindow(window=60)
    for i in range(100_000):
        window.add(i * 0.01, float(i))
    assert len(window.samples) <= 241
    assert window.rate(1000.0) == pytest.approx(6000.0, rel=1e-6)


def test_flat_tracker_restarts_when_the_range_exceeds_epsilon() -> None:
    flat = FlatTracker(epsilon=0.05)
    flat.add(0, 22.0)
    flat.add(100, 22.04)
    assert flat.flat_for(100) == 100
    flat.add(200, 22.2)
    assert flat.flat_for(250) == 50


# --- derived values --------------------------------------------------------------------------


def test_dew_point_magnus() -> None:
    assert dew_point(25.0, 60.0) == pytest.approx(16.69, abs=0.05)
    assert dew_point(20.0, 100.0) == pytest.approx(20.0, abs=0.01)
    assert dew_point(20.0, 0.0) is None


@given(st.floats(min_value=-300, max_value=300),
       st.floats(min_value=0, max_value=200, allow_subnormal=True))
def test_dew_point_of_any_reading_is_a_number_or_none(t: float, rh: float) -> None:
    """No reading raises (a humidity of 5e-324 underflowed to log(0): a ValueError that failed
    every rule's round while it lasted; found by test_signal_reads' hypothesis run)."""
    dp = dew_point(t, rh)
    assert dp is None or (math.isfinite(dp) and dp <= t + 1e-9)
    assert dew_point(0.0, 5e-324) is None


@given(st.floats(min_value=-20, max_value=50), st.floats(min_value=1, max_value=100))
def test_dew_point_never_above_temperature(t: float, rh: float) -> None:
    dp = dew_point(t, rh)
    assert dp is not None and dp <= t + 1e-9


def test_unbalance_and_load() -> None:
    assert unbalance([220.0, 220.0, 220.0]) == 0.0
    assert unbalance([230.0, 220.0, 210.0]) == pytest.approx(10 / 220 * 100)
    assert unbalance([0.0, 0.0, 0.0]) is None
    assert load_pct([40.0, 50.0, 45.0], 63.0) == pytest.approx(50 / 63 * 100)
    assert load_pct([40.0], 0.0) is None


# --- leaves and unknown handling ------------------------------------------------------------


def point(name: str = "d.p", device: str = "d") -> PointState:
    return PointState(name, device, 0.0)


def test_bad_quality_keeps_the_state_and_never_activates() -> None:
    p = point()
    leaf = CompareLeaf(ValueSignal([p], lambda v: v), Above(25), Debounce())
    p.update(30.0, Quality.COMM_ERROR, 1, 1.0)
    assert not leaf.eval(1.0)
    p.update(30.0, Quality.GOOD, 2, 2.0)
    assert leaf.eval(2.0)
    p.update(0.0, Quality.INVALID, 3, 3.0)
    assert leaf.eval(3.0)  # unknown keeps the alarm
    p.update(0.0, Quality.GOOD, 4, 4.0)
    assert not leaf.eval(4.0)


qualities = st.sampled_from(list(Quality))


@pytest.mark.slow
@settings(max_examples=300)
@given(st.lists(st.tuples(st.floats(min_value=0, max_value=100), qualities), max_size=60),
       st.floats(min_value=0, max_value=5))
def test_a_hazard_activates_only_on_a_good_sample(
        seq: list[tuple[float, Quality]], on_delay: float) -> None:
    p = point()
    leaf = CompareLeaf(ValueSignal([p], lambda v: v), Above(50, 5), Debounce(on_delay))
    for index, (value, quality) in enumerate(seq):
        was = leaf.debounce.active
        p.update(value, quality, index, float(index))
        active = leaf.eval(float(index))
        if active and not was:
            assert quality is Quality.GOOD and value > 50
        if quality is not Quality.GOOD:
            assert active is was


def test_equals_with_enum_labels_and_flags() -> None:
    state = point("smoke.state")
    leaf = EqualsLeaf([state], [accepted_values(["pre_alarm"], {0: "normal", 1: "pre_alarm"})],
                      Debounce())
    state.update(0, Quality.GOOD, 1, 1.0)
    assert not leaf.eval(1.0)
    state.update(1, Quality.GOOD, 2, 2.0)
    assert leaf.eval(2.0) and leaf.value == 1
    contact = point("di.leak")
    wet = EqualsLeaf([contact], [accepted_values([True], None)], Debounce())
    contact.update(1, Quality.GOOD, 1, 1.0)  # an integer 1 is not the flag True
    assert not wet.eval(1.0)
    contact.update(True, Quality.GOOD, 2, 2.0)
    assert wet.eval(2.0)


def test_stale_is_suppressed_while_the_device_is_offline() -> None:
    online = point("d.online")
    p = point()
    p.online = online
    leaf = StaleLeaf(p, max_age=60)
    online.update(True, Quality.GOOD, 1, 0.0)
    p.update(1.0, Quality.GOOD, 1, 0.0)
    assert not leaf.eval(59)
    assert leaf.eval(60) and leaf.value == 60
    online.update(False, Quality.GOOD, 2, 61)
    assert not leaf.eval(62)


def test_flatline_and_invalid_leaves() -> None:
    p = point()
    flat = FlatLeaf(p, window=3600, epsilon=0.05)
    for t in range(0, 3601, 60):
        p.update(22.0, Quality.GOOD, t, float(t))
    assert flat.eval(3600.0)
    p.update(22.5, Quality.GOOD, 3601, 3601.0)
    assert not flat.eval(3601.0)
    invalid = InvalidLeaf(p, duration=60)
    p.update(999.0, Quality.INVALID, 3602, 3602.0)
    assert not invalid.eval(3650.0)
    p.update(999.0, Quality.INVALID, 3700, 3700.0)
    assert invalid.eval(3662.0)
    p.update(22.0, Quality.GOOD, 3701, 3701.0)
    assert not invalid.eval(3701.0)


def test_combinators_and_distinct_devices() -> None:
    a, b, c = point("d1.smoke", "d1"), point("d1.flag", "d1"), point("d2.smoke", "d2")
    leaves = [EqualsLeaf([s], [frozenset({True})], Debounce()) for s in (a, b, c)]
    node = AtLeastNode(leaves, 2, ["d1", "d1", "d2"])
    for s in (a, b):
        s.update(True, Quality.GOOD, 1, 1.0)
    c.update(False, Quality.GOOD, 1, 1.0)
    assert not node.eval(1.0)  # two flags of one device are one detector
    c.update(True, Quality.GOOD, 2, 2.0)
    assert node.eval(2.0) and node.value == 2
    assert AnyNode(leaves).eval(3.0)
    c.update(False, Quality.GOOD, 3, 3.0)
    assert not AllNode(leaves).eval(4.0)


def test_dew_point_signal_pairs_members_of_one_device() -> None:
    t1, h1 = point("a.t", "a"), point("a.h", "a")
    t2, h2 = point("b.t", "b"), point("b.h", "b")
    signal = DewPointSignal([t1, t2], [h1, h2], lambda v: v)
    for state, value in ((t1, 25.0), (h1, 60.0), (t2, 20.0), (h2, 40.0)):
        state.update(value, Quality.GOOD, 1, 1.0)
    reading = signal.read(1.0)
    assert reading is not None and math.isclose(reading, dew_point(25.0, 60.0) or 0)
    h1.update(None, Quality.COMM_ERROR, 2, 2.0)
    assert signal.read(2.0) == pytest.approx(dew_point(20.0, 40.0) or 0)


def test_a_dip_below_the_limit_during_the_on_delay_restarts_it() -> None:
    """Found by hypothesis: the deadband must hold only an alarm that is already active."""
    p = point()
    leaf = CompareLeaf(ValueSignal([p], lambda v: v), Above(50, 5), Debounce(on_delay=1.0))
    p.update(51.0, Quality.GOOD, 1, 0.0)
    assert not leaf.eval(0.0)
    p.update(46.0, Quality.GOOD, 2, 1.0)  # inside the deadband, but below the limit
    assert not leaf.eval(1.0)
    p.update(52.0, Quality.GOOD, 3, 1.5)
    assert not leaf.eval(1.5)
    p.update(52.0, Quality.GOOD, 4, 2.6)
    assert leaf.eval(2.6)  # 1.1 s continuously above the limit
    p.update(46.0, Quality.GOOD, 5, 3.0)
    assert leaf.eval(3.0)  # now active: the deadband holds it
    p.update(44.0, Quality.GOOD, 6, 4.0)
    assert not leaf.eval(4.0)
