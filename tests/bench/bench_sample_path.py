"""The per-sample path outside the rules (issue 15): the 2,000-point site of the whole-process
benchmark (tests/bench/bench_process.py: 10 Modbus TCP devices × 200 int16 holding registers
×0.01) served by a real pymodbus TCP server in its own process, every register changing at
every read (as the simulator's noise moves them every second), polled by the gateway's own bus
loop (`BusLoop.poll_once`: `ModbusDevicePoller` — pymodbus's client, the block decoder —, the
device's health and `online` sample), and each poll's samples handed as `Gateway._on_samples`
hands them to the latest values and the uplink (exception filter with deadband 0, so every
sample passes; the telemetry encoder; the committer's buffer). Not the rules, the alarms or the
flight recorder (bench_rules_round), not MQTT (bench_publish).

Cycles run back to back (each cycle polls the ten devices in turn, as one second of
`roomwarden run` does); after each, outside what is measured, the committer's writer takes
the buffer (its `_work`, synchronously: the outbox's SQLite work is not this path's). Figures
are CPU seconds per 1,000 points of this process's main thread (`time.thread_time`, so a
busy neighbour on a shared machine does not count): `field` (poll, decode, health), `fan-out`
(latest + uplink), their sum. The server's CPU is its own process's.

`--instructions` runs the bench twice under `valgrind --tool=cachegrind` (CYCLES_FEW and
CYCLES_MANY cycles, `PYTHONHASHSEED=0`) and reports the difference of their instruction counts
per point — start-up and imports cancel out, only the cycles remain: a figure that does not
move with the machine's load. Those runs leave the committer's buffer to the end (at most
CYCLES_MANY messages): the writer's SQLite work is not counted either. `--no-fanout` hands the
samples to nobody (the field alone).

    .venv/bin/python -m tests.bench.bench_sample_path                 # CPU, 300 cycles
    .venv/bin/python -m tests.bench.bench_sample_path --instructions  # cachegrind (~1 min)

`BENCH_SAMPLE_PATH_STEADY=45` leaves one register in 45 as it was at each read (which ones
changes from read to read), as the whole-process benchmark's noise does: reported by
exception, each poll's batch then holds a different set of points (the telemetry encoder's
heads were cached by batch and missed at every such poll until 7 Dec).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from gateway.clock import SystemClock
from gateway.config.loaded import LoadedConfig
from gateway.config.loader import load_gateway_config
from gateway.config.section import validator
from gateway.fanout import SampleFanOut
from gateway.field.buses import build_bus_loops
from gateway.field.catalog import catalog_points
from gateway.field.latest import LatestSamples
from gateway.field.sample import Sample
from gateway.localservices import free_port
from gateway.uplink.publisher import Uplink
from gateway.uplink.settings import UplinkSettings
from tests.bench.bench_process import LOADS, Load, holding_profile, site
from tests.bench.common import REPO, emit_json, print_table

LOAD = next(load for load in LOADS if load.key == "p2000")
POINTS = LOAD.devices * LOAD.points
WARMUP_CYCLES = 3
CYCLES_FEW, CYCLES_MANY = 10, 30
"""The two cachegrind runs (their difference: CYCLES_MANY - CYCLES_FEW cycles)."""


# --- the device side: a pymodbus server in its own process ------------------------------------


STEADY = int(os.environ.get("BENCH_SAMPLE_PATH_STEADY", "0"))
"""One register in `STEADY` keeps its value at each read (0: every one moves)."""


async def _serve(port: int) -> None:
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType as SimType
    from pymodbus.simulator import SimData, SimDevice

    async def moving(function_code: int, start: int, address: int, count: int,
                     registers: list[int], _values: object) -> None:
        """Every read moves the registers it reads: 15.00 … 24.99 (×0.01), a step a read (but
        one in `STEADY`, another one at each read)."""
        reads[0] += 1
        for at in range(address - start, address - start + count):
            if STEADY and (at + reads[0]) % STEADY == 0:
                continue
            registers[at] = 1500 + (registers[at] - 1499 + at % 7) % 1000

    reads = [0]

    devices = [SimDevice(id=unit, action=moving, simdata=(
        [SimData(0, values=[False] * 16, datatype=SimType.BITS)],
        [SimData(0, values=[False] * 16, datatype=SimType.BITS)],
        [SimData(0, values=[1500 + (unit * 37 + i * 11) % 1000 for i in range(LOAD.points)],
                 datatype=SimType.REGISTERS)],
        [SimData(0, values=[0], datatype=SimType.REGISTERS)]))
        for unit in range(1, LOAD.devices + 1)]
    server = ModbusTcpServer(devices, address=("127.0.0.1", port))
    await server.serve_forever()


@contextmanager
def device_server(work: Path) -> Iterator[int]:
    """The pymodbus server in its own process; yields its port once it accepts."""
    port = free_port()
    log = (work / "server.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "tests.bench.bench_sample_path",
                                "--serve", str(port)], cwd=REPO, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), 0.2):
                    break
            except OSError as exc:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the pymodbus server did not start; see {log.name}"
                                       ) from exc
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)
        log.close()


# --- the gateway side --------------------------------------------------------------------------


class Consumers:
    """`Gateway._on_samples` without the rules and the recorder, its CPU counted apart."""

    def __init__(self, latest: LatestSamples | None, uplink: Uplink | None) -> None:
        self.latest, self.uplink = latest, uplink
        self.fanout = SampleFanOut()
        self.cpu = 0.0
        self.samples = 0

    def __call__(self, batch: list[Sample]) -> None:
        began = time.thread_time()
        deliver = self.fanout.deliver
        if self.latest is not None:
            deliver("latest", self.latest.update, batch)
        if self.uplink is not None:
            deliver("uplink", self.uplink.on_samples, batch)
        self.cpu += time.thread_time() - began
        self.samples += len(batch)


def bench_site(load: Load, port: int, work: Path) -> LoadedConfig:
    """The whole-process benchmark's site of `load`, its bus pointed at the server on `port`."""
    profiles = work / "profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    (profiles / f"bench_hr{load.points}.yaml").write_text(
        yaml.safe_dump(holding_profile(load.points, load.scale), sort_keys=False))
    config = site(load, profiles)
    config["buses"][0].update(host="127.0.0.1", port=port)
    path = work / "site.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return load_gateway_config(path)


async def run(port: int, work: Path, cycles: int, fanout: bool, drain: bool = True
              ) -> dict[str, Any]:
    loaded = bench_site(LOAD, port, work)
    clock = SystemClock()
    uplink = None
    if fanout:
        settings = validator(UplinkSettings).validate_python({"broker": "127.0.0.1", "port": 1,
                                                 "exception": {"deadband": 0}})
        uplink = Uplink(settings, "bench", "bench-gw", work / "state", clock,
                        catalog_points(loaded))
    sink = Consumers(LatestSamples(clock) if fanout else None, uplink)
    [bus] = build_bus_loops(loaded, sink, clock)
    await bus.link.open()
    field_cpu = 0.0
    try:
        for cycle in range(WARMUP_CYCLES + cycles):
            if cycle == WARMUP_CYCLES:
                field_cpu, sink.cpu, sink.samples = 0.0, 0.0, 0
            began = time.thread_time()
            for poller in bus.pollers:
                result = await bus.poll_once(poller)
                if result.error is not None:
                    raise RuntimeError(f"{poller.device_id}: {result.error}")
            field_cpu += time.thread_time() - began
            if uplink is not None and drain:
                uplink.committer._work()  # the writer's part, not measured (see the docstring)
    finally:
        await bus.link.close()
    field_cpu -= sink.cpu
    points = sink.samples
    return {"cycles": cycles, "points": points,
            "field_cpu_s_per_1000": 1000 * field_cpu / points,
            "fanout_cpu_s_per_1000": 1000 * sink.cpu / points,
            "total_cpu_s_per_1000": 1000 * (field_cpu + sink.cpu) / points,
            "passed_filter": uplink.filter.passed if uplink is not None else 0,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure(cycles: int, fanout: bool, drain: bool = True) -> dict[str, Any]:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # as `roomwarden run` does
    logging.getLogger("roomwarden").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="roomwarden-bench-path-") as tmp:
        work = Path(tmp)
        with device_server(work) as port:
            return asyncio.run(run(port, work, cycles, fanout, drain))


# --- instruction counts ------------------------------------------------------------------------


def instructions(cycles: int, fanout: bool) -> int:
    """Instructions (cachegrind's `I refs`) of one run of this bench of `cycles` cycles."""
    return instructions_of(["tests.bench.bench_sample_path", "--cycles", str(cycles),
                            "--quiet"] + ([] if fanout else ["--no-fanout"]))


def instructions_of(module_args: list[str]) -> int:
    """Instructions (cachegrind's `I refs`) of `python -m *module_args` (`PYTHONHASHSEED=0`;
    the children it starts, the device server, are not counted)."""
    with tempfile.TemporaryDirectory(prefix="roomwarden-bench-path-cg-") as tmp:
        command = ["valgrind", "--tool=cachegrind", "--cache-sim=no",
                   f"--cachegrind-out-file={tmp}/cg.out", sys.executable, "-m", *module_args]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": "0"})
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in cachegrind's output:\n{done.stderr}")
    return int(found.group(1).replace(",", ""))


def measure_instructions(fanout: bool) -> dict[str, Any]:
    few, many = instructions(CYCLES_FEW, fanout), instructions(CYCLES_MANY, fanout)
    points = (CYCLES_MANY - CYCLES_FEW) * LOAD.devices * (LOAD.points + 1)
    return {"instructions_few": few, "instructions_many": many, "points": points,
            "instructions_per_point": (many - few) / points}


def main(cycles: int = 300, fanout: bool = True) -> dict[str, Any]:
    figures = measure(cycles, fanout)
    share = figures["total_cpu_s_per_1000"] * POINTS / 1000
    cpu = [("field: poll, decode, health", "field_cpu_s_per_1000", "main thread"),
           ("fan-out: latest + uplink", "fanout_cpu_s_per_1000",
            f"filter passed {figures['passed_filter']:,}"),
           ("together", "total_cpu_s_per_1000", f"{share:.2%} of a core at {POINTS:,} points/s")]
    print_table(f"Per-sample path outside the rules: {LOAD.devices} Modbus TCP devices × "
                f"{LOAD.points} holding registers, "
                f"{f'one in {STEADY} steady' if STEADY else 'every one changing'}, {cycles} cycles",
                [(f"{what} (CPU ms / 1,000 points)", f"{figures[key] * 1000:.3f}", note)
                 for what, key, note in cpu]
                + [("peak RSS (with the bench's outbox)", f"{figures['peak_rss_mib']:.1f} MiB",
                    "")])
    emit_json("sample_path", figures)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--no-fanout", action="store_true")
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(_serve(args.serve))
    elif args.instructions:
        result = measure_instructions(not args.no_fanout)
        print_table("Per-sample path outside the rules, instructions (cachegrind)", [
            ("instructions per point", f"{result['instructions_per_point']:,.0f}",
             f"{CYCLES_MANY} - {CYCLES_FEW} cycles"
             + (f", one register in {STEADY} steady" if STEADY else "")
             + ("" if not args.no_fanout else ", field only")),
        ])
        emit_json("sample_path_instructions", result)
    elif args.quiet:
        measure(args.cycles, not args.no_fanout, drain=False)
    else:
        main(args.cycles, not args.no_fanout)
