"""Over- and under-range readings in the hazard rules (fail-safe, as gas and current monitors
treat over-range): a finite number above its point's valid maximum (quality invalid, value
kept) counts as past an "above" limit it exceeds — and below the minimum as past a "below"
limit — with hysteresis and on/off delays run as for a good reading; anything else invalid
(NaN, an infinity, text, a reading on the wrong side, one not past the limit) stays unknown.

* `PointState.beyond` over random values and qualities;
* a compare leaf over random streams equals a reference leaf fed the stream as the rules
  should read it: an out-of-range reading past the limit on its side as a good reading, any
  other invalid sample as a missing one (hypothesis; above, below, outside; delays);
* the engine on the shipped sites: an H2 detector at 120 %LEL (valid 0–100), a 130 A current
  on a 32 A breaker (valid 0–120 A: the load signal), 3.5 A residual current (valid 0–3000 mA),
  while `sensor_health.implausible` still reports the invalid reading; NaN and infinity never
  fire.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alarms.types import Evaluation
from gateway.clock import ManualClock
from gateway.field.sample import Quality, Sample, Value
from gateway.rules.conditions import (
    Above,
    Below,
    Debounce,
    GroupSignal,
    Outside,
    PointState,
    ValueSignal,
    load_pct,
    spread_of,
)
from gateway.rules.config import ParameterOverrides
from gateway.rules.engine import RuleEngine
from gateway.rules.hysteresis import Test as Judged
from gateway.rules.nodes import CompareLeaf
from gateway.rules.rate import Pick, falling, rising
from tests import shipped

LOW, HIGH = 0.0, 100.0
"""The valid range of the points below."""

READINGS = st.one_of(
    st.floats(-300.0, 300.0, allow_nan=False), st.integers(-300, 300),
    st.sampled_from([math.nan, math.inf, -math.inf, sys.float_info.max, 10 ** 400, -10 ** 400,
                     True, False, "over", None, HIGH, LOW, 100.5, -0.5]))
QUALITIES = st.sampled_from([Quality.GOOD, Quality.INVALID, Quality.INVALID,
                             Quality.COMM_ERROR, Quality.STALE])


def _field_like(sample: tuple[Value, Quality, float] | tuple[Value, Quality]) -> bool:
    """Not a good number beyond ±max float (the field never makes one: no rule reads it)."""
    value, quality = sample[0], sample[1]
    return not (quality is Quality.GOOD and isinstance(value, int)
                and abs(value) > sys.float_info.max)


@settings(max_examples=300, deadline=None)
@given(value=READINGS, quality=QUALITIES)
def test_beyond_is_a_finite_invalid_number_outside_the_valid_range(value: Value,
                                                                   quality: Quality) -> None:
    state = PointState("d.p", "d", 0.0, LOW, HIGH)
    state.update(value, quality, 0, 1.0)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    finite = number and -sys.float_info.max <= value <= sys.float_info.max  # type: ignore[operator]
    invalid = quality is Quality.INVALID
    want = 0
    if invalid and finite and value > HIGH:  # type: ignore[operator]
        want = 1
    elif invalid and finite and value < LOW:  # type: ignore[operator]
        want = -1
    assert state.beyond() == want
    assert PointState("d.p", "d", 0.0).beyond() == 0  # no sample, no range


def test_a_point_without_a_valid_range_is_never_beyond_it() -> None:
    state = PointState("d.p", "d", 0.0)
    for value in (1e300, -1e300, math.inf, math.nan, 5):
        state.update(value, Quality.INVALID, 0, 1.0)
        assert state.beyond() == 0


# --- the leaf against a reference fed the stream as it should be read -----------------------

@st.composite
def limit_tests(draw: st.DrawFn) -> tuple[str, tuple[float, ...], bool]:
    kind = draw(st.sampled_from(["above", "below", "outside"]))
    deadband = draw(st.sampled_from([0.0, 2.0, 10.0]))
    if kind == "outside":
        low = draw(st.sampled_from([-50.0, 5.0, 20.0]))
        return kind, (low, low + draw(st.sampled_from([10.0, 60.0, 200.0])), deadband), False
    # limits inside the valid range and beyond it (an over-range reading may not exceed those)
    return kind, (draw(st.sampled_from([-20.0, 10.0, 25.0, 90.0, 150.0])), deadband), \
        draw(st.booleans())


def make_test(spec: tuple[str, tuple[float, ...], bool]) -> tuple[Judged, Pick]:
    kind, numbers, inclusive = spec
    if kind == "outside":
        low, high, deadband = numbers
        outside = Outside(low, high, deadband)
        return outside, outside.excursion
    limit, deadband = numbers
    if kind == "above":
        return Above(limit, deadband, inclusive), rising
    return Below(limit, deadband, inclusive), falling


def as_read(test: Judged, value: Value, quality: Quality, active: bool) -> tuple[Value, Quality]:
    """The sample as the rules should read it (the specification, written out)."""
    if quality is not Quality.INVALID:
        return value, quality
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, Quality.COMM_ERROR
    if not -sys.float_info.max <= value <= sys.float_info.max:  # NaN, infinities, huge
        return None, Quality.COMM_ERROR
    side = 1 if value > HIGH else -1 if value < LOW else 0
    fv = float(value)
    if isinstance(test, Above):
        past = side > 0 and test.judge(fv, active)
    elif isinstance(test, Below):
        past = side < 0 and test.judge(fv, active)
    else:
        assert isinstance(test, Outside)
        threshold = -test.db if active else 0.0
        past = (side > 0 and fv - test.high > threshold) or (
            side < 0 and test.low - fv > threshold)
    return (fv, Quality.GOOD) if past else (None, Quality.COMM_ERROR)


STREAM = st.lists(st.tuples(READINGS, QUALITIES, st.sampled_from([0.0, 0.5, 1.0, 3.0]))
                  .filter(_field_like), min_size=1, max_size=50)
DELAYS = st.tuples(st.sampled_from([0.0, 1.0, 2.0]), st.sampled_from([0.0, 1.0, 5.0]))


def _check(spec: tuple[str, tuple[float, ...], bool], delays: tuple[float, float],
           stream: list[tuple[Value, Quality, float]], inline: bool) -> None:
    test, key = make_test(spec)
    point = PointState("d.p", "d", 0.0, LOW, HIGH)
    reference_point = PointState("d.p", "d", 0.0)  # no range: it never saturates
    leaf = CompareLeaf(ValueSignal([point], key), test, Debounce(*delays), [point])
    if not inline:  # the general path: ValueSignal.read and read_beyond
        leaf._signal, leaf.point = leaf.signal, None
    reference = CompareLeaf(ValueSignal([reference_point], key), test, Debounce(*delays),
                            [reference_point])
    now = 0.0
    for value, quality, step in stream:
        now += step
        read_value, read_quality = as_read(test, value, quality, reference.active)
        point.update(value, quality, 0, now)
        reference_point.update(read_value, read_quality, 0, now)
        assert leaf.eval(now) is reference.eval(now)
        assert (leaf.on_since, leaf.off_since) == (reference.on_since, reference.off_since)
        if reference.active:
            assert repr(leaf.value) == repr(reference.value)


@settings(max_examples=300, deadline=None)
@given(spec=limit_tests(), delays=DELAYS, stream=STREAM)
def test_a_point_leaf_reads_out_of_range_as_specified(
        spec: tuple[str, tuple[float, ...], bool], delays: tuple[float, float],
        stream: list[tuple[Value, Quality, float]]) -> None:
    _check(spec, delays, stream, inline=True)


@settings(max_examples=200, deadline=None)
@given(spec=limit_tests(), delays=DELAYS, stream=STREAM)
def test_the_signal_path_reads_out_of_range_as_the_inline_one(
        spec: tuple[str, tuple[float, ...], bool], delays: tuple[float, float],
        stream: list[tuple[Value, Quality, float]]) -> None:
    _check(spec, delays, stream, inline=False)


@settings(max_examples=200, deadline=None)
@given(reading=st.floats(-1e6, 1e6, allow_nan=False), limit=st.floats(-200.0, 200.0))
def test_an_out_of_range_reading_never_passes_a_limit_on_the_other_side(reading: float,
                                                                        limit: float) -> None:
    """Over-range never satisfies "below", under-range never "above"; neither is False."""
    point = PointState("d.p", "d", 0.0, LOW, HIGH)
    point.update(reading, Quality.INVALID, 0, 1.0)
    side = point.beyond()
    for test, key in ((Below(limit, 0.0, True), falling), (Above(limit, 0.0, True), rising)):
        leaf = CompareLeaf(ValueSignal([point], key), test, Debounce(), [point])
        active = leaf.eval(1.0)
        wrong_side = side > 0 if isinstance(test, Below) else side < 0
        if side == 0 or wrong_side:
            assert not active and leaf.on_since is None  # unknown: nothing starts
        else:
            assert active is test.judge(reading, False)


def test_on_and_off_delays_run_as_for_a_good_reading() -> None:
    point = PointState("d.p", "d", 0.0, LOW, HIGH)
    leaf = CompareLeaf(ValueSignal([point], rising), Above(25.0, 2.0, True), Debounce(5.0, 3.0),
                       [point])
    point.update(120.0, Quality.INVALID, 0, 0.0)
    assert not leaf.eval(0.0) and leaf.on_since == 0.0  # the on-delay runs
    assert not leaf.eval(4.0)
    point.update(130.0, Quality.INVALID, 0, 5.0)
    assert leaf.eval(5.0) and leaf.value == 130.0
    point.update(10.0, Quality.GOOD, 0, 6.0)
    assert leaf.eval(6.0) and leaf.off_since == 6.0  # a good reading below: the off-delay
    point.update(150.0, Quality.INVALID, 0, 7.0)
    assert leaf.eval(7.0) and leaf.off_since is None  # over-range again: as a good 150
    bad_readings: list[Value] = [math.nan, math.inf, "E1", None, -5.0]
    for bad in bad_readings:  # unknown: held, no timer runs
        point.update(bad, Quality.INVALID, 0, 8.0)
        assert leaf.eval(8.0) and (leaf.on_since, leaf.off_since) == (None, None)
    point.update(0.0, Quality.GOOD, 0, 10.0)
    assert leaf.eval(10.0) and not leaf.eval(13.0)  # the off-delay of a good reading
    for bad in bad_readings:  # never raises an alarm nor starts its on-delay
        point.update(bad, Quality.INVALID, 0, 14.0)
        assert not leaf.eval(14.0) and leaf.on_since is None
    point.update(120.0, Quality.INVALID, 0, 20.0)
    assert not leaf.eval(20.0) and leaf.eval(25.0)


@settings(max_examples=200, deadline=None)
@given(members=st.lists(st.tuples(READINGS, QUALITIES).filter(_field_like), min_size=1,
                        max_size=4),
       side=st.sampled_from([1, -1]))
def test_only_monotone_groups_count_out_of_range_members(
        members: list[tuple[Value, Quality]], side: int) -> None:
    states = []
    for index, (value, quality) in enumerate(members):
        state = PointState(f"d.p{index}", "d", 0.0, LOW, HIGH)
        state.update(value, quality, 0, 1.0)
        states.append(state)
    counted = []  # in member order: good numbers, and readings beyond on `side`
    for state in states:
        if state.number() is not None:
            counted.append(state.number())
        elif state.beyond() == side:
            counted.append(float(state.value))  # type: ignore[arg-type]
    found = any(s.beyond() == side for s in states)
    want_max = max(counted, key=rising) if found else None  # type: ignore[arg-type]
    assert repr(ValueSignal(states, rising).read_beyond(side)) == repr(want_max)
    assert GroupSignal(states, spread_of, 2).read_beyond(side) is None  # not monotone
    load = GroupSignal(states, lambda v: load_pct(v, 32.0), 1, monotone=True)
    want_load = load_pct(counted, 32.0) if found else None  # type: ignore[arg-type]
    assert repr(load.read_beyond(side)) == repr(want_load)


# --- the engine on the shipped sites ----------------------------------------------------------

class Site:
    def __init__(self, name: str) -> None:
        self.clock = ManualClock()
        loaded, packs = shipped.site(name), shipped.packs()
        self.engine = RuleEngine(packs, loaded, self.clock,
                                 ParameterOverrides.for_site(loaded, packs))

    def run(self, seconds: int, values: Mapping[str, Value], quality: Quality = Quality.GOOD
            ) -> dict[tuple[str, str], Evaluation]:
        result: dict[tuple[str, str], Evaluation] = {}
        for _ in range(seconds + 1):
            ts = self.clock.now_ns()
            self.engine.on_samples([Sample(p, v, ts, quality) for p, v in values.items()])
            result = {(e.rule, e.subject): e for e in self.engine.evaluate()}
            self.clock.advance(1.0)
        return result


def test_h2_over_range_raises_the_alarm_and_stays_implausible() -> None:
    site = Site("telecom_equipment_room")
    site.run(3, {"h2-batt-01.h2": 0, "h2-batt-01.online": True})
    result = site.run(5, {"h2-batt-01.h2": 120}, Quality.INVALID)
    alarm = result[("explosion.h2_alarm", "h2-batt-01.h2")]
    assert alarm.active and alarm.value == 120.0 and "exhaust_fan" in alarm.actions
    result = site.run(60, {"h2-batt-01.h2": 120}, Quality.INVALID)
    assert result[("sensor_health.implausible", "h2-batt-01.h2")].active


def test_h2_nan_or_infinity_never_raises_the_alarm() -> None:
    for bad in (math.nan, math.inf, 10 ** 400):
        site = Site("telecom_equipment_room")
        site.run(3, {"h2-batt-01.h2": 0, "h2-batt-01.online": True})
        result = site.run(10, {"h2-batt-01.h2": bad}, Quality.INVALID)
        assert not result[("explosion.h2_alarm", "h2-batt-01.h2")].active


def test_over_range_current_overloads_the_branch_and_residual_current_alarms() -> None:
    site = Site("power_distribution_room")
    currents = {f"meter-ap4.l{n}_current": 10.0 for n in (1, 2, 3)}
    site.run(3, currents | {"rcm-incomer.residual_current_ch1": 120})
    result = site.run(30, {"meter-ap4.l1_current": 130.0,
                           "rcm-incomer.residual_current_ch1": 3500}, Quality.INVALID)
    overload = result[("power.branch_overload", "meter-ap4")]
    assert overload.active and overload.value == 130.0 / 32.0 * 100.0
    assert result[("power.residual_current", "rcm-incomer.residual_current_ch1")].active
