"""Drift repair across wall-clock steps (F1 of the output audit): a Pi without an RTC has its
clock stepped by NTP, forward or back, while the gateway runs (docs/time.md). The driver tells
a poll that came after its write from one before it by when the sample arrived, on the
monotonic clock, never by the sample's wall-clock stamp.

Before the fix a step back of 1 h made every later poll of the coil look older than the last
write: a siren switched off at its module (a front-panel switch, a reset) stayed off for the
hour, with status saying it was confirmed on."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.clock import SystemClock
from gateway.sim.signals import Constant
from tests.actions.test_driver import open_rig, settle
from tests.helpers import until


class SteppableClock(SystemClock):
    """The system clock, its wall time stepped by the test (monotonic time untouched)."""

    def __init__(self) -> None:
        self.offset = 0

    def now_ns(self) -> int:
        return time.time_ns() + self.offset


@pytest.mark.parametrize("step_s", [-3600.0, 3600.0])
async def test_a_coil_switched_off_after_a_clock_step_is_repaired(
        tmp_path: Path, step_s: float) -> None:
    clock = SteppableClock()
    async with open_rig(tmp_path, clock=clock) as rig:
        rig.driver.apply({"siren": True})
        await settle(rig, "siren")
        state = rig.driver.state["siren"]
        assert state.confirmed is True and rig.site.read_point("do1.do1") is True
        latest, before = rig.driver.latest, rig.driver.latest.latest.get("do1.do1")
        await until(lambda: latest.latest.get("do1.do1") is not before, 5.0,
                    "a poll of the siren's coil after the write")
        clock.offset = int(step_s * 1e9)  # NTP steps the wall clock
        writes = state.writes
        loop = asyncio.get_running_loop()
        # the coil as written, polled after the step: nothing to repair
        stepped = loop.time()
        while loop.time() - stepped < 1.0:
            rig.driver.apply({"siren": True})
            await asyncio.sleep(0.05)
        assert state.writes == writes
        rig.site.set_signal("do1.do1", Constant(value=False))  # switched off at the module
        flipped = loop.time()
        while rig.site.read_point("do1.do1") is not True:
            # repaired at the module's next poll (every 0.3 s); before the fix, never
            assert loop.time() - flipped < 5.0, (
                f"siren left off {step_s:+g} s after a clock step: {state}")
            rig.driver.apply({"siren": True})
            await asyncio.sleep(0.05)
        await settle(rig, "siren", after=writes)
        assert state.writes == writes + 1 and state.confirmed is True and not state.failed
