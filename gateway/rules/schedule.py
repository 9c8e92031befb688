"""When a rule binding must be evaluated again: the engine's change-driven rounds.

A binding's condition tree changes its result — or any state of its nodes — only when
(a) a sample changes something one of its leaves reads, or (b) time passes one of its timers.
Evaluating it at any other moment is a no-op: every leaf is idempotent over unchanged inputs
before its next timer (a debounce with the same raw result keeps its timer, a hysteresis test
fed the same value with its latch following the debounced output gives the same raw result,
a rate window with nothing to drop keeps its fit). So the engine evaluates a binding only when
it is marked by a sample or its deadline has come, and gets what evaluating every binding at
every round would give (tests/rules/test_change_driven.py proves it with random sample
streams and clock steps). This module says, for one compiled tree:

* `survey(node)` walks a tree once and gives its inputs and its timers (None for a tree with
  a node or signal this module does not know: such a binding is evaluated at every round —
  correct for anything, only slower). Its inputs: the points it reads, and which samples of
  each matter —
  `CHANGE`: a sample with another value or quality than the point's previous one;
  `EVERY`: every sample (a rate window takes every good sample, same value or not);
  a gap (`Inputs.gaps`, seconds): a repeated good sample after that long without one (a stale
  leaf can only be stale, and so be cleared by such a sample, after its `max_age`).
  Its timers, and `deadline(timers, now)`: after an evaluation, the earliest time at which
  its result can change with no new sample — an on- or off-delay expiring, a stale timeout,
  a flat-line window filled, an invalid-for duration reached, the oldest sample of a rate
  window leaving it. Exact to the float: the first representable time at which the leaf's
  own comparison flips (never later, so no change is missed; `math.inf`: none). Compiled
  once per binding, and only for its timed parts (a leaf without delays has none).

`Schedule` keeps the marks and a heap of deadlines. Pure: no clock, no I/O.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gateway.rules.conditions import (
    Debounce,
    DewPointSignal,
    GroupSignal,
    PointState,
    Signal,
    ValueSignal,
)
from gateway.rules.differences import ExcessSignal, OutlierSignal
from gateway.rules.nodes import (
    AllNode,
    AnyNode,
    AtLeastNode,
    CompareLeaf,
    EqualsLeaf,
    FlatLeaf,
    InvalidLeaf,
    Node,
    StaleLeaf,
)
from gateway.rules.rate import RateSignal, RateWindow

INF = math.inf
_TIMELESS_SIGNALS = (ValueSignal, GroupSignal, DewPointSignal, ExcessSignal, OutlierSignal)
"""Signals whose value depends on their members' latest samples only, not on the time."""


@dataclass
class Inputs:
    """The points a tree reads (by id): `change` — a new value or quality matters; `every` —
    every sample matters; `gaps` — a repeated good sample matters after this many seconds
    without a good one (the smallest such gap per point)."""

    change: set[str] = field(default_factory=set)
    every: set[str] = field(default_factory=set)
    gaps: dict[str, float] = field(default_factory=dict)

    def gap(self, point: str, seconds: float) -> None:
        self.gaps[point] = min(seconds, self.gaps.get(point, INF))


Timer = Callable[[], float]
"""One time-dependent part of a tree: the next time it can change (`math.inf`: none now)."""


class _Unknown(Exception):
    """A node or signal this module does not know."""


def survey(node: Node) -> tuple[Inputs, tuple[Timer, ...]] | None:
    """What samples can change `node` and its time-dependent parts (see the module
    docstring), in one walk; None: unknown parts. The timers are compiled once per binding,
    and only for its timed parts (a leaf without delays has none): after an evaluation at
    `now`, the tree's deadline is the earliest of their times after `now` (`deadline`)."""
    found = Inputs()
    timed: list[Timer] = []
    try:
        _walk(node, found, timed)
    except _Unknown:
        return None
    return found, tuple(timed)


def _walk(node: Node, found: Inputs, timed: list[Timer]) -> None:
    walker = _WALKERS.get(type(node))
    if walker is None:
        kind = next((k for k in _WALKERS if isinstance(node, k)), None)
        if kind is None:
            raise _Unknown(type(node).__name__)
        walker = _WALKERS[kind]
    walker(node, found, timed)


def _children(node: AllNode | AnyNode | AtLeastNode, found: Inputs, timed: list[Timer]
              ) -> None:
    for child in node.children:
        _walk(child, found, timed)


def _debounced(debounce: Debounce, timed: list[Timer]) -> None:
    if debounce.on_delay or debounce.off_delay:
        # without delays no timer is ever left running after a step
        timed.append(_debounce_timer(debounce))


def _compare(node: CompareLeaf, found: Inputs, timed: list[Timer]) -> None:
    change = found.change
    for member in node.members:
        change.add(member.id)
    signal = node.signal
    if type(signal) is ValueSignal or type(signal) is GroupSignal:  # the common ones, directly
        for member in signal.members:
            change.add(member.id)
    else:
        for member, every in _signal_members(signal):
            change.add(member.id)
            if every:
                found.every.add(member.id)
    _debounced(node.debounce, timed)
    if isinstance(signal, RateSignal):
        timed.extend(_window_timer(window) for window in signal.windows)


def _equals(node: EqualsLeaf, found: Inputs, timed: list[Timer]) -> None:
    found.change.update(m.id for m in node.members)
    _debounced(node.debounce, timed)


def _stale(node: StaleLeaf, found: Inputs, timed: list[Timer]) -> None:
    member = node.member
    found.change.add(member.id)
    found.gap(member.id, node.max_age)
    if member.online is not None:  # "offline" is read from the device's online point
        found.change.add(member.online.id)
    _debounced(node.debounce, timed)
    timed.append(_stale_timer(node))


def _flat(node: FlatLeaf, found: Inputs, timed: list[Timer]) -> None:
    found.change.add(node.member.id)
    _debounced(node.debounce, timed)
    timed.append(_flat_timer(node))


def _invalid(node: InvalidLeaf, found: Inputs, timed: list[Timer]) -> None:
    found.change.add(node.member.id)
    _debounced(node.debounce, timed)
    timed.append(_invalid_timer(node))


def _signal_members(signal: Signal) -> Iterator[tuple[PointState, bool]]:
    """(member, every sample matters) of a signal."""
    if isinstance(signal, RateSignal):
        for member in signal.members:
            yield member, True
    elif isinstance(signal, DewPointSignal):
        for member in (*signal.temperature, *signal.rh):
            yield member, False
    elif isinstance(signal, ExcessSignal):
        for member in (*signal.members, *signal.references):
            yield member, False
    elif isinstance(signal, ValueSignal | GroupSignal | OutlierSignal):
        for member in signal.members:
            yield member, False
    else:
        raise _Unknown(type(signal).__name__)


# --- deadlines --------------------------------------------------------------------------------



def _elapsed(start: float, length: float) -> float:
    """The first float t with `t - start >= length` (how the leaves and `Debounce` compare):
    start + length, moved by the few ulps rounding may need."""
    t = start + length
    if t - start >= length:
        before = math.nextafter(t, -INF)
        while before - start >= length:
            t, before = before, math.nextafter(before, -INF)
        return t
    while t - start < length:
        t = math.nextafter(t, INF)
    return t


def _after(t0: float, length: float) -> float:
    """The first float t with `t0 < t - length` (when a rate window drops a sample of t0)."""
    t = t0 + length
    if t0 < t - length:
        before = math.nextafter(t, -INF)
        while t0 < before - length:
            t, before = before, math.nextafter(before, -INF)
        return t
    while not t0 < t - length:
        t = math.nextafter(t, INF)
    return t


def _debounce_timer(debounce: Debounce) -> Timer:
    def due() -> float:
        if debounce.on_since is not None and not debounce.active:
            return _elapsed(debounce.on_since, debounce.on_delay)
        if debounce.off_since is not None and debounce.active:
            return _elapsed(debounce.off_since, debounce.off_delay)
        return INF
    return due


def _window_timer(window: RateWindow) -> Timer:
    known = [math.nan, INF]
    """(oldest sample's time, when it leaves): the same until the oldest sample changes."""

    def due() -> float:
        samples = window.samples
        if not samples:
            return INF
        t0 = samples.first_t()
        if t0 != known[0]:
            known[0], known[1] = t0, _after(t0, window.window)
        return known[1]
    return due


def _stale_timer(leaf: StaleLeaf) -> Timer:
    member, max_age, include_offline = leaf.member, leaf.max_age, leaf.include_offline

    def due() -> float:
        if not include_offline and member.offline:
            return INF  # offline: an input, not a timer
        return _elapsed(member.last_good_t, max_age)
    return due


def _flat_timer(leaf: FlatLeaf) -> Timer:
    member, tracker, window = leaf.member, leaf.tracker, leaf.window

    def due() -> float:
        since = tracker.since
        return _elapsed(since, window) if member.good and since is not None else INF
    return due


def _invalid_timer(leaf: InvalidLeaf) -> Timer:
    member, duration = leaf.member, leaf.duration

    def due() -> float:
        since = member.invalid_since
        return INF if since is None else _elapsed(since, duration)
    return due


def deadline(compiled: tuple[Timer, ...], now: float) -> float:
    """The earliest time after `now` at which the tree of these timers can change with no
    new sample, right after it was evaluated at `now` (a time at or before `now` has passed
    already: the leaf judged it in this evaluation); `math.inf`: never."""
    due = INF
    for timer in compiled:
        t = timer()
        if now < t < due:
            due = t
    return due


_WALKERS: dict[type, Callable[[Any, Inputs, list[Timer]], None]] = {
    AllNode: _children, AnyNode: _children, AtLeastNode: _children, CompareLeaf: _compare,
    EqualsLeaf: _equals, StaleLeaf: _stale, FlatLeaf: _flat, InvalidLeaf: _invalid}
"""Node type → its walk (by exact type: one dict look-up per node)."""


class Schedule:
    """The bindings (by index) due at a round: marked by a sample, or their deadline come.
    Each binding has at most one valid heap entry; a deadline that moves later leaves its old
    entry, which is dropped (or moved) when it comes up."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._marked = bytearray(b"\x01" * count)
        self._pending: list[int] = list(range(count))  # the first round evaluates everything
        self._deadline = [INF] * count
        self._queued = [INF] * count
        self._heap: list[tuple[float, int]] = []

    def mark(self, index: int) -> None:
        if not self._marked[index]:
            self._marked[index] = 1
            self._pending.append(index)

    def mark_many(self, indices: list[int]) -> None:
        marked, pending = self._marked, self._pending
        for index in indices:
            if not marked[index]:
                marked[index] = 1
                pending.append(index)

    def mark_all(self) -> None:
        for index in range(self.count):
            self.mark(index)

    def set_deadline(self, index: int, when: float) -> None:
        self._deadline[index] = when
        if when < self._queued[index]:
            self._queued[index] = when
            heapq.heappush(self._heap, (when, index))

    def due(self, now: float) -> list[int]:
        """The bindings to evaluate at `now`, in binding order; clears their marks."""
        heap, queued, deadlines = self._heap, self._queued, self._deadline
        while heap and heap[0][0] <= now:
            when, index = heapq.heappop(heap)
            if when != queued[index]:
                continue  # superseded by an earlier entry
            queued[index] = INF
            wanted = deadlines[index]
            if wanted <= now:
                self.mark(index)
            elif wanted < INF:
                queued[index] = wanted
                heapq.heappush(heap, (wanted, index))
        pending = self._pending
        if not pending:
            return []
        self._pending = []
        marked = self._marked
        for index in pending:
            marked[index] = 0
        pending.sort()
        return pending

    def next_deadline(self) -> float:
        """The earliest deadline of any binding (`math.inf`: none); moves entries whose
        deadline went later, so the answer is a real deadline."""
        heap, queued, deadlines = self._heap, self._queued, self._deadline
        while heap:
            when, index = heap[0]
            if when != queued[index]:
                heapq.heappop(heap)
                continue
            wanted = deadlines[index]
            if wanted <= when:
                return when
            heapq.heappop(heap)
            queued[index] = INF
            if wanted < INF:
                queued[index] = wanted
                heapq.heappush(heap, (wanted, index))
        return INF

    @property
    def pending(self) -> bool:
        """Some binding is marked (a round would evaluate it now)."""
        return bool(self._pending)
