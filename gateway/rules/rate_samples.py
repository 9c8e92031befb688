"""The samples of one rate window (`gateway.rules.rate.RateWindow.samples`): a ring of (time,
value) pairs in two `array('d')` — 16 bytes a sample, allocated when the window is made, so a
window's memory is the same in its first minutes as after a year (the deque of `(t, value)`
tuples it replaced took ~56–80 bytes a sample and grew as its window filled: an hour's window
took an hour to reach its size).

The ring is made with room for `size` samples and holds at most `capacity`: a window asks for
what it needs at one sample a second (`RateWindow`), and a ring that fills up grows once, to
its capacity — within the window's first length, and only under faster polls.

Read it as a sequence of `(t, value)` tuples, oldest first (`len`, indexing with negative
indices, slices as lists, iteration); the window changes it through `append`, `popleft`,
`set_last`, `clear` and `copy_from`. Values are stored as C doubles: every value a window
takes is a Python float already (`PointState.update` converts), so nothing is lost.

`RateWindow.add` and `fit` append and slide the ring through its fields (`_t`, `_v`, `_head`,
`_len`, `_size`) rather than its methods, a sample a second into each window: they keep its
invariants as `append` and `popleft` do. `copy_into` copies them into a save's buffer
(`gateway.rules.warm`). `batch_fit` is the least-squares fit of samples in one pass over them
(the reference of the window's incremental fit)."""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator, Sequence
from typing import overload


class SampleRing(Sequence[tuple[float, float]]):
    """(t, value) pairs, oldest first, at most `capacity` (see the module docstring)."""

    __slots__ = ("_head", "_len", "_size", "_t", "_v", "capacity")

    def __init__(self, capacity: int, size: int | None = None) -> None:
        if capacity < 1:
            raise ValueError("a sample ring holds at least one sample")
        self.capacity = capacity
        self._size = capacity if size is None else max(1, min(size, capacity))
        """Slots allocated (the ring wraps round at this)."""
        self._t = array("d", bytes(8 * self._size))
        self._v = array("d", bytes(8 * self._size))
        self._head = 0
        """Slot of the oldest sample."""
        self._len = 0

    @property
    def allocated(self) -> int:
        """Samples it has room for without growing."""
        return self._size

    def _grow(self, size: int) -> None:
        """Room for `size` samples, the oldest in slot 0."""
        extra = bytes(8 * (size - self._len))
        self._t = self.times() + array("d", extra)
        self._v = self.values() + array("d", extra)
        self._head, self._size = 0, size

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
        return self._t[slot], self._v[slot]

    def __iter__(self) -> Iterator[tuple[float, float]]:
        return zip(self.times(), self.values(), strict=True)

    def __repr__(self) -> str:
        return f"SampleRing({list(self)!r}, capacity={self.capacity})"

    def first_t(self) -> float:
        """Time of the oldest sample (the ring must not be empty)."""
        if not self._len:
            raise IndexError("an empty sample ring has no first sample")
        return self._t[self._head]

    def last_t(self) -> float:
        """Time of the newest sample (the ring must not be empty)."""
        return self._t[self._slot(-1)]

    def times(self) -> array[float]:
        """A copy of the times, oldest first."""
        head, end = self._head, self._head + self._len
        if end <= self._size:
            return self._t[head:end]
        return self._t[head:] + self._t[:end - self._size]

    def values(self) -> array[float]:
        """A copy of the values, oldest first."""
        head, end = self._head, self._head + self._len
        if end <= self._size:
            return self._v[head:end]
        return self._v[head:] + self._v[:end - self._size]

    def copy_into(self, times: memoryview[float], values: memoryview[float], at: int) -> int:
        """Write the samples, oldest first, into `times` and `values` from index `at`, without
        a copy in between; returns how many (a save's snapshot, `gateway.rules.warm`)."""
        n, head = self._len, self._head
        first = min(n, self._size - head)
        with memoryview(self._t) as own_t, memoryview(self._v) as own_v:
            times[at:at + first] = own_t[head:head + first]
            values[at:at + first] = own_v[head:head + first]
            if first < n:
                times[at + first:at + n] = own_t[:n - first]
                values[at + first:at + n] = own_v[:n - first]
        return n

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
        self._t[slot] = t
        self._v[slot] = value
        self._len = n + 1

    def popleft(self) -> tuple[float, float]:
        """Remove and return the oldest sample."""
        if not self._len:
            raise IndexError("pop from an empty sample ring")
        head = self._head
        out = self._t[head], self._v[head]
        self._head = 0 if head + 1 == self._size else head + 1
        self._len -= 1
        return out

    def set_last(self, t: float, value: float) -> None:
        """Replace the newest sample."""
        slot = self._slot(-1)
        self._t[slot] = t
        self._v[slot] = value

    def clear(self) -> None:
        self._head = self._len = 0

    def copy_from(self, other: SampleRing) -> None:
        """Hold `other`'s samples (the newest ones if it holds more than this ring can)."""
        times, values = other.times(), other.values()
        keep = min(len(times), self.capacity)
        if keep > self._size:
            self._len = 0
            self._grow(self.capacity)
        self._t[:keep] = times[len(times) - keep:]
        self._v[:keep] = values[len(values) - keep:]
        self._head, self._len = 0, keep


def batch_fit(samples: Sequence[tuple[float, float]], confidence: float, per: float
              ) -> tuple[float, float] | None:
    """(slope, confidence × standard error) per `per` of these samples in one pass over them,
    times from the first (what `RateWindow` computes incrementally; None: the times do not
    spread). The reference its tests compare with, and its path for non-finite values."""
    n = len(samples)
    t0 = samples[0][0]
    st = sv = stt = stv = 0.0
    for t, v in samples:
        x = t - t0
        st += x
        sv += v
        stt += x * x
        stv += x * v
    sxx = stt - st * st / n
    if sxx <= 1e-12:
        return None
    slope = (stv - st * sv / n) / sxx
    margin = 0.0
    if confidence and n > 2:
        intercept = (sv - slope * st) / n
        residual = 0.0
        for t, v in samples:
            r = v - intercept - slope * (t - t0)
            residual += r * r  # not r ** 2: a float power raises OverflowError (a value
            # above SANE), a product gives inf (an infinite margin: never past a limit)
        margin = confidence * math.sqrt(max(residual, 0.0) / (n - 2) / sxx)
    return slope * per, margin * per
