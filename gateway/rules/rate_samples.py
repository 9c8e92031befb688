"""The samples of one rate window (`gateway.rules.rate.RateWindow.samples`): a ring of (time,
value) pairs in two arrays allocated when the window is made, so a window's memory is the same
in its first minutes as after a year (the deque of `(t, value)` tuples it replaced took ~56–80
bytes a sample and grew as its window filled: an hour's window took an hour to reach its size).

The ring is made with room for `size` samples and holds at most `capacity`: a window asks for
what it needs at one sample a second (`RateWindow`), and a ring that fills up grows once, to
its capacity — within the window's first length, and only under faster polls.

Read it as a sequence of `(t, value)` tuples, oldest first (`len`, indexing with negative
indices, slices as lists, iteration); the window changes it through `append`, `popleft`,
`set_last`, `clear` and `copy_from`, and reads its oldest time in `first` (any other time or
value read gives the double that was stored, bit for bit).

Narrow storage, 6 bytes a sample where 16 were (two `array('d')`), with nothing rounded:

* times as the steps from the previous sample's time in units of `STEP` (2⁻²² s) in an
  `array('i')`, the oldest time (`first`) and the newest (`last`) as doubles: the engine's
  times are multiples of 2⁻²² s — a sample's time is its acquisition time in seconds (a
  double between 2³⁰ and 2³¹ until 2038: a multiple of 2⁻²²) plus an offset of the same
  magnitude (gateway.rules.intake) — so a step of up to 512 s is an exact int32;
* values, in a ring made with `decimal=True` (a rate signal's: decoded register values), as
  integers `k` with the value the double `k / divisor` — as gateway.field.points divides a
  register by a power of ten — in an `array('h')`, or `array('i')` once one does not fit 16
  bits; the divisor is the smallest power of ten (up to 10⁹) that every held value needs.

Each time and value is checked as it is stored: a time whose step is no exact int32 both ways
(a test's clock, a sample clamped to now, a gap of more than 512 s, -0.0), or a value that is
no such integer (a float register, an offset, -0.0, NaN, an infinity), turns that array into
doubles (`array('d')`), as before. `compact` turns it narrow again when every held sample
fits: the window calls it when its sums are rebuilt and when it is empty (after a restart the
restored samples' times are not multiples of 2⁻²²: they leave within the window's length).
`stored` gives a save the samples as stored, read by `stored_times` and `stored_values` on its
writer's thread (gateway.rules.warm_copy)."""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator, Sequence
from itertools import accumulate, repeat
from operator import mul, truediv
from typing import Any, TypeVar, overload

STEP = 2.0 ** -22
"""Seconds per unit of a narrow time step (see the module docstring)."""
STEPS = 2.0 ** 22
INT32 = 2147483648.0
NEG_INT32 = -INT32  # (`-INT32` in a function is a negation, a new float, at every call)
DIVISORS = tuple(10.0 ** k for k in range(10))
"""The divisors of narrow values (gateway.field.points.DECIMAL_DIVISORS, and 1): a float
divides an integer below 2⁵³ as the integer itself would, correctly rounded."""
WIDE = 0.0
"""`_d` of values kept as doubles that may be narrowed again (`compact`)…"""
NEVER = -1.0
"""…and of values kept as doubles for good (a ring made without `decimal`)."""
_STEP: list[tuple[Any, Any, int]] = [(None, None, 0)]
"""The last narrow step `append` found: (time before, time, step), one tuple, read and
replaced whole (another thread's ring may replace it: never half of it). The windows of one
block read take samples of one time after samples of one time — the same two float objects
(the intake makes a block's time once) — so nearly every append finds its step here."""
_ZERO: dict[str, array[Any]] = {code: array(code, [0]) for code in "hid"}
"""One zero of each array type: `_ZERO[code] * n` is an array of exactly n (an array made
from n bytes takes about 9 % more: its growth margin)."""


class SampleRing(Sequence[tuple[float, float]]):
    """(t, value) pairs, oldest first, at most `capacity` (see the module docstring)."""

    __slots__ = ("_d", "_head", "_len", "_q", "_size", "_t", "_v", "capacity", "first", "last")

    def __init__(self, capacity: int, size: int | None = None, *, decimal: bool = False
                 ) -> None:
        if capacity < 1:
            raise ValueError("a sample ring holds at least one sample")
        self.capacity = capacity
        self._size = capacity if size is None else max(1, min(size, capacity))
        """Slots allocated (the ring wraps round at this)."""
        self._q = STEP
        """Seconds per unit of `_t` (narrow steps); 0.0: `_t` holds the times as doubles."""
        self._t: array[Any] = _ZERO["i"] * self._size
        self._d: float = 1.0 if decimal else NEVER
        """Divisor of the integers in `_v` (>0), or `WIDE` / `NEVER`: doubles."""
        self._v: array[Any] = _ZERO["h" if decimal else "d"] * self._size
        self._head = 0
        """Slot of the oldest sample."""
        self._len = 0
        self.first = self.last = math.nan
        """The oldest and the newest sample's time (while there is one)."""

    @property
    def allocated(self) -> int:
        """Samples it has room for without growing."""
        return self._size

    def _grow(self, size: int) -> None:
        """Room for `size` samples, the oldest in slot 0."""
        self._t = self._ordered(self._t) + _ZERO[self._t.typecode] * (size - self._len)
        self._v = self._ordered(self._v) + _ZERO[self._v.typecode] * (size - self._len)
        self._head, self._size = 0, size

    def _ordered(self, raw: array[Any]) -> array[Any]:
        """The held slots of `raw`, oldest first (a copy)."""
        head, end = self._head, self._head + self._len
        if end <= self._size:
            return raw[head:end]
        return raw[head:] + raw[:end - self._size]

    def __len__(self) -> int:
        return self._len

    def _slot(self, index: int) -> int:
        n = self._len
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("sample index out of range")
        slot = self._head + index
        return slot - self._size if slot >= self._size else slot

    @overload
    def __getitem__(self, index: int) -> tuple[float, float]: ...

    @overload
    def __getitem__(self, index: slice) -> list[tuple[float, float]]: ...

    def __getitem__(self, index: int | slice
                    ) -> tuple[float, float] | list[tuple[float, float]]:
        if isinstance(index, slice):
            return list(self)[index]
        slot = self._slot(index)
        if slot == self._head:
            t = self.first
        elif index == -1 or index == self._len - 1:
            t = self.last
        else:
            t = self._t[slot] if not self._q else self.times()[index]
        return t, self._value(slot)

    def _value(self, slot: int) -> float:
        d, raw = self._d, self._v[slot]
        return raw / d if d > 0 else raw  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[tuple[float, float]]:
        return zip(self.times(), self.values(), strict=True)

    def __repr__(self) -> str:
        return f"SampleRing({list(self)!r}, capacity={self.capacity})"

    def first_t(self) -> float:
        """Time of the oldest sample (the ring must not be empty)."""
        if not self._len:
            raise IndexError("an empty sample ring has no first sample")
        return self.first

    def last_t(self) -> float:
        """Time of the newest sample (the ring must not be empty)."""
        if not self._len:
            raise IndexError("sample index out of range")
        return self.last

    def times(self) -> array[float]:
        """A copy of the times, oldest first."""
        return stored_times(self._ordered(self._t), self.first, self._q)

    def values(self) -> array[float]:
        """A copy of the values, oldest first."""
        return stored_values(self._ordered(self._v), self._d)

    def stored(self) -> tuple[array[Any], float, float, array[Any], float]:
        """The samples as stored, oldest first, and what reads them: (times, `first`, their
        unit, values, their divisor) — copies of the held slots (a memcpy each), which
        `stored_times(times, first, unit)` and `stored_values(values, divisor)` turn into
        `times()` and `values()`. A save's copy on the event loop (gateway.rules.warm_copy)."""
        return self._ordered(self._t), self.first, self._q, self._ordered(self._v), self._d

    def _store(self, slot: int, t: float, before: float | None, value: float) -> None:
        """`t` and `value` into `slot`: the sample after one of time `before` (None: the first
        one held)."""
        q = self._q
        if before is None:
            self.first = t
            if not q:
                self._t[slot] = t
        elif q:
            step = (t - before) * STEPS
            if NEG_INT32 <= step < INT32 and before + (k := int(step)) * q == t and \
                    t - k * q == before and (t or math.copysign(1.0, t) > 0):
                self._t[slot] = k  # both ways exact (not NaN, not -0.0)
            else:
                self._wide_times()
                self._t[slot] = t
        else:
            self._t[slot] = t
        self.last = t
        d = self._d
        if d > 0:
            try:
                k = round(value * d)  # ValueError for NaN, OverflowError for an infinity
                if k / d == value and (k or math.copysign(1.0, value) > 0):
                    self._v[slot] = k  # OverflowError beyond the array's integers
                    return
            except (ValueError, OverflowError):
                pass
            self._refit(slot, value)
        else:
            self._v[slot] = value

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
            last = _STEP[0]
            if before is last[0] and t is last[1]:  # the same floats: the same exact step
                j = last[2]
                exact = True
            else:
                step = (t - before) * STEPS
                exact = NEG_INT32 <= step < INT32 and before + (j := int(step)) * q == t and \
                    t - j * q == before and bool(t or math.copysign(1.0, t) > 0)
                if exact:
                    _STEP[0] = (before, t, j)
            if exact:
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

    def popleft(self) -> tuple[float, float]:
        """Remove and return the oldest sample."""
        n = self._len
        if not n:
            raise IndexError("pop from an empty sample ring")
        head, d = self._head, self._d
        out = self.first, (self._v[head] / d if d > 0 else self._v[head])
        head = 0 if head + 1 == self._size else head + 1
        if n > 1:
            q = self._q
            self.first = self.first + self._t[head] * q if q else self._t[head]
        self._head = head
        self._len = n - 1
        return out

    def set_last(self, t: float, value: float) -> None:
        """Replace the newest sample."""
        if not self._len:
            raise IndexError("sample index out of range")
        slot = self._head + self._len - 1
        if slot >= self._size:
            slot -= self._size
        q = self._q
        self._store(slot, t, None if self._len == 1 else (
            self.last - self._t[slot] * q if q else self.last), value)

    def clear(self) -> None:
        self._head = self._len = 0
        self.compact()

    def copy_from(self, other: SampleRing) -> None:
        """Hold `other`'s samples (the newest ones if it holds more than this ring can)."""
        times, values = other.times(), other.values()
        keep = min(len(times), self.capacity)
        self.clear()
        if keep > self._size:
            self._grow(self.capacity)
        for t, value in zip(times[len(times) - keep:], values[len(values) - keep:],
                            strict=True):
            self.append(t, value)

    # --- narrow and wide (rarely: see the module docstring) ------------------------------------

    def _held(self) -> list[int]:
        """The slots of the held samples, oldest first."""
        head, size = self._head, self._size
        return [(head + i) % size for i in range(self._len)]

    def _wide_times(self) -> None:
        """The times as doubles from now on (in their slots)."""
        times, wide = self.times(), _ZERO["d"] * self._size
        for slot, t in zip(self._held(), times, strict=True):
            wide[slot] = t
        self._t, self._q = wide, 0.0

    def _refit(self, slot: int, value: float) -> None:
        """`value` into `slot` of narrow values where it is no integer of their divisor or
        array: a larger divisor or integer array for every held value, else doubles."""
        held = [s for s in self._held() if s != slot]
        values = [self._v[s] / self._d for s in held] + [value]
        found = _narrow(values)
        if found is None:
            self._v = array("d", map(self._d.__rtruediv__, self._v))
            self._d = WIDE
            self._v[slot] = value
            return
        self._d, self._v = found[0], _ZERO[found[1].typecode] * self._size
        for s, k in zip([*held, slot], found[1], strict=True):
            self._v[s] = k

    def compact(self) -> None:
        """Narrow the times and the values again where every held sample allows it."""
        if self._q and self._d:  # narrow times; values narrow (or never)
            return
        held = self._held()
        if not self._q:
            steps = _steps(self.times())
            if steps is not None:
                self._t, self._q = _ZERO["i"] * self._size, STEP
                for slot, k in zip(held, steps, strict=True):
                    self._t[slot] = k
        if not self._d:
            found = _narrow(list(self.values()))
            if found is not None:
                self._d, self._v = found[0], _ZERO[found[1].typecode] * self._size
                for slot, k in zip(held, found[1], strict=True):
                    self._v[slot] = k


Stored = TypeVar("Stored", "array[Any]", "memoryview[Any]")
"""Numbers as a ring stores them: its arrays' copies, or a view of such a copy (a save's)."""


def stored_times(raw: Stored, first: float, unit: float) -> array[float] | Stored:
    """The times of samples stored as `raw` (`SampleRing.stored`): with a `unit`, each the
    one before plus its step of `unit`s from `first` (the oldest slot's step unread); without
    one, `raw` itself (the times as doubles)."""
    if not unit:
        return raw
    return array("d", accumulate(map(mul, raw[1:], repeat(unit)), initial=first)
                 if raw else ())


def stored_values(raw: Stored, divisor: float) -> array[float] | Stored:
    """The values of samples stored as `raw`: each `k / divisor` (a divisor > 0), or `raw`
    itself (the values as doubles)."""
    return array("d", map(truediv, raw, repeat(divisor))) if divisor > 0 else raw  # (no list)


def _steps(times: Sequence[float]) -> list[int] | None:
    """Each time's step from the one before in units of `STEP` (0 for the first), if every
    step is an exact int32 both ways; None if not."""
    out = [0] * len(times)
    for i in range(1, len(times)):
        before, t = times[i - 1], times[i]
        step = (t - before) * STEPS
        if not NEG_INT32 <= step < INT32:
            return None
        k = int(step)
        if not (before + k * STEP == t and t - k * STEP == before and (
                t or math.copysign(1.0, t) > 0)):
            return None
        out[i] = k
    return out


def _narrow(values: Sequence[float]) -> tuple[float, array[int]] | None:
    """(divisor, integers) of `values` with the smallest divisor of `DIVISORS` each value is
    an integer of (`k / divisor` is the value, bit for bit), in the narrowest array; None if
    there is none."""
    for divisor in DIVISORS:
        try:
            ks = [round(value * divisor) for value in values]  # NaN, infinities: raise
        except (ValueError, OverflowError):
            return None
        if all(k / divisor == value and (k or math.copysign(1.0, value) > 0)
               for k, value in zip(ks, values, strict=True)):
            for code in "hi":
                try:
                    return divisor, array(code, ks)
                except OverflowError:
                    continue
            return None  # (a larger divisor: larger integers)
    return None
