"""A relay module that fails shares its RS-485 line with detectors (the output audit, F2 and F8):
its writes must neither keep the bus from the detectors nor cost the bus a timeout per poll.

F2: the module dies at the moment of the alarm (its polls were answered until then). Before the
fix, the siren's first write made `write_retries` + 1 attempts inside one bus job, each waiting
out the timeout, and a poll held off behind it (the dead unit's own) bought the fan's write
another turn: a smoke input on the same line was read 5.4 s late with a 1 s timeout.

F8: the module answers its polls but not coil writes (a hung output stage, a module that only
implements "write multiple coils"). Before the fix the write back-off's shortcut for a module
that "came back" applied after every answered poll: one write and one bus timeout per poll."""

from __future__ import annotations

import asyncio
import copy
import itertools
from pathlib import Path
from typing import Any

import pytest

import gateway.sim.modbus_sim as modbus_sim
from gateway.actions.driver import backoff_delay
from gateway.sim.faults import Fault, FaultMode
from gateway.sim.signals import Constant
from tests.actions.test_driver import SITE, open_rig, settle
from tests.helpers import until


def shared_bus(timeout: str) -> dict[str, Any]:
    """`SITE` with a smoke input module on the relay module's line, and that line's timeout."""
    site = copy.deepcopy(SITE)
    site["buses"][0]["timeout"] = timeout
    site["devices"].append({"id": "di1", "bus": "rs485", "unit": 3,
                            "profile": "generic_di_module", "room": "batt",
                            "poll_interval": "300ms"})
    return site


def writes_at(rig: Any, point: str) -> int:
    """Write frames of `point`'s coil that reached the simulated module."""
    return sum(1 for e in rig.site.log("do1") if e.point == point and e.kind == "write")


@pytest.mark.slow
async def test_a_module_dying_at_the_alarm_does_not_hold_the_bus_from_the_smoke_input(
        tmp_path: Path) -> None:
    """Timeout 1 s. The module stops answering as the siren and fan are asked for; smoke 0.1 s
    later. The smoke input is read within about one timeout (before: after 4 to 5); the siren's
    write still makes its `write_retries` + 1 attempts, the fan's one (the module is known not
    to answer after the siren's first attempt went unanswered), with polls in between."""
    async with open_rig(tmp_path, shared_bus("1s")) as rig:
        latest = rig.driver.latest
        health = rig.loop.stats.device_health["do1"]
        await until(lambda: health.online is True and "di1.di1" in latest.latest, 5.0,
                    "the module and the smoke input polled")
        loop = asyncio.get_running_loop()
        rig.site.set_fault("do1", Fault(mode=FaultMode.NO_REPLY))
        alarm = loop.time()
        rig.driver.apply({"siren": True, "fan": True})
        await asyncio.sleep(0.1)
        rig.site.set_signal("di1.di1", Constant(value=True))
        polled: list[float] = []  # when each poll of the smoke input came in
        seen: object = None
        smoke: float | None = None
        siren, fan = rig.driver.state["siren"], rig.driver.state["fan"]
        while siren.pending or fan.pending or smoke is None:
            assert loop.time() - alarm < 20.0, (smoke, siren, fan)
            sample = latest.latest.get("di1.di1")
            if sample is not seen:
                seen = sample
                polled.append(loop.time())
                if smoke is None and sample is not None and sample.value is True:
                    smoke = loop.time() - alarm
            await asyncio.sleep(0.02)
        gaps = [b - a for a, b in itertools.pairwise(polled)]
        # one write attempt (1 s) and a poll, not four attempts and the fan's write (5+ s)
        assert smoke is not None and smoke < 2.5, (smoke, gaps)
        assert max(gaps) < 2.5, gaps
        assert siren.failed and fan.failed
        assert writes_at(rig, "do1.do1") == 4 and writes_at(rig, "do1.do3") == 1


def deaf_to_coil_writes(unit: int) -> Any:
    """The simulator's reply hook with unit `unit` silent on "write single coil" (05)."""
    answer = modbus_sim.ModbusBusSim._packet

    def packet(self: modbus_sim.ModbusBusSim, handler: Any, sending: bool, data: bytes
               ) -> bytes:
        if sending and len(data) > 2 and data[0] == unit and data[1] == 5:
            return b""
        return answer(self, handler, sending, data)

    return packet


WINDOW = 8.0


@pytest.mark.slow
async def test_a_module_that_answers_polls_but_not_writes_is_written_on_the_backoff(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its polls keep it online; every write to it times out. The daemon re-applies the siren
    several times a second: over 8 s the module sees one write per back-off step (siren: 0.5,
    1, 2, 2 s …), not one per poll (every 0.3 s; before the fix about 15)."""
    monkeypatch.setattr(modbus_sim.ModbusBusSim, "_packet", deaf_to_coil_writes(5))
    async with open_rig(tmp_path) as rig:
        health = rig.loop.stats.device_health["do1"]
        await until(lambda: health.online is True, 5.0, "the module polled")
        rig.driver.apply({"siren": True})
        await settle(rig, "siren", 5.0)
        state = rig.driver.state["siren"]
        assert state.failed and "timeout" in (state.last_error or "")
        loop = asyncio.get_running_loop()
        start, frames, polls = loop.time(), writes_at(rig, "do1.do1"), health.polls
        while loop.time() - start < WINDOW:
            rig.driver.apply({"siren": True})
            await asyncio.sleep(0.05)
        steps, elapsed = 0, 0.0  # attempts the back-off allows within the window
        while elapsed <= WINDOW:
            steps += 1
            elapsed += backoff_delay(rig.driver.outputs["siren"], steps)
        written = writes_at(rig, "do1.do1") - frames
        assert 2 <= written <= steps, (written, steps)
        assert health.polls - polls >= 10 and health.consecutive_failures == 0
        assert state.failed and state.failing_for == 1 + written
