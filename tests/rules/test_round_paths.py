"""A rule round's shortcuts give what the code before them gave, bit for bit (hypothesis; the
code before kept verbatim below):

* an unbalance takes its largest deviation from the largest and the smallest value
  (`gateway.rules.conditions.unbalance`), not from every value's |v − mean| — any values:
  equal ones, negative ones, huge ones whose sum overflows, NaN, infinities;
* a rate window's deadline (`gateway.rules.schedule`, `_window_due`) is remembered by its
  shape for the last oldest-sample time asked: windows of two lengths sharing shapes, fed
  samples of shared and of their own times and slid at random rounds, and windows whose
  length was set afresh (a copy of their shape, `Shape.__copy__`), have the deadline the
  per-window computation gave at every step;
* a narrow sample ring takes the time step of its newest sample from the last one found when
  its two times are the very float objects it was found for (`SampleRing.append`): rings fed
  one time object each round (a block read's), now and then one of their own, equal or not,
  store what the ring before stored, slot by slot;
* a round that clears many marks takes a new zeroed bytearray (`Schedule.due`): a schedule of
  80 bindings, marked by the dozen, keeps the contract of tests/rules/test_agenda.py's model;
  and a deadline that moved later is queued again inline when its old time comes: two
  bindings whose deadlines are set and moved at random keep that contract too.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from itertools import repeat
from operator import sub
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.rules.agenda import Schedule
from gateway.rules.conditions import unbalance
from gateway.rules.rate import RateWindow
from gateway.rules.rate_samples import INT32, STEPS, SampleRing
from gateway.rules.schedule import DUE, INF, _after
from tests.rules.test_agenda import NOWS, Model


def reference_unbalance(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    if mean <= 1.0:
        return None
    largest: float = max(map(abs, map(sub, values, repeat(mean))))  # each |v − mean|, in C
    return largest / mean * 100.0


def reference_window_due(window: RateWindow, now: float) -> float:
    """When the window's oldest sample leaves it with no sample of its own arriving first
    (kept in the window: `RateWindow.due`)."""
    samples = window.samples
    if not samples._len:  # (`len()`: a call)
        return INF
    t0 = samples.first
    if t0 != window.leaves:
        window.leaves, window.due = t0, _after(t0, window.shape.window + window.shape.slack)
    when = window.due
    return when if now < when else INF


def _bits(value: float | None) -> object:
    return None if value is None else struct.pack("<d", value)


FLOATS = st.one_of(st.floats(), st.floats(-1e3, 1e3), st.floats(1e307, 1.7e308),
                   st.sampled_from([0.0, -0.0, 1.0, 230.0, 230.1, 5e-324]))


@settings(max_examples=1000, deadline=None)
@given(values=st.lists(FLOATS, max_size=12), same=st.integers(0, 6))
def test_an_unbalance_is_the_largest_deviation_as_before(values: list[float],
                                                         same: int) -> None:
    values = values + values[:1] * same  # equal values: a mean above every one of them
    assert _bits(unbalance(values)) == _bits(reference_unbalance(values))


TIMES = st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.5, 3.0, 7.0])
EVENT = st.tuples(st.integers(0, 5), st.booleans(), TIMES, st.floats(-50.0, 50.0))
"""(window, a shared time or its own, the clock step, the value)."""


@settings(max_examples=300, deadline=None)
@given(events=st.lists(EVENT, min_size=1, max_size=80), start=st.sampled_from(
           [0.0, 1000.0, 1.7e9 + 0.1]), renew=st.sets(st.integers(0, 5), max_size=2))
def test_a_window_deadline_is_the_one_computed_for_it(
        events: list[tuple[int, bool, float, float]], start: float, renew: set[int]) -> None:
    lengths = (5.0, 5.0, 5.0, 12.0, 12.0, 3.0)
    new = [RateWindow(length, 60.0, 2, None, 0.0) for length in lengths]
    old = [RateWindow(length, 60.0, 2, None, 0.0) for length in lengths]
    now = start
    for at, (index, shared, step, value) in enumerate(events):
        if at == len(events) // 2:
            for renewed in renew:  # a length set afresh: a copy of the shared shape
                new[renewed].window = old[renewed].window = 4.0
        t = now if shared else now - 0.1 * (index + 1)
        new[index].add(t, value)
        old[index].add(t, value)
        now += step
        for mine, theirs in zip(new, old, strict=True):
            assert repr(mine.fit(now)) == repr(theirs.fit(now))
            assert DUE[RateWindow](mine, now) == reference_window_due(theirs, now)
    assert math.isfinite(now)


def test_a_window_given_another_length_forgets_its_shapes_deadline() -> None:
    asked, renewed = RateWindow(5.0, 60.0, 2), RateWindow(5.0, 60.0, 2)
    assert asked.shape is renewed.shape
    asked.add(100.0, 1.0)
    slack = asked.shape.slack  # (5 s / 240)
    assert DUE[RateWindow](asked, 100.0) == _after(100.0, 5.0 + slack)
    renewed.window = 4.0  # its own copy of the shape, made after the shape remembered 100.0
    renewed.add(100.0, 1.0)
    assert DUE[RateWindow](renewed, 100.0) == _after(100.0, 4.0 + slack)


class ReferenceRing(SampleRing):
    """`SampleRing.append` before the step was remembered."""

    def append(self, t: float, value: float) -> None:
        """Add a newest sample; the ring must not hold `capacity` samples."""
        n = self._len
        if n >= self._size:
            if n >= self.capacity:
                raise IndexError("the sample ring is full")
            self._grow(self.capacity)
        slot = self._head + n
        if slot >= self._size:
            slot -= self._size
        q, d = self._q, self._d
        if n and q and d > 0:  # both narrow, the common case: `_store`'s checks inline
            before = self.last
            step = (t - before) * STEPS
            if -INT32 <= step < INT32 and before + (j := int(step)) * q == t and \
                    t - j * q == before and (t or math.copysign(1.0, t) > 0):
                try:
                    k = round(value * d)
                    if k / d == value and (k or math.copysign(1.0, value) > 0):
                        self._v[slot] = k
                        self._t[slot] = j
                        self.last = t
                        self._len = n + 1
                        return
                except (ValueError, OverflowError):
                    pass
        self._store(slot, t, self.last if n else None, value)
        self._len = n + 1


RING_VALUES = st.one_of(st.integers(-400, 400).map(lambda k: k / 10),
                        st.sampled_from([0.0, -0.0, 1.5, 1e-7, math.nan, 70000.0, 1 / 3]))
ROUND = st.tuples(st.sampled_from([0.0, 0.25, 1.0, 1.000001, 600.0, -0.5]),
                  st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), RING_VALUES),
                           max_size=8))
"""The clock step, then appends: (ring, the round's time object / an equal float of its own /
a time of its own / -0.0 for a time of 0.0, the value)."""


@settings(max_examples=300, deadline=None)
@given(rounds=st.lists(ROUND, min_size=1, max_size=40),
       start=st.sampled_from([0.0, 5000.25, 1.7e9 + 0.5]))
def test_a_ring_stores_what_it_stored_before_the_step_was_remembered(
        rounds: list[tuple[float, list[tuple[int, int, float]]]], start: float) -> None:
    new = [SampleRing(16, 4, decimal=True) for _ in range(4)]
    old = [ReferenceRing(16, 4, decimal=True) for _ in range(4)]
    now = start
    for step, appends in rounds:
        now += step
        shared = now  # one float object for the round, as the intake makes a block's time
        for index, which, value in appends:
            t = shared if which == 0 else float(repr(shared)) if which == 1 else \
                shared + 0.1 if which == 2 else -0.0 if shared == 0.0 else shared
            for rings in (new, old):
                ring = rings[index]
                if len(ring) == ring.capacity:
                    ring.popleft()
                if len(ring) and t < ring.last:
                    continue
                ring.append(t, value)
        for mine, theirs in zip(new, old, strict=True):
            assert repr(mine.stored()) == repr(theirs.stored())
            assert (mine.first, mine.last, mine._head, len(mine)) == (
                theirs.first, theirs.last, theirs._head, len(theirs))


MANY = 80
MARKS = st.lists(st.one_of(
    st.tuples(st.just("mark"), st.lists(st.integers(0, MANY - 1), max_size=50)),
    st.tuples(st.just("set"), st.tuples(st.integers(0, MANY - 1), NOWS)),
    st.tuples(st.just("due"), NOWS)), max_size=30)


def _keeps_the_contract(count: int, ops: list[tuple[str, Any]]) -> None:
    schedule, model = Schedule(count), Model(count)
    for op, arg in ops:
        if op == "due":
            assert schedule.due(arg) == model.due(arg), arg
        elif op == "mark":
            schedule.mark_many(arg)
            model.marked.update(arg)
        else:
            schedule.set_deadline(*arg)
            model.set_deadline(*arg)
        assert schedule.pending == bool(model.marked)
    assert schedule.due(1e9) == model.due(1e9)


@settings(max_examples=300, deadline=None)
@given(MARKS)
def test_a_round_of_many_marks_keeps_the_schedules_contract(ops: list[tuple[str, Any]]) -> None:
    _keeps_the_contract(MANY, ops)


MOVES = st.lists(st.one_of(st.tuples(st.just("set"), st.tuples(st.integers(0, 1), NOWS)),
                           st.tuples(st.just("due"), NOWS)), max_size=20)


@settings(max_examples=500, deadline=None)
@given(MOVES)
def test_a_deadline_moved_later_is_queued_again_when_its_old_time_comes(
        ops: list[tuple[str, Any]]) -> None:
    _keeps_the_contract(2, ops)
