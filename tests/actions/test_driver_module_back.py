"""A relay module that was down answers again (the output audit, F8 and F9).

A module whose polls failed too (down, not merely deaf to writes) has its failed outputs
written at the first poll it answers, not after their back-off — whether its polls were failing
when the write failed or began failing after it (it died at the alarm).

F9: a write confirmed before any poll has found the module back counts as the module answering:
before the fix the next round declared the output lost again ("module not answering: state
unknown") and `actions.output_failure` went returned → active → returned within 100 ms."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.sim.faults import Fault, FaultMode
from tests.actions.test_driver import Rig, open_rig, settle
from tests.helpers import until

DEAD = Fault(mode=FaultMode.NO_REPLY)
ALIVE = Fault(mode=FaultMode.NONE)


async def written_within(rig: Rig, output: str, seconds: float) -> float:
    """Re-apply `output` on, as the daemon does several times a second, until it is confirmed;
    the seconds it took (fails after `seconds`)."""
    state = rig.driver.state[output]
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not (state.confirmed is True and not state.failed):
        assert loop.time() - start < seconds, state
        rig.driver.apply({output: True})
        await asyncio.sleep(0.05)
    return loop.time() - start


@pytest.mark.slow
async def test_a_module_that_was_down_is_written_at_its_first_answer(tmp_path: Path) -> None:
    """The fan's back-off is 5 s; its module answers again within a second (polled at least
    every second on this bus): the fan is written then, well before the back-off."""
    async with open_rig(tmp_path) as rig:
        await down_and_back(rig)


async def down_and_back(rig: Rig) -> None:
    health = rig.loop.stats.device_health["do1"]
    state = rig.driver.state["fan"]
    # down when the write fails
    rig.site.set_fault("do1", DEAD)
    await until(lambda: health.online is False, 5.0, "do1 offline")
    rig.driver.apply({"fan": True})
    await settle(rig, "fan", 5.0)
    assert state.failed and state.retry_at - rig.driver.clock.monotonic() > 4.0
    rig.site.set_fault("do1", ALIVE)
    assert await written_within(rig, "fan", 3.0) < 3.0
    # dies at the write (its polls were answered), its polls fail after it
    writes = state.writes
    rig.site.set_fault("do1", DEAD)
    rig.driver.apply({"fan": False})
    await settle(rig, "fan", 5.0, after=writes)
    assert state.failed and state.retry_at - rig.driver.clock.monotonic() > 3.0
    while not health.consecutive_failures:
        rig.driver.apply({"fan": False})
        await asyncio.sleep(0.05)
    rig.site.set_fault("do1", ALIVE)
    loop = asyncio.get_running_loop()
    back = loop.time()
    while not (state.confirmed is False and not state.failed):
        assert loop.time() - back < 3.0, state
        rig.driver.apply({"fan": False})
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_a_write_confirmed_before_the_module_s_next_poll_is_not_declared_lost(
        tmp_path: Path) -> None:
    """The module is dead while the siren is wanted. It answers again just after one of its
    (backed-off) polls failed, with the siren's retry due: the retry confirms the siren before
    any poll has found the module back, and the output stays confirmed — not failed again —
    until that poll. When the module fails its polls again, the output is lost again."""
    async with open_rig(tmp_path) as rig:
        await confirmed_before_its_poll(rig)


async def confirmed_before_its_poll(rig: Rig) -> None:
    health = rig.loop.stats.device_health["do1"]
    state = rig.driver.state["siren"]
    clock = rig.driver.clock
    rig.site.set_fault("do1", DEAD)
    await until(lambda: health.online is False, 5.0, "do1 offline")
    rig.driver.apply({"siren": True})
    await settle(rig, "siren", 5.0)
    assert state.failed
    await until(lambda: clock.monotonic() >= state.retry_at, 5.0, "the retry due")
    polls = health.polls
    await until(lambda: health.polls > polls, 5.0, "a failed poll of do1")
    # its next poll is a second away (the bus's backoff_max): the retry goes first
    rig.site.set_fault("do1", ALIVE)
    writes = state.writes
    rig.driver.apply({"siren": True})
    await settle(rig, "siren", after=writes)
    assert state.confirmed is True and not state.failed
    assert health.online is False, "the module was polled before the write: no test"
    errors: list[str | None] = []
    while health.online is False:
        rig.driver.apply({"siren": True})  # the daemon's rounds meanwhile
        errors.append(state.last_error)
        await asyncio.sleep(0.02)
    assert errors and errors == [None] * len(errors), errors
    assert state.writes == writes + 1
    rig.site.set_fault("do1", DEAD)
    await until(lambda: health.online is False, 5.0, "do1 offline again")
    rig.driver.apply({"siren": True})
    assert state.failed and "not answering" in (state.last_error or "")
