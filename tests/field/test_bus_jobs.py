"""Output writes (bus jobs) and polls taking turns on one bus (gateway.field.bus_loop.BusLoop.
_run_jobs), on scripted devices: once writes have held the bus `JOB_TURN` and polls are due,
every poll due by then goes before the next write — also when the first of them is held off
(a dead unit whose late reply may still come, `hold_off`), which before the fix gave the writes
a whole new turn while the detectors behind it were overdue (the output audit, F2). And writes
are never starved by polls that are always due."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import pytest

import gateway.field.bus_loop as bus_loop
from gateway.config.site import FailurePolicy
from gateway.field.bus_loop import BusLoop
from gateway.field.poll import DevicePoller, PollResult
from gateway.field.sample import Sample
from tests.helpers import until

TURN = 0.05
"""`JOB_TURN` in these tests (0.5 s in the gateway): a job of `JOB` seconds uses it up."""
JOB = 0.08


class Link:
    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None


class Device:
    """Answers at once; logs each poll in `order`. `held` > 0: a unit the bus loop must not
    ask yet (it keeps being held off, as a dead unit's guard re-armed by failed writes is)."""

    def __init__(self, device_id: str, order: list[str], interval: float, held: float = 0.0
                 ) -> None:
        self.device_id, self.order, self.interval, self.held = device_id, order, interval, held

    def hold_off(self) -> float:
        return self.held

    async def poll(self) -> PollResult:
        self.order.append(self.device_id)
        return PollResult([], answered=True)


def ignore(_: list[Sample]) -> None:
    return None


async def run_with_jobs(devices: list[Device], order: list[str], jobs: int) -> list[str]:
    """Run the bus with `jobs` writes of `JOB` seconds each queued before it starts, until they
    are done; the order of polls and writes."""
    loop = BusLoop("b", Link(), list[DevicePoller](devices), ignore, FailurePolicy())

    def job(n: int) -> Callable[[], Awaitable[None]]:
        async def write() -> None:
            order.append(f"write{n}")
            await asyncio.sleep(JOB)
        return write

    for n in range(1, jobs + 1):
        loop.submit(job(n))
    task = asyncio.create_task(loop.run())
    try:
        await until(lambda: f"write{jobs}" in order, 10.0, "the writes")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return order


async def test_a_held_off_poll_gives_the_writes_no_new_turn_while_others_are_due(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The dead unit is first in the poll queue and held off; the smoke input behind it is
    due. After a write that used up the turn, the smoke input is polled before the next write
    (before the fix: write, write, smoke)."""
    monkeypatch.setattr(bus_loop, "JOB_TURN", TURN)
    order: list[str] = []
    dead = Device("dead", order, interval=0.01, held=60.0)
    smoke = Device("smoke", order, interval=0.01)
    await run_with_jobs([dead, smoke], order, jobs=3)
    writes = [n for n, what in enumerate(order) if what.startswith("write")]
    assert "dead" not in order
    assert order[0] == "write1" and len(writes) == 3
    # a poll of the smoke input between every two writes
    assert all("smoke" in order[a + 1:b] for a, b in itertools.pairwise(writes)), order


async def test_polls_always_due_do_not_starve_the_writes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Polls due all the time (intervals far shorter than a write): the writes still go, each
    after the polls due when the one before it ended."""
    monkeypatch.setattr(bus_loop, "JOB_TURN", TURN)
    order: list[str] = []
    devices = [Device(f"d{n}", order, interval=0.001) for n in range(3)]
    await run_with_jobs(devices, order, jobs=4)
    writes = [n for n, what in enumerate(order) if what.startswith("write")]
    assert len(writes) == 4
    assert all(b - a <= 7 for a, b in itertools.pairwise(writes)), order
