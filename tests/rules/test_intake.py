"""The rule engine's intake (gateway.rules.intake.Intake.take) updates each point as
`PointState.update` does and marks the same bindings as the intake that called it per sample.

The reference is that intake, kept verbatim below (`ReferenceIntake.take`): twin intakes over
twin points — some feeding rate windows and flat-line trackers, some not; bindings reading
them on change, on every sample, after a gap, gated by quiet bands that move — take the same
random batches (numbers, booleans, text, None, NaN; good, invalid and comm-error qualities;
repeated values; times out of order and after the engine's now; points nobody reads). After
every batch the points' states, their windows (samples, running sums, fits) and trackers, the
intake's last values and qualities, and the bindings each schedule has due are the same, bit
for bit.
"""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.field.sample import Quality, Sample, Value
from gateway.rules.conditions import FlatTracker, PointState
from gateway.rules.intake import GOOD, Intake, IntakePoint
from gateway.rules.rate import RateWindow
from gateway.rules.schedule import Inputs, Schedule

POINTS = ("d.a", "d.b", "d.c", "d.d", "d.online")
"""d.a feeds a rate window and a flat-line tracker, d.b two rate windows, d.c a tracker,
d.d and d.online neither."""


class ReferenceIntake(Intake):
    """`Intake.take` as it was before `PointState.update` was inlined into it."""

    def take(self, batch: Iterable[Sample], mono: float, offset: float) -> None:
        points = self.points
        mark, mark_one = self.schedule.mark_many, self.schedule.mark
        lo, hi = self.lo, self.hi
        for sample in batch:
            entry = points.get(sample.point)
            if entry is None:
                continue
            state = entry.state
            value, quality = sample.value, sample.quality
            before, before_quality = entry.value, entry.quality
            entry.value, entry.quality = value, quality
            last_good = state.last_good_t
            t = sample.ts * 1e-9 + offset
            state.update(value, quality, sample.ts, t if t < mono else mono)
            if before_quality is not quality or not (
                    before is value or (type(before) is type(value)
                                        and before == value)):  # another value or quality
                if entry.readers:
                    mark(entry.readers)
                gated = entry.gated
                if gated:
                    kind, was = type(value), type(before)
                    if before_quality is quality and (kind is float or kind is int) and (
                            was is float or was is int):  # a number after a number
                        if not entry.lo <= value <= entry.hi:  # type: ignore[operator]
                            for index in gated:
                                if not lo[index] <= value <= hi[index]:  # type: ignore[operator]
                                    mark_one(index)
                    else:
                        mark(gated)
                continue
            if entry.every:
                mark(entry.every)
            if entry.gap_marks and quality is GOOD and mono - last_good >= entry.gap:
                mark(entry.gap_marks)


Wiring = list[tuple[frozenset[str], frozenset[str], dict[str, float], bool]]
"""Per binding: the points it reads on change, on every sample, after a gap; gated."""


def _make(kind: type[Intake], wiring: Wiring, start: float, own: bool = False
          ) -> tuple[Intake, Schedule, dict[str, PointState]]:
    """`own`: the states are `IntakePoint`s (an engine's: each its own intake entry)."""
    states = {p: (IntakePoint if own else PointState)(p, "d", start) for p in POINTS}
    for point_id, state in states.items():
        if point_id != "d.online":
            state.online = states["d.online"]
    states["d.a"].rates += (RateWindow(10.0, 60.0, 3, None, 2.0),)
    states["d.a"].flats += (FlatTracker(0.5),)
    states["d.b"].rates += (RateWindow(5.0, 60.0, 2, 1.0, 0.0),
                            RateWindow(30.0, 3600.0, 3, None, 3.5))
    states["d.c"].flats += (FlatTracker(0.0),)
    schedule = Schedule(len(wiring))
    intake = kind(states, schedule)
    for index, (change, every, gaps, gated) in enumerate(wiring):
        intake.index(index, Inputs(set(change), set(every), dict(gaps)), gated)
    return intake, schedule, states


def _state(state: PointState) -> str:
    windows = [(list(w.samples), w._n, w._bad, w._ops, w._sx, w._sy, w._sxx, w._sxy, w._syy,
                w._t0, w._v0, w._last_t, w._last_v, w._slot, w._dirty, w._cache)
               for w in state.rates]
    flats = [(f.low, f.high, f.since, f.moved) for f in state.flats]
    return repr((state.value, type(state.value), state.good, state.ts_ns, state.t,
                 state.last_good_t, state.invalid_since, state.seen_good, state.fresh,
                 windows, flats))


VALUES = st.one_of(st.sampled_from([0.0, 1.0, 1.5, -0.0, 2, 3, True, False, "open", None,
                                    float("nan"), float("inf")]),
                   st.floats(-5.0, 5.0, allow_nan=False), st.integers(-3, 3))
QUALITIES = st.sampled_from([Quality.GOOD] * 5 + [Quality.INVALID, Quality.COMM_ERROR])
SAMPLE = st.tuples(st.sampled_from([*POINTS, *POINTS, "d.nobody"]), VALUES,
                   st.floats(-3.0, 1.0), QUALITIES)
"""(point, value, its time relative to the batch's now: up to 3 s before, 1 s after)."""
BINDING = st.tuples(st.frozensets(st.sampled_from(POINTS)), st.frozensets(st.sampled_from(POINTS)),
                    st.dictionaries(st.sampled_from(POINTS), st.sampled_from([0.5, 2.0, 5.0])),
                    st.booleans())
STEP = st.tuples(st.lists(SAMPLE, max_size=12), st.sampled_from([0.0, 0.1, 0.5, 1.0, 3.0, 8.0]),
                 st.lists(st.tuples(st.integers(0, 5), st.floats(-4.0, 4.0),
                                    st.floats(0.0, 4.0)), max_size=2))
"""A batch, the clock step after it, and quiet bands (binding, low, width) set before it."""


@settings(max_examples=300, deadline=None)
@given(wiring=st.lists(BINDING, min_size=1, max_size=6), steps=st.lists(STEP, max_size=40),
       start=st.sampled_from([0.0, 1000.0, 1.7e9]),
       offset=st.sampled_from([0.0, -1.7e9, 12.5]), own=st.booleans())
def test_the_intake_updates_and_marks_as_the_per_sample_update_did(
        wiring: Wiring, steps: list[tuple[list[tuple[str, Value, float, Quality]], float,
                                          list[tuple[int, float, float]]]],
        start: float, offset: float, own: bool) -> None:
    new, new_schedule, new_states = _make(Intake, wiring, start, own)
    old, old_schedule, old_states = _make(ReferenceIntake, wiring, start, own)
    mono = start
    for batch, step, bands in steps:
        for binding, low, width in bands:
            if binding < len(wiring):
                new.set_band(binding, (low, low + width))
                old.set_band(binding, (low, low + width))
        samples = [Sample(point, value, round((mono + ago - offset) * 1e9), quality)
                   for point, value, ago, quality in batch]
        new.take(samples, mono, offset)
        old.take(samples, mono, offset)
        for point_id in POINTS:
            assert _state(new_states[point_id]) == _state(old_states[point_id]), point_id
            mine, theirs = new.points[point_id], old.points[point_id]
            assert repr((mine.value, type(mine.value), mine.quality)) == repr(
                (theirs.value, type(theirs.value), theirs.quality))
        assert new_schedule.due(mono) == old_schedule.due(mono)
        mono += step
