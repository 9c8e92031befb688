"""Bus silence (gateway.field.bus_loop.BusLoop._note_quiet) on scripted devices: what the RTU
audit found wrong with its first form — a live device taken offline by one stray failure
because its neighbours were dead, silence late or never while one device was out for repair or
polled every 30 s, a crashing poller taken for a dead bus — and what it is for: the whole bus
offline after `2 × offline_after` silent devices, not each after its own `offline_after`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gateway.config.site import FailurePolicy
from gateway.field.bus_loop import BusLoop
from gateway.field.poll import DevicePoller, PollResult
from gateway.field.sample import Sample
from tests.helpers import until

POLICY = FailurePolicy(offline_after=3, backoff_max=0.05, backoff_multiplier=2.0)


class Link:
    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None


class Scripted:
    """A device whose n-th poll answers when `answers(n)` says so (after a short wait, as a
    timeout would take)."""

    def __init__(self, device_id: str, answers: Callable[[int], bool],
                 interval: float = 0.01) -> None:
        self.device_id, self.interval, self.answers, self.polls = device_id, interval, answers, 0

    async def poll(self) -> PollResult:
        self.polls += 1
        await asyncio.sleep(0.001)
        if self.answers(self.polls):
            return PollResult([], answered=True)
        return PollResult([], answered=False, error="timeout: no valid reply")


class Crashing(Scripted):
    async def poll(self) -> PollResult:
        raise RuntimeError("a driver bug")


class Sink:
    def __init__(self) -> None:
        self.offline: dict[str, int] = {}
        """Device → how many `online: false` samples it had."""

    def __call__(self, batch: list[Sample]) -> None:
        for s in batch:
            if s.point.endswith(".online") and s.value is False:
                device = s.point.removesuffix(".online")
                self.offline[device] = self.offline.get(device, 0) + 1


async def running(pollers: list[Scripted], sink: Sink, until_true: Callable[[BusLoop], bool],
                  timeout: float = 10.0, policy: FailurePolicy = POLICY) -> BusLoop:
    loop = BusLoop("b", Link(), list[DevicePoller](pollers), sink, policy)
    task = asyncio.create_task(loop.run())
    try:
        await until(lambda: until_true(loop), timeout, "the scripted bus")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return loop


def dead(_: int) -> bool:
    return False


def alive(_: int) -> bool:
    return True


async def test_a_live_device_with_dead_neighbours_needs_its_own_failures() -> None:
    """Two devices dead (out for repair, still configured), the third fails every other poll:
    its answers in between show the line alive, so it never goes offline (the first form
    counted the dead devices' failures and took it offline at one failure of its own)."""
    flaky = Scripted("d3", lambda n: n % 2 == 0 or n < 3)
    sink = Sink()
    loop = await running([Scripted("d1", dead), Scripted("d2", dead), flaky], sink,
                         lambda _: flaky.polls >= 200)
    assert not loop.silent
    assert "d3" not in sink.offline
    assert loop.stats.device_health["d3"].online is True or \
        loop.stats.device_health["d3"].consecutive_failures < 3


async def test_one_device_out_for_repair_does_not_hold_back_the_bus_silence() -> None:
    """One device dead long before; then the bus's power goes: the other five are offline
    together after their first failures, not each after three (nor at the dead one's backed-off
    poll)."""
    cut = asyncio.Event()
    answering = [Scripted(f"d{i}", lambda n: not cut.is_set()) for i in range(2, 7)]
    pollers = [Scripted("d1", dead), *answering]
    sink = Sink()

    def cut_when_settled(loop: BusLoop) -> bool:
        health = loop.stats.device_health
        if health["d1"].consecutive_failures >= 8 \
                and all(health[p.device_id].online for p in answering):  # d1 polled ~2.5 s apart
            cut.set()
        return cut.is_set() and all(health[p.device_id].online is False for p in answering)

    loop = await running(pollers, sink, cut_when_settled, policy=FailurePolicy(
        offline_after=3, backoff_max=5.0, backoff_multiplier=2.0))  # d1 backed off to 5 s
    assert loop.silent
    assert max(loop.stats.device_health[p.device_id].consecutive_failures
               for p in answering) < 3


async def test_a_device_polled_every_30_s_does_not_hold_back_the_bus_silence() -> None:
    """Seven devices, one polled every 30 s: the bus goes silent once six distinct devices
    (2 × offline_after) failed in a row, without waiting for the slow one's next poll."""
    cut = asyncio.Event()
    fast = [Scripted(f"d{i}", lambda n: not cut.is_set()) for i in range(1, 7)]
    slow = Scripted("meter", lambda n: not cut.is_set(), interval=30.0)
    sink = Sink()

    def cut_when_settled(loop: BusLoop) -> bool:
        health = loop.stats.device_health
        if all(h.online for h in health.values()):
            cut.set()
        return cut.is_set() and loop.silent

    loop = await running([slow, *fast], sink, cut_when_settled)
    health = loop.stats.device_health
    assert all(h.online is False for h in health.values())
    assert health["meter"].consecutive_failures == 0  # declared, not polled since
    assert max(health[p.device_id].consecutive_failures for p in fast) < 3
    assert sink.offline.get("meter") == 1


@pytest.mark.parametrize("n", [1, 2])
async def test_a_crashing_poller_or_a_lone_device_is_not_a_silent_bus(n: int) -> None:
    """A poll that raises (a bug) says nothing of the bus; a bus of one device has its own
    count only (no `bus_silent` line at each of its failures)."""
    pollers: list[Scripted] = [Crashing(f"c{i}", dead) for i in range(n)]
    if n == 1:
        pollers = [Scripted("only", dead)]
    sink = Sink()
    loop = await running(pollers, sink, lambda lp: all(
        h.online is False for h in lp.stats.device_health.values()))
    assert not loop.silent
    assert all(h.consecutive_failures >= 3 for h in loop.stats.device_health.values())


async def test_the_power_back_is_seen_within_seconds_not_at_the_end_of_the_back_offs() -> None:
    """The RTU audit: a silent bus backs its devices off in lockstep, so the first answer after
    the power returned came at the end of their back-offs (7 s after a 25 s outage, up to
    `backoff_max`, 60 s by default). While the bus is silent some device is asked about every
    `silent_probe` seconds."""
    power = asyncio.Event()
    power.set()
    pollers = [Scripted(f"d{i}", lambda n: power.is_set()) for i in range(1, 5)]
    loop = BusLoop("b", Link(), list[DevicePoller](pollers), Sink(), FailurePolicy(
        offline_after=3, backoff_max=30.0, backoff_multiplier=3.0))
    loop.silent_probe = 0.1  # (2 s in service) each device at most every 0.4 s while silent
    health = loop.stats.device_health
    task = asyncio.create_task(loop.run())
    try:
        await until(lambda: all(h.online for h in health.values()), 5, "all online")
        power.clear()
        await until(lambda: loop.silent, 5, "the bus silent")
        await asyncio.sleep(4.0)  # backed off: 0.01 s × 3^n, 2.4 then 7.3 s by now
        power.set()
        back = asyncio.get_running_loop().time()
        await until(lambda: all(h.online for h in health.values()), 5, "all back")
        assert asyncio.get_running_loop().time() - back < 1.5
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
