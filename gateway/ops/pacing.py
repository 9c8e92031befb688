"""A bound on the event loop time one HTTP server's handlers may take (`gateway.ops.http`).

The panel shares its event loop with the buses, the rules and the outputs. Without a bound, a
client that pipelines requests and never reads the answers had the loop render states back to
back (the socket buffers absorb megabytes, so nothing ever waited): 256 such connections held
the rules off for 38 s and a water leak alarmed 52 s late (the console audit). `LoopShare`
lets a server's handlers take at most `share` of the loop's time over a burst of `burst`
seconds; past it, requests wait their turn first come, first served (so an operator's
request waits behind at most one request per open connection, never for ever). A handler is
charged its duration, at most `MAX_CHARGE` (one that awaits a thread — a journal page, a
password hash — is not charged the thread's whole time). Idle means asleep: one timer, and
only while a request waits.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

SHARE = 0.25
"""The loop's time a server's handlers may take (the rest is the safety core's)."""
BURST = 0.1
"""Seconds of handler time that may be taken at once after a quiet spell."""
MAX_CHARGE = 0.02
"""Most a request is charged (seconds)."""


class LoopShare:
    """A server's handlers: at most `share` of the loop's time (see the module docstring)."""

    def __init__(self, share: float = SHARE, burst: float = BURST, *,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if not 0 < share <= 1 or burst <= 0:
            raise ValueError("share must be in (0, 1] and burst positive")
        self.share = share
        self.burst = burst
        self._clock = clock
        self._credit = burst
        self._at = clock()
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self.waited = 0
        """Requests that had to wait for their turn (a flood, or a burst of heavy pages)."""

    def _refill(self) -> float:
        now = self._clock()
        self._credit = min(self.burst, self._credit + (now - self._at) * self.share)
        self._at = now
        return self._credit

    async def turn(self) -> None:
        """Return when a request may run: at once if there is credit and nobody waits."""
        if not self._waiting and self._refill() > 0:
            return
        self.waited += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._arm()
        try:
            await future
        except asyncio.CancelledError:  # its connection was closed while it waited
            if future in self._waiting:
                self._waiting.remove(future)
            elif future.done() and not future.cancelled():
                self._arm()  # it had been given the turn: pass it on
            raise

    def spent(self, seconds: float) -> None:
        """A request ran for `seconds`: charge it, and give the next waiter its turn."""
        self._refill()
        self._credit -= min(max(seconds, 0.0), MAX_CHARGE)
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None or not self._waiting:
            return
        delay = max(0.0, -self._refill() / self.share)
        self._timer = asyncio.get_running_loop().call_later(delay, self._release)

    def _release(self) -> None:
        self._timer = None
        if self._refill() <= 0:
            self._arm()
            return
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(None)
                return  # its `spent` arms the timer for the next one
        # every waiter had gone
