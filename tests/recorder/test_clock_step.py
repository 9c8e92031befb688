"""A wall-clock step (NTP stepping a Pi without an RTC, an operator's `date -s`) while the
gateway records: the flight recorder and an open incident stay on one timeline, the new clock's
(gateway/recorder/clockstep.py).

Before, a step forward past `max_duration` closed an open incident at once, with the fire still
burning, and an hour-long hole in its samples; a step back lost every sample until the clock
caught up (they were older than the last one before the step) and ran the incident on past its
end. The end-to-end tests run a real gateway on a simulated room, its wall clock stepped while
the fire is on."""

from __future__ import annotations

import asyncio
import time
from itertools import accumulate, pairwise
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.clock import ManualClock, SystemClock
from gateway.config.loader import load_gateway_config
from gateway.contract.wire import AlarmRef
from gateway.daemon import Gateway
from gateway.field.sample import Quality, Sample
from gateway.recorder.clockstep import STEP_NS, WallStepWatch, restamped
from gateway.recorder.report import clock_steps, render
from gateway.recorder.ring import CHUNK, PointRing
from gateway.recorder.store import IncidentStore
from gateway.sim.signals import Constant, Noise
from gateway.sim.site import SimulatedSite
from tests.recorder.conftest import ACK_NOTE, FIRE, MAX_DURATION, POLL, PRE, SITE, until

T0 = 1_700_000_000_000  # ms


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.integers(1, 40_000), min_size=1, max_size=3 * CHUNK + 40),
       values=st.lists(st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.integers(-9, 9),
                                 st.booleans()), min_size=1, max_size=8),
       at=st.integers(0, 3 * CHUNK + 40),
       by=st.integers(-10**10, 10**10).filter(lambda d: d != 0))
def test_a_shifted_ring_reads_back_its_samples_moved_and_goes_on(
        steps: list[int], values: list[float | int | bool], at: int, by: int) -> None:
    """Shifted after any number of samples (sealed chunks, an open chunk, both, none), a ring
    gives every sample it held moved by the shift, and the samples appended after it as they
    came."""
    ring = PointRing(10**9, 10**6)
    times = list(accumulate(steps, initial=T0))[1:]
    at = min(at, len(times))
    expected = []
    for n, ms in enumerate(times):
        if n == at:
            ring.shift(by)
        value = values[n % len(values)]
        ts = ms + (by if n >= at else 0)  # after the shift, stamped on the new clock
        ring.append(ts * 10**6, value, Quality.GOOD)
        expected.append((ts * 10**6, value))
    if at == len(times):
        ring.shift(by)
        expected = [(ts + by * 10**6, v) for ts, v in expected]
    else:
        expected = [(ts + by * 10**6, v) if n < at else (ts, v)
                    for n, (ts, v) in enumerate(expected)]
    got = [(s.ts, s.value) for s in ring.samples()]
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [v for _, v in got] == pytest.approx([v for _, v in expected])
    first, last = expected[0][0], expected[-1][0]
    assert len(ring.samples(first, last)) == len(expected)  # read back by time: all of them


def test_the_watch_sees_steps_not_slewing() -> None:
    clock = ManualClock()
    watch = WallStepWatch(clock)
    clock.advance(1.0)
    assert watch.check() == 0
    clock.step_wall(STEP_NS / 1e9 / 2)  # an NTP slew's worth, or less: not a step
    assert watch.check() == 0
    clock.step_wall(3600.0004)
    assert watch.check() == 3_600_000_000_000  # to the millisecond the rings keep
    assert watch.check() == 0
    clock.step_wall(-30.0)
    assert watch.check() == -30_000_000_000


def test_samples_of_a_poll_that_straddled_the_step_are_moved() -> None:
    now, step = 10**18, 3600 * 10**9
    before = Sample("a.v", 1.0, now - step - 200_000_000, Quality.GOOD)  # old clock
    after = Sample("a.v", 2.0, now - 100_000_000, Quality.GOOD)  # new clock
    assert restamped([before, after], step, now) == [before._replace(ts=before.ts + step),
                                                    after]
    batch = [after]
    assert restamped(batch, step, now) is batch


class SteppableClock(SystemClock):
    """The system clock, its wall time stepped by the test (monotonic time untouched)."""

    def __init__(self) -> None:
        self.offset = 0

    def now_ns(self) -> int:
        return time.time_ns() + self.offset


@pytest.mark.slow
@pytest.mark.parametrize("step_s", [3600.0, -30.0])
async def test_an_incident_open_across_a_clock_step_is_whole_and_ends_on_time(
        tmp_path: Path, step_s: float) -> None:
    """A fire in a room, its record open; the wall clock steps (an hour forward: NTP on a Pi
    that booted without an RTC; or 30 s back); acknowledged, the detectors reset. The
    record does not close at the step, holds what came after it (the acknowledgement), and its
    samples run on without a hole or a lost stretch; it says the clock stepped and by how
    much. (The fire alarm latches: the record ends at `max_duration` after its trigger.)"""
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(SITE))
    clock = SteppableClock()
    async with SimulatedSite(load_gateway_config(config)) as site:
        site.set_signal("th-1.temperature", Noise(base=23.0, sigma=0.15, interval=POLL))
        gateway = Gateway(load_gateway_config(site.write_config(tmp_path / "sim.yaml")),
                          state_dir=tmp_path / "state", clock=clock)
        task = asyncio.create_task(gateway.run())
        store = IncidentStore(tmp_path / "state" / "incidents")
        key = AlarmKey(*FIRE)
        try:
            recorder = gateway.recording.recorder
            assert recorder is not None
            await until(lambda: len(recorder.samples("th-1.temperature")) >= 2 * PRE / POLL)
            site.set_signal("smoke-1.alarm", Constant(value=True))
            site.set_signal("smoke-2.alarm", Constant(value=True))
            await until(lambda: len(store.ids()) == 1)
            await asyncio.sleep(1.0)
            clock.offset += int(step_s * 1e9)
            await asyncio.sleep(6.0)  # past the keeper's next copy (5 s): still open
            assert store.load(store.ids()[0])["status"] == "open"
            assert gateway.core.alarms.get(key).state is AlarmState.ACTIVE_UNACKNOWLEDGED
            assert gateway.acknowledge([AlarmRef(rule=FIRE[0], subject=FIRE[1])], "alice",
                                       ACK_NOTE) == 1
            site.set_signal("smoke-1.alarm", Constant(value=False))
            site.set_signal("smoke-2.alarm", Constant(value=False))
            await until(lambda: store.load(store.ids()[0])["status"] == "closed", 30)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    record = store.load(store.ids()[0])
    assert any(e["actor"] == "alice" for e in record["events"])  # kept on after the step
    trigger = record["trigger"]["ts"]  # on the new clock, like everything in the record
    assert MAX_DURATION - 1 <= (record["until_ns"] - trigger) / 1e9 <= MAX_DURATION
    [noted] = record["clock_steps"]
    assert noted["by_ns"] == int(step_s * 1e9)
    ts = record["points"]["th-1.temperature"]["ts"]
    assert ts == sorted(ts)
    assert max(b - a for a, b in pairwise(ts)) <= 4 * POLL * 1000  # no hole, nothing lost
    span_s = (ts[-1] - ts[0]) / 1000
    assert len(ts) >= span_s / POLL * 0.7  # the polls of the whole span are there
    assert record["from_ns"] // 10**6 <= ts[0]
    [shown] = clock_steps(record)  # `incident show` and the HTML report say so
    assert shown.startswith(f"{step_s:+.3f} s at ") and shown in render(record)


def test_a_records_clock_steps_are_read_not_trusted() -> None:
    assert clock_steps({"clock_steps": [{"at_ns": "x", "by_ns": 1}, 5, {"by_ns": 2},
                                        {"at_ns": 1.5, "by_ns": 2}]}) == []
    assert clock_steps({"clock_steps": "no"}) == clock_steps({}) == []
