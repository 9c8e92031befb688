"""The benchmark's CPU-time sampler (tests/bench/sampled_run.py): what it counts and writes."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from gateway.field.latest import LatestSamples
from tests.bench.sampled_run import Sampler, start


def test_counts_the_interrupted_stack_and_summarises_by_innermost_gateway_frame(
        tmp_path: Path) -> None:
    sampler = Sampler()
    seen = []

    class Clock:
        def monotonic(self) -> float:  # called inside gateway/field/latest.py's update
            frame = sys._getframe(1)
            seen.append(frame.f_code.co_name)
            sampler.on_signal(signal.SIGPROF, frame)
            return 0.0

    LatestSamples(Clock()).update([])  # type: ignore[arg-type]
    sampler.on_signal(signal.SIGPROF, sys._getframe())
    assert seen == ["update"]
    out = tmp_path / "samples.txt"
    sampler.write(out)
    lines = out.read_text().splitlines()
    assert len(lines) == 2
    inner = [line for line in lines if "update (gateway/field/latest.py)" in line]
    assert len(inner) == 1 and inner[0].endswith(" 1")
    assert inner[0].split(";")[-1].startswith("update (gateway/field/latest.py) ")
    top = Path(f"{out}.top").read_text()
    assert top.startswith("2 samples\n")
    assert " 50.0 %  gateway/field/latest.py\n" in top
    assert " 50.0 %  update (gateway/field/latest.py)\n" in top


def test_samples_cpu_time_from_its_start_for_its_length(tmp_path: Path) -> None:
    out = tmp_path / "samples.txt"
    previous = signal.getsignal(signal.SIGPROF)
    try:
        start(f"0.05,0.5,{out}")
        deadline = time.monotonic() + 10
        while not Path(f"{out}.top").exists() and time.monotonic() < deadline:
            sum(i * i for i in range(20_000))  # CPU time for the timer to count, in bursts
            time.sleep(0.002)  # (as a gateway's loop sleeps between them: never holding the GIL)
        assert Path(f"{out}.top").exists()
        assert int(Path(f"{out}.top").read_text().split()[0]) > 0
        assert "test_samples_cpu_time_from_its_start_for_its_length" in out.read_text()
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, previous)


def test_a_sample_in_the_loops_selector_is_counted_as_other_threads_cpu(tmp_path: Path) -> None:
    import selectors

    from tests.bench.sampled_run import ASLEEP, _code_name

    sampler = Sampler()
    asleep = ("run_forever (x)", _code_name(selectors.EpollSelector.select.__code__))
    busy = ("run_forever (x)", "update (gateway/field/latest.py)")
    sampler.stacks[asleep] += 3
    sampler.stacks[busy] += 1
    out = tmp_path / "samples.txt"
    sampler.write(out)
    top = Path(f"{out}.top").read_text()
    assert f" 75.0 %  {ASLEEP}\n" in top
    assert " 25.0 %  gateway/field/latest.py\n" in top
    assert "selectors" not in top
