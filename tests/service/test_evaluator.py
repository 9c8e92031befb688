"""The evaluator (gateway.evaluator) on a real event loop: a round when one is owed or the
next deadline comes, none in between; a failing round leaves the round owed (lag grows, so
the health check and the watchdog see it) and is retried."""

from __future__ import annotations

import asyncio
import time

from gateway.clock import SystemClock
from gateway.evaluator import Evaluator


class Core:
    """What the evaluator drives: rounds counted, a settable next deadline."""

    def __init__(self) -> None:
        self.rounds: list[float] = []
        self.deadline: float | None = None
        self.fail = False

    def round(self) -> None:
        self.rounds.append(time.monotonic())
        if self.fail:
            raise RuntimeError("a rule bug")
        if self.deadline is not None and self.deadline <= time.monotonic():
            self.deadline = None  # the timer fired


async def test_rounds_come_with_samples_and_deadlines_only() -> None:
    core = Core()
    evaluator = Evaluator(SystemClock(), core.round, lambda: core.deadline)
    task = asyncio.create_task(evaluator.run())
    try:
        await asyncio.sleep(0.3)
        assert len(core.rounds) == 1  # the first round is owed from the start, then asleep
        assert evaluator.lag() == 0.0 and evaluator.sleeping_until is None

        evaluator.owe()  # a batch arrived
        await asyncio.sleep(0.2)
        assert len(core.rounds) == 2

        due = time.monotonic() + 0.4
        core.deadline = due
        evaluator.reschedule()  # e.g. a shelve: look at the deadline again
        await asyncio.sleep(0.2)
        assert len(core.rounds) == 2 and evaluator.sleeping_until == due
        await asyncio.sleep(0.5)
        assert len(core.rounds) == 3 and core.rounds[-1] >= due
        await asyncio.sleep(0.3)
        assert len(core.rounds) == 3 and evaluator.lag() == 0.0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_failing_round_stays_owed_and_is_retried() -> None:
    core = Core()
    core.fail = True
    evaluator = Evaluator(SystemClock(), core.round, lambda: core.deadline)
    task = asyncio.create_task(evaluator.run())
    try:
        await asyncio.sleep(1.5)
        assert 2 <= len(core.rounds) <= 3  # retried after FAILED_ROUND_RETRY, not spinning
        assert evaluator.lag() >= 1.0 and evaluator.failed
        core.fail = False
        evaluator.owe()
        await asyncio.sleep(0.2)
        assert evaluator.lag() == 0.0 and not evaluator.failed
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_failing_deadline_falls_back_to_a_round_a_second() -> None:
    core = Core()

    def broken() -> float | None:
        raise RuntimeError("a deadline bug")

    evaluator = Evaluator(SystemClock(), core.round, broken)
    task = asyncio.create_task(evaluator.run())
    try:
        await asyncio.sleep(1.6)
        assert 2 <= len(core.rounds) <= 3 and not task.done()  # the evaluator lives on
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
