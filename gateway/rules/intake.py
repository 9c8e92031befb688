"""The rule engine's intake: each sample updates its point's state and marks the bindings it
concerns for the next round (gateway.rules.engine; which samples concern which binding:
gateway.rules.schedule's inputs and gateway.rules.quiet's bands).

Per point one `PointIntake` holds everything a sample of it needs — the point's state, the
value and quality of its previous sample in this engine, and the bindings it marks (an
engine's points are `IntakePoint`s: the point's state and its intake in one object, no
dictionary but the states'):

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
from typing import cast

from gateway.field.sample import Quality, Sample, Value
from gateway.rules.conditions import NUMBER, PointState
from gateway.rules.schedule import Inputs, Schedule

INF = math.inf
NEG_INF = -math.inf
"""One object (`-INF` in a function makes a new float each time, and a site has thousands of
points whose bands keep one)."""
GOOD = Quality.GOOD
INVALID = Quality.INVALID


class _Marks:
    """The fields of an intake entry (`PointIntake`, `IntakePoint`)."""

    __slots__ = ()
    quality: Quality | None
    """Of this point's previous sample in this engine (None: none yet)."""
    readers: tuple[int, ...]
    gated: tuple[int, ...]
    every: tuple[int, ...]
    gap: float
    gap_marks: tuple[int, ...]
    """Tuples (a site has thousands, most empty or short), grown while the engine indexes
    its bindings."""
    lo: float
    hi: float
    """The intersection of the gated readers' quiet bands (empty until each is known)."""


class PointIntake(_Marks):
    __slots__ = ("every", "gap", "gap_marks", "gated", "hi", "lo", "quality", "readers",
                 "state", "value")

    def __init__(self, state: PointState) -> None:
        self.state = state
        self.value: Value = None
        _unmarked(self)


class IntakePoint(PointState, _Marks):
    """A point's state and its intake entry in one: `PointIntake`'s fields, but `state` is
    itself and `value` the state's — its latest value, which is its previous sample's in this
    engine once one arrived (until then `quality` is None: the first sample marks whatever its
    value; a config apply that carries a value into a point marks every binding anyway)."""

    __slots__ = ("every", "gap", "gap_marks", "gated", "hi", "lo", "quality", "readers")

    def __init__(self, point_id: str, device: str, start: float,
                 valid_min: float | None = None, valid_max: float | None = None) -> None:
        super().__init__(point_id, device, start, valid_min, valid_max)
        _unmarked(self)

    @property
    def state(self) -> IntakePoint:
        return self


Entry = PointIntake | IntakePoint


def _unmarked(entry: Entry) -> None:
    entry.quality = None
    entry.readers = entry.gated = entry.every = entry.gap_marks = ()
    entry.gap = INF
    entry.lo, entry.hi = INF, NEG_INF


class Intake:
    def __init__(self, states: Mapping[str, PointState], schedule: Schedule) -> None:
        """An engine's `states` are `IntakePoint`s (gateway.rules.sitepoints): they are the
        entries, in their own mapping; other states get a `PointIntake` each."""
        self._own = all(type(state) is IntakePoint for state in states.values())
        """The states are the entries (`IntakePoint`s)."""
        self.points: Mapping[str, Entry] = cast("Mapping[str, IntakePoint]", states) \
            if self._own else {point_id: PointIntake(state) for point_id, state in states.items()}
        self.schedule = schedule
        self.lo = [INF] * schedule.count
        self.hi = [NEG_INF] * schedule.count
        """Each binding's quiet band since its last evaluation (empty until then)."""
        self._gated_points: list[Entry | tuple[Entry, ...]] = \
            [()] * schedule.count
        """Each binding's gated points: the point itself when it is one (nearly all: no
        tuple per point), else one tuple per distinct set, shared."""
        self._sets: dict[tuple[Entry, ...], tuple[Entry, ...]] | None = {}

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
        """Every binding is indexed: points whose bindings are the same share one tuple (the
        200 points of a device mark its stale binding: one tuple, not 200); drop the table
        that shared the gated points' tuples."""
        shared: dict[tuple[int, ...], tuple[int, ...]] = {}
        for entry in self.points.values():
            entry.readers = shared.setdefault(entry.readers, entry.readers)
            entry.gated = shared.setdefault(entry.gated, entry.gated)
            entry.every = shared.setdefault(entry.every, entry.every)
            entry.gap_marks = shared.setdefault(entry.gap_marks, entry.gap_marks)
        self._sets = None

    def set_band(self, binding: int, band: tuple[float, float]) -> None:
        """A gated binding was evaluated: its quiet band now, and its points' intersections."""
        lo, hi = self.lo, self.hi
        if (lo[binding], hi[binding]) == band:
            return
        lo[binding], hi[binding] = band
        points = self._gated_points[binding]
        for entry in (points,) if not isinstance(points, tuple) else points:
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
        points, own = self.points, self._own
        schedule = self.schedule
        mark, mark_one = schedule.mark_many, schedule.mark
        marked, pending = schedule._marked, schedule._pending  # (`mark_many`'s, inline below)
        lo, hi = self.lo, self.hi
        stamp: int | None = None
        t = mono
        for point_id, value, ts, quality in batch:
            try:  # (a subscript, not a `get` call; a point of no binding is rare)
                entry = points[point_id]
            except KeyError:
                continue
            before, before_quality = entry.value, entry.quality
            entry.quality = quality
            state: PointState
            if own:  # an IntakePoint is its state (not its property, a call) and its value
                state = entry  # type: ignore[assignment]  # is the state's, set below
            else:
                state = entry.state
                entry.value = value
            last_good = state.last_good_t
            if ts is not stamp:  # (a block's samples share their time: one t for them all)
                stamp = ts
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
                    number: float = value if kind is float else float(  # type: ignore[assignment]
                        value)  # (a float's float() is itself: no call for it)
                    if rates:  # (a `for` over an empty tuple makes an iterator)
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
                readers = entry.readers
                if readers:
                    for index in readers:  # mark(entry.readers), inline
                        if not marked[index]:
                            marked[index] = 1
                            pending.append(index)
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
