"""How late the event loop wakes: a probe of its liveness the watchdog and /healthz can see
(liveness audit L1).

The audit held the alarm journal's lock from another process: every round of the rules then
blocked the loop 10 s (two 5 s waits for SQLite's lock), yet the watchdog kept being fed —
between two blocks the feeder ran, and the evaluator's `lag()` only asks whether *some* round
finished within 10 s — and /healthz answered "ok", 9 s late. A loop that is busy or blocked
wakes a sleeper late: the watchdog feeder (gateway.service.watchdog) tells this probe each time
it goes to sleep (`sleeping`) and wakes (`woke`), so the probe adds no wake-up of its own (idle
means asleep): the feeder sleeps to its next ping — half of `WatchdogSec=` — and, while the
pings are withheld, one second at a time.

A wake-up `LATE_AFTER` seconds or more past its time is late. `LATE_COUNT` late ones among the
last `WINDOW` (`problem`) withhold the watchdog — systemd restarts a gateway wedged that way —
and make /healthz degraded (gateway.ops.liveness_health); one late wake-up alone (a long
collection, a suspended VM) is only shown. A healthy gateway's feeder wakes within a few
milliseconds of its time.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

LATE_AFTER = 2.0
"""Seconds past its time at which a wake-up counts as late."""
WINDOW = 3
"""Wake-ups remembered."""
LATE_COUNT = 2
"""Late wake-ups among the remembered ones that make the loop count as blocked."""


class LoopLag:
    """Lateness of the event loop, measured at a sleeper's wake-ups."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *,
                 late_after: float = LATE_AFTER, window: int = WINDOW,
                 late_count: int = LATE_COUNT) -> None:
        """`clock`: the monotonic clock the sleeper's sleeps run on (the event loop's)."""
        if late_count < 1 or window < late_count or late_after <= 0:
            raise ValueError("need 1 <= late_count <= window and late_after > 0")
        self._clock = clock
        self.late_after = late_after
        self.late_count = late_count
        self.recent: deque[float] = deque(maxlen=window)
        """Seconds late of the last wake-ups, oldest first."""
        self.wakeups = 0
        self.worst = 0.0
        """The latest wake-up since start (seconds)."""
        self._due: float | None = None

    def sleeping(self, seconds: float) -> None:
        """The sleeper goes to sleep for `seconds`."""
        self._due = self._clock() + max(0.0, seconds)

    def woke(self) -> float:
        """The sleeper woke: how late, in seconds (remembered)."""
        if self._due is None:
            return 0.0
        late = max(0.0, self._clock() - self._due)
        self._due = None
        self.recent.append(late)
        self.wakeups += 1
        self.worst = max(self.worst, late)
        return late

    def late(self) -> list[float]:
        """The remembered wake-ups that came late (seconds late each)."""
        return [s for s in self.recent if s >= self.late_after]

    def problem(self) -> str | None:
        """Why the loop counts as blocked (None: it does not) — a watchdog check."""
        late = self.late()
        if len(late) < self.late_count:
            return None
        return (f"event loop blocked: {len(late)} of its last {len(self.recent)} wake-ups "
                f"came {min(late):.1f}-{max(late):.1f} s late (limit {self.late_after:g} s)")

    def summary(self) -> str:
        """The remembered wake-ups in words (for /healthz and status)."""
        if not self.recent:
            return "not measured yet (the watchdog feeder measures it)"
        shown = ", ".join(f"{s:.2f}" for s in self.recent)
        return f"last wake-ups {shown} s late (limit {self.late_after:g} s)"
