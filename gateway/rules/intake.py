"""The rule engine's intake: each sample updates its point's state and marks the bindings it
concerns for the next round (gateway.rules.engine; which samples concern which binding:
gateway.rules.schedule's inputs and gateway.rules.quiet's bands).

Per point one `PointIntake` holds everything a sample of it needs — the point's state, the
value and quality of its previous sample in this engine, and the bindings it marks:

* `readers`: marked by another value or quality;
* `gated`: marked by another quality, or by another value outside the binding's quiet band
  (a number after a number of the same quality); the point keeps the intersection of its
  gated readers' bands, so a value inside all of them — nearly every value on a busy site —
  costs one comparison;
* `every`: marked by every sample (rate windows);
* `gap_marks`: marked by a repeated good sample `gap` seconds after the last good one (a
  stale leaf).

One dictionary look-up a sample, no objects made. Pure: no clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from gateway.field.sample import Quality, Sample, Value
from gateway.rules.conditions import NUMBER, PointState
from gateway.rules.schedule import Inputs, Schedule

INF = math.inf
NEG_INF = -math.inf
"""One object (`-INF` in a function makes a new float each time, and a site has thousands of
points whose bands keep one)."""
GOOD = Quality.GOOD
INVALID = Quality.INVALID


class PointIntake:
    __slots__ = ("every", "gap", "gap_marks", "gated", "hi", "lo", "quality", "readers",
                 "state", "value")

    def __init__(self, state: PointState) -> None:
        self.state = state
        self.value: Value = None
        self.quality: Quality | None = None
        """Of this point's previous sample in this engine (None: none yet)."""
        self.readers: tuple[int, ...] = ()
        self.gated: tuple[int, ...] = ()
        self.every: tuple[int, ...] = ()
        self.gap = INF
        self.gap_marks: tuple[int, ...] = ()
        """Tuples (a site has thousands, most empty or short), grown while the engine indexes
        its bindings."""
        self.lo, self.hi = INF, NEG_INF
        """The intersection of the gated readers' quiet bands (empty until each is known)."""


class Intake:
    def __init__(self, states: Mapping[str, PointState], schedule: Schedule) -> None:
        self.points = {point_id: PointIntake(state) for point_id, state in states.items()}
        self.schedule = schedule
        self.lo = [INF] * schedule.count
        self.hi = [NEG_INF] * schedule.count
        """Each binding's quiet band since its last evaluation (empty until then)."""
        self._gated_points: list[PointIntake | tuple[PointIntake, ...]] = \
            [()] * schedule.count
        """Each binding's gated points: the point itself when it is one (nearly all: no
        tuple per point), else one tuple per distinct set, shared."""
        self._sets: dict[tuple[PointIntake, ...], tuple[PointIntake, ...]] | None = {}

    def index(self, binding: int, found: Inputs, gated: bool) -> None:
        """Which of binding `binding`'s points mark it, and how (see the module docstring)."""
        points, sets = self.points, self._sets
        if sets is None:
            raise RuntimeError("the intake is frozen: bindings are indexed before it runs")
        mine = []
        for point_id in found.change:
            entry = points[point_id]
            if gated:
                entry.gated += (binding,)
                mine.append(entry)
            else:
                entry.readers += (binding,)
        if len(mine) == 1:
            self._gated_points[binding] = mine[0]
        elif mine:
            key = tuple(mine)
            self._gated_points[binding] = sets.setdefault(key, key)
        for point_id in found.every:
            points[point_id].every += (binding,)
        for point_id, gap in found.gaps.items():
            entry = points[point_id]
            entry.gap = min(entry.gap, gap)
            entry.gap_marks += (binding,)

    def freeze(self) -> None:
        """Every binding is indexed: drop the table that shared the gated points' tuples."""
        self._sets = None

    def set_band(self, binding: int, band: tuple[float, float]) -> None:
        """A gated binding was evaluated: its quiet band now, and its points' intersections."""
        lo, hi = self.lo, self.hi
        if (lo[binding], hi[binding]) == band:
            return
        lo[binding], hi[binding] = band
        points = self._gated_points[binding]
        for entry in (points,) if isinstance(points, PointIntake) else points:
            low, high = NEG_INF, INF
            for index in entry.gated:
                if lo[index] > low:
                    low = lo[index]
                if hi[index] < high:
                    high = hi[index]
            entry.lo, entry.hi = (low, high) if low <= high else (INF, NEG_INF)

    def take(self, batch: Iterable[Sample], mono: float, offset: float) -> None:
        """Update each sample's point and mark what it concerns. `mono`: the engine's now;
        `offset`: engine seconds minus wall-clock seconds (a sample's time on the engine's
        scale, never after now). `PointState.update` and `FlatTracker.add` are inline (the
        same assignments in the same order; tests/rules/test_intake.py compares them)."""
        get = self.points.get
        mark, mark_one = self.schedule.mark_many, self.schedule.mark
        lo, hi = self.lo, self.hi
        for point_id, value, ts, quality in batch:
            entry = get(point_id)
            if entry is None:
                continue
            state = entry.state
            before, before_quality = entry.value, entry.quality
            entry.value, entry.quality = value, quality
            last_good = state.last_good_t
            t = ts * 1e-9 + offset
            if not t < mono:
                t = mono
            # state.update(value, quality, ts, t), inline
            state.value = value
            state.ts_ns = ts
            state.t = t
            kind = type(value)
            if quality is GOOD and value is not None:
                if t > last_good or not state.seen_good:
                    state.last_good_t = t  # a late, older sample neither refreshes nor ages it
                state.good = state.seen_good = state.fresh = True
                state.invalid_since = None
                rates, flats = state.rates, state.flats
                if (rates or flats) and (kind is float or isinstance(value, NUMBER)):
                    number = float(value)
                    for rate in rates:
                        rate.add(t, number)
                    for flat in flats:  # FlatTracker.add inline
                        if flat.since is None:
                            flat.low = flat.high = number
                            flat.since = t
                            continue
                        low = number if number < flat.low else flat.low
                        high = number if number > flat.high else flat.high
                        if high - low > flat.epsilon:
                            flat.low = flat.high = number
                            flat.since = t
                            flat.moved = True
                        else:
                            flat.low, flat.high = low, high
            else:
                state.good = False
                if quality is INVALID:
                    if state.invalid_since is None:
                        state.invalid_since = t
                else:
                    state.invalid_since = None
            if before_quality is not quality or not (
                    before is value or (type(before) is kind
                                        and before == value)):  # another value or quality
                if entry.readers:
                    mark(entry.readers)
                gated = entry.gated
                if gated:
                    was = type(before)
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
