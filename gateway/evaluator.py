"""The evaluator: runs the safety core's rounds when one is owed, and sleeps otherwise.

A round is owed when a sample batch arrived or a config was applied (`owe`), or when the
safety core's next deadline has come (`SafetyCore.next_deadline`: an on- or off-delay, a stale
timeout, a flat-line or rate window, an output's `min_on`, a supervised output's feedback
limit, a shelf or suppression expiring). Between those the evaluator sleeps: no periodic tick.
An operator command may move a deadline (a shelve) and calls `reschedule`: the evaluator looks
again without running a round.

Rounds are spaced by at least `MIN_EVALUATION_SPACING`, and after a round that took c CPU
seconds the next waits c × (1 / `MAX_EVALUATION_SHARE` − 1): however many device batches
arrive, evaluating takes at most that share of a core (several batches then share a round).
The spacing is a time before which the next round may not start, slept out only when a round
is owed before it (a quiet site's evaluator does not wake once more after each round).
A round that raises is logged and retried after `FAILED_ROUND_RETRY` (or the next batch).

Liveness without a heartbeat: `lag()` is how long a round has been owed and not completed —
since the first batch not yet evaluated, or since the deadline it sleeps to (which a stuck
event loop would pass). An idle evaluator with nothing owed has lag 0. The health check and
the watchdog (gateway.ops.health, gateway.supervisor) judge a stalled evaluator by it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gateway.clock import Clock
from gateway.wakeup import Wakeup

log = logging.getLogger("roomwarden.daemon")

MIN_EVALUATION_SPACING = 0.01
"""Rounds run at most this often, however many batches arrive… (50 ms until 7 Dec 2026: a
hazard polled just after another device's batch on the same line waited out the rest of it —
the alarm latency bench's p99 559-611 ms, 525-539 at 10 ms; at 2,000 points 5 rounds a second
instead of 2, +0.1 % of a core, the CPU-share rule below still bounding them.)"""
MAX_EVALUATION_SHARE = 0.25
"""…and after a round that took c CPU seconds the next waits c × (1 / share − 1)."""
FAILED_ROUND_RETRY = 1.0
"""After a round that raised, the next one waits this long unless a batch arrives."""


class Evaluator:
    """Calls `run_round` when a round is owed (see the module docstring); `next_deadline`
    gives the monotonic time of the next round needed with no new sample (None: none)."""

    def __init__(self, clock: Clock, run_round: Callable[[], object],
                 next_deadline: Callable[[], float | None]) -> None:
        self.clock = clock
        self._run_round = run_round
        self._next_deadline = next_deadline
        self._wake = Wakeup()
        """Ends a sleep at `owe` or `reschedule` (a wake-up while awake is forgotten)."""
        self.owed_since: float | None = clock.monotonic()
        """Since when a round is owed and none completed (the first one from the start);
        None: nothing owed."""
        self.sleeping_until: float | None = None
        """The deadline the evaluator sleeps to (None: awake, or asleep until a batch)."""
        self.failed = False
        self._fallback: float | None = None

    def owe(self) -> None:
        """A round is owed now (a sample batch arrived, a config was applied)."""
        if self.owed_since is None:
            self.owed_since = self.clock.monotonic()
        self._wake.set()

    def reschedule(self) -> None:
        """What is due may have changed (an operator command): look at the deadline again."""
        self._wake.set()

    def round_done(self) -> None:
        """A round completed (also one run outside `run`, e.g. by a test)."""
        self.owed_since = None
        self.failed = False
        self._fallback = None

    def lag(self) -> float:
        """Seconds a round has been owed and not done; 0 while idle on time."""
        now = self.clock.monotonic()
        since = [t for t in (self.owed_since, self.sleeping_until) if t is not None and t <= now]
        return now - min(since) if since else 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        not_before = float("-inf")
        """(loop time) No round starts before this: the spacing after the last one."""
        while True:
            # honour a pending cancel here (one an await swallowed: Python 3.11's wait_for and
            # timeout can, as what they wait for comes), or a stop would wait for ever
            if me is not None and me.cancelling():
                raise asyncio.CancelledError
            now = self.clock.monotonic()
            due = self._deadline(now)
            if self.owed_since is None and (due is None or due > now):
                await self._sleep(due, now)
                continue
            rest = not_before - loop.time()
            if rest > 0:  # owed, but the last round was too recent
                self.sleeping_until = None
                await asyncio.sleep(rest)
                continue
            self.sleeping_until = None
            began, cpu = loop.time(), time.thread_time()
            try:
                self._run_round()
            except Exception:  # a rule bug must not stop the other rules for good
                log.exception("event=evaluation_failed")
                self.failed = True
                if self.owed_since is None:
                    self.owed_since = now
                await self._sleep(self.clock.monotonic() + FAILED_ROUND_RETRY,
                                  self.clock.monotonic())
                continue
            self.round_done()
            # the round's CPU time (not wall time: a busy machine does not thin out the rounds)
            cost = time.thread_time() - cpu
            not_before = max(began + MIN_EVALUATION_SPACING,
                             loop.time() + cost * (1 / MAX_EVALUATION_SHARE - 1))

    def _deadline(self, now: float) -> float | None:
        """The core's next deadline; if asking raises (a bug), a round within a second."""
        try:
            return self._next_deadline()
        except Exception:
            log.exception("event=evaluation_deadline_failed")
            if self._fallback is None:  # one fixed time, not one that moves with each look
                self._fallback = now + FAILED_ROUND_RETRY
            return self._fallback

    async def _sleep(self, until: float | None, now: float) -> None:
        """Until a wake-up (`owe`, `reschedule`) or `until` (monotonic; None: no deadline)."""
        self.sleeping_until = until
        await self._wake.wait(None if until is None else max(0.0, until - now))
