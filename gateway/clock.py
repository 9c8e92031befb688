"""The clock the core receives, so tests and drills can run time faster or frozen; and how to
tell that its wall time was stepped (`WallStepWatch`)."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int:
        """Wall-clock time for timestamps (ns since the epoch, UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds for intervals; never goes back."""
        ...


class SystemClock:
    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told; for tests of the pure core."""

    def __init__(self, start_ns: int = 1_700_000_000_000_000_000, start_mono: float = 1000.0):
        self._ns = start_ns
        self._mono = start_mono

    def now_ns(self) -> int:
        return self._ns

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._ns += int(seconds * 1e9)
        self._mono += seconds

    def step_wall(self, seconds: float) -> None:
        """Step only the wall clock, forward or back (NTP stepping a Pi's clock that had no
        RTC, an operator's `date -s`); the monotonic clock does not move."""
        self._ns += int(seconds * 1e9)


STEP_NS = 200_000_000
"""A change of wall minus monotonic time this large between two batches is a step (an NTP
client slews smaller offsets, at most 0.5 ms a second: 0.2 s takes it 400 s)."""


class WallStepWatch:
    """How far the wall clock stepped since the last `check` (ns, whole milliseconds)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._offset = self._read()

    def _read(self) -> int:
        return self.clock.now_ns() - round(self.clock.monotonic() * 1e9)

    def check(self) -> int:
        """The step since the last check, 0 if under `STEP_NS` (slewing, read jitter)."""
        offset = self._read()
        step, self._offset = offset - self._offset, offset
        return 0 if abs(step) < STEP_NS else round(step / 1_000_000) * 1_000_000
