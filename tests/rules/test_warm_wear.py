"""What the rate windows' periodic save costs the SD card (the wear audit, W6: the file was
rewritten every minute whatever happened, up to 0.28 GB a day at 2,000 noisy points): it is
written only when a window's values moved since the last save, and a file whose saves would
pass `DAILY_BYTES` a day is saved less often, at most every tenth of the longest window
(gateway/rules/warm_pace.py). Real rule engines of the telecom site on a manual clock."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.field.sample import Quality, Sample
from gateway.rules import warm
from gateway.rules.warm import FILE_NAME, RateMemory
from tests.rules.test_warm import POINT, START_NS, _engine, _site


async def test_a_still_room_writes_the_file_once(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Samples every 10 s for 20 simulated periods: while the temperature stays at 22.4 °C
    one file is written (its first samples); a new value is written at the next period."""
    monkeypatch.setattr(warm, "MIN_PERIOD", 0.05)
    monkeypatch.setattr(warm, "MAX_PERIOD", 0.05)
    loaded = _site(tmp_path)
    clock = ManualClock(start_ns=START_NS, start_mono=50_000.0)
    engine = _engine(loaded, clock)
    memory = RateMemory(tmp_path, clock)
    path = tmp_path / FILE_NAME
    written: list[int] = []
    original = memory.write

    def counted(snapshot: warm.Snapshot) -> bool:
        done = original(snapshot)
        if done:
            written.append(path.stat().st_size)
        return done

    monkeypatch.setattr(memory, "write", counted)

    async def period_of(value: float) -> None:
        """A simulated minute of samples, then (real) time for a period of the saves."""
        for _ in range(6):
            engine.on_samples([Sample(POINT, value, clock.now_ns(), Quality.GOOD)])
            engine.evaluate()
            clock.advance(10.0)
        newest = clock.monotonic() - 10.0
        deadline = time.monotonic() + 20.0
        while memory._saved_newest < newest:  # the period after these samples has run
            assert time.monotonic() < deadline, (memory._saved_newest, newest)
            await asyncio.sleep(0.02)

    task = asyncio.get_running_loop().create_task(memory.run(lambda: (engine, loaded)))
    try:
        for _ in range(20):
            await period_of(22.4)
        print(f"still: {len(written)} writes, {sum(written)} bytes in 20 periods")
        assert len(written) == 1, written  # every period before: 20 writes
        await period_of(22.5)
        assert len(written) == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_a_file_past_the_daily_budget_is_saved_less_often(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.rules import warm_pace

    loaded = _site(tmp_path)
    clock = ManualClock(start_ns=START_NS, start_mono=50_000.0)
    engine = _engine(loaded, clock)
    for n in range(120):
        engine.on_samples([Sample(POINT, 22.0 + n / 100, clock.now_ns(), Quality.GOOD)])
        clock.advance(30.0)
    memory = RateMemory(tmp_path, clock)
    assert memory.period(engine) == 60.0  # the shipped packs' hour window: a minute
    assert memory.save(engine, loaded)
    size = (tmp_path / FILE_NAME).stat().st_size
    assert memory.period(engine) == 60.0  # within the budget (~1 KB a save)
    monkeypatch.setattr(warm_pace, "DAILY_BYTES", size * 288)  # 288 saves a day: 5 minutes
    assert memory.period(engine) == pytest.approx(300.0)
    monkeypatch.setattr(warm_pace, "DAILY_BYTES", size)  # once a day: no
    assert memory.period(engine) == 360.0  # a tenth of the hour at most


def test_moved_compares_each_new_sample_with_the_one_before_it_in_its_window() -> None:
    from array import array

    from gateway.rules.warm_pace import moved

    def snapshot(*runs: list[tuple[float, float]]) -> warm.Snapshot:
        times = array("d", [t for run in runs for t, _ in run])
        values = array("d", [v for run in runs for _, v in run])
        return warm.Snapshot(0, 0.0, max(times), {"p": ("x", [len(r) for r in runs])},
                             memoryview(times), memoryview(values), len(times))

    nan = float("nan")
    file = {"p": "x"}  # the point and its fingerprint in the file
    still = [(1.0, 5.0), (2.0, 5.0), (3.0, 5.0)]
    assert not moved(snapshot(still), 1.0, file)
    assert not moved(snapshot([(1.0, nan), (2.0, nan)]), 1.0, file)  # NaN is NaN
    assert moved(snapshot(still, [(1.0, 5.0), (2.0, 5.1)]), 1.5, file)  # the second window
    assert moved(snapshot([(1.0, 5.0), (2.0, 6.0), (3.0, 6.0)]), 1.0, file)  # against the saved
    assert not moved(snapshot([(1.0, 5.0), (2.0, 6.0), (3.0, 6.0)]), 2.0, file)
    assert moved(snapshot([(2.0, 5.0)]), 1.0, file)  # a window's first sample
    assert not moved(snapshot(still), 3.0, file)  # nothing after the last save
    assert moved(snapshot(still), 3.0, {"p": "y"})  # its device is read otherwise now
    assert moved(snapshot(still), 3.0, {"p": "x", "q": "x"})  # a point no longer there
