"""The per-poll cost of the field layer at the whole-process benchmark's `p200f` load (issue 15):
one Modbus TCP device of 200 int16 holding registers ×0.01 polled every 100 ms — two block
reads a poll — by the gateway's own bus loop (`BusLoop.run`, as `roomwarden run` runs it: its
schedule and sleep between polls, `poll_once`, pymodbus's client, the block decoder, health
and the `online` sample), from the same pymodbus server in its own process as
tests/bench/bench_sample_path.py. The samples go to a sink that only counts them (the
fan-out is bench_sample_path's). Where bench_sample_path gives what a point costs at 2,000
points, this gives what a poll costs: its fixed part (a request's round through pymodbus and
asyncio, the loop's schedule, health) weighs more at 200 points ten times a second.

`--instructions` runs it twice under `valgrind --tool=cachegrind` (POLLS_FEW and POLLS_MANY
polls after the warm-up, `PYTHONHASHSEED=0`) and reports the difference of their instruction
counts per poll — start-up, imports and the first connection cancel out. Without it: CPU µs
per poll of the main thread (`time.thread_time`), POLLS polls.

    .venv/bin/python -m tests.bench.bench_poll_cost                 # CPU, 100 polls (10 s)
    .venv/bin/python -m tests.bench.bench_poll_cost --instructions  # cachegrind (~1 min)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.clock import SystemClock
from gateway.field.buses import build_bus_loops
from gateway.field.sample import Sample
from tests.bench.bench_process import LOADS
from tests.bench.bench_sample_path import bench_site, device_server, instructions_of
from tests.bench.common import emit_json, print_table

LOAD = next(load for load in LOADS if load.key == "p200f")
WARMUP_POLLS = 5
POLLS = 100
POLLS_FEW, POLLS_MANY = 10, 40
"""The two cachegrind runs (their difference: POLLS_MANY - POLLS_FEW polls)."""


class PollCounter:
    """The bus loop's sink: counts polls, notes the CPU from the end of the warm-up, and says
    when `polls` polls have been made after it. A poll whose device is not online (the server
    did not answer) fails the bench."""

    def __init__(self, polls: int) -> None:
        self.polls = polls
        self.seen = 0
        self.cpu_began = self.cpu = 0.0
        self.samples = 0
        self.done = asyncio.Event()

    def __call__(self, batch: list[Sample]) -> None:
        if batch[-1].value is not True:
            raise SystemExit(f"poll {self.seen}: the device is not online: {batch[-1]}")
        self.seen += 1
        if self.seen == WARMUP_POLLS:
            self.cpu_began = time.thread_time()
        elif self.seen > WARMUP_POLLS:
            self.samples += len(batch)
            if self.seen == WARMUP_POLLS + self.polls:
                self.cpu = time.thread_time() - self.cpu_began
                self.done.set()


async def run(port: int, work: Path, polls: int) -> dict[str, Any]:
    loaded = bench_site(LOAD, port, work)
    counter = PollCounter(polls)
    [bus] = build_bus_loops(loaded, counter, SystemClock())
    task = asyncio.create_task(bus.run())
    done = asyncio.create_task(counter.done.wait())
    await asyncio.wait([task, done], return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task  # (a bench that fails says why here)
    done.cancel()
    return {"polls": polls, "points_per_poll": counter.samples / polls,
            "cpu_us_per_poll": 1e6 * counter.cpu / polls,
            "overruns": bus.stats.overruns}


def measure(polls: int) -> dict[str, Any]:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # as `roomwarden run` does
    logging.getLogger("roomwarden").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="roomwarden-bench-poll-") as tmp:
        work = Path(tmp)
        with device_server(work) as port:
            return asyncio.run(run(port, work, polls))


def measure_instructions() -> dict[str, Any]:
    few, many = (instructions_of(["tests.bench.bench_poll_cost", "--polls", str(polls),
                                  "--quiet"]) for polls in (POLLS_FEW, POLLS_MANY))
    polls = POLLS_MANY - POLLS_FEW
    return {"instructions_few": few, "instructions_many": many, "polls": polls,
            "instructions_per_poll": (many - few) / polls,
            "instructions_per_point": (many - few) / polls / (LOAD.points + 1)}


def main(polls: int = POLLS) -> dict[str, Any]:
    figures = measure(polls)
    print_table(f"Per-poll cost, {LOAD.title}, {polls} polls", [
        ("CPU per poll (main thread)", f"{figures['cpu_us_per_poll']:,.0f} µs",
         f"{figures['points_per_poll']:.0f} samples a poll, {figures['overruns']} overruns")])
    emit_json("poll_cost", figures)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polls", type=int, default=POLLS)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.instructions:
        result = measure_instructions()
        print_table(f"Per-poll cost, {LOAD.title} (cachegrind)", [
            ("instructions per poll", f"{result['instructions_per_poll']:,.0f}",
             f"{POLLS_MANY} - {POLLS_FEW} polls"),
            ("… per point", f"{result['instructions_per_point']:,.0f}",
             f"{LOAD.points} registers and `online`")])
        emit_json("poll_cost_instructions", result)
    elif args.quiet:
        measure(args.polls)
    else:
        main(args.polls)
