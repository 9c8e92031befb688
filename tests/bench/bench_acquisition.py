"""Acquisition benchmarks.

1. Modbus TCP: a simulated site of 50 devices / 2,000 points (5 TCP endpoints × 10 unit ids)
   polled flat out; points per second and CPU seconds per 1,000 points of the gateway's
   acquisition path (pymodbus client, planning, decoding, samples). The simulator runs in its
   own process, so only the gateway's CPU is counted. Target: ≥ 20,000 points/s on one core.
2. Modbus RTU at 9600 baud over an emulated RS-485 line: the achieved time of one pass over
   every device against the theoretical minimum of the planned requests (frame bytes × bits
   per character / baud + 3.5-character gaps). Target: ≤ 1.2 × the minimum.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from gateway.clock import SystemClock
from gateway.config.loader import load_gateway_config
from gateway.config.site import ModbusRtuBus
from gateway.field.buses import build_bus_loops
from gateway.field.modbus_poller import ModbusDevicePoller
from gateway.field.planner import theoretical_rtu_seconds
from gateway.field.sample import Sample
from tests.bench.common import (
    BENCH_METER,
    cpu_seconds,
    emit_json,
    print_table,
    simulator,
    write_profiles,
)

TCP_BUSES, DEVICES_PER_BUS = 5, 10


def tcp_site(profiles: Path) -> dict[str, Any]:
    return {
        "gateway": {"id": "bench-gw", "site": "bench"},
        "profiles_dir": str(profiles),
        "rooms": [{"id": "room", "type": "data_center"}],
        "buses": [{"id": f"tcp{b}", "type": "modbus_tcp", "host": "192.0.2.1",
                   "timeout": "1s"} for b in range(TCP_BUSES)],
        "devices": [{"id": f"m{b}-{u}", "bus": f"tcp{b}", "unit": u, "profile": "bench_meter",
                     "room": "room", "poll_interval": "50ms"}
                    for b in range(TCP_BUSES) for u in range(1, DEVICES_PER_BUS + 1)],
    }


def rtu_site(profiles: Path) -> dict[str, Any]:
    devices = [{"id": f"th{u}", "unit": u, "profile": "generic_th_sensor"} for u in (1, 2, 3)]
    devices += [{"id": "meter", "unit": 10, "profile": "eastron_sdm630"},
                {"id": "h2", "unit": 11, "profile": "generic_h2_detector"},
                {"id": "rcm", "unit": 12, "profile": "generic_rcm_monitor"}]
    return {
        "gateway": {"id": "bench-rtu", "site": "bench"},
        "profiles_dir": str(profiles),
        "rooms": [{"id": "room", "type": "distribution"}],
        "buses": [{"id": "rs485", "type": "modbus_rtu", "port": "/dev/ttyBENCH",
                   "baudrate": 9600, "timeout": "1s"}],
        "devices": [{**d, "bus": "rs485", "room": "room", "poll_interval": "1s"}
                    for d in devices],
    }


class Counter:
    def __init__(self) -> None:
        self.samples = 0
        self.good = 0

    def __call__(self, batch: list[Sample]) -> None:
        self.samples += len(batch) - 1  # not the `online` sample every poll adds
        self.good += sum(1 for s in batch if s.quality == "good") - 1


async def run_tcp(sim_config: Path, seconds: float) -> dict[str, float]:
    loaded = load_gateway_config(sim_config)
    counter = Counter()
    loops = build_bus_loops(loaded, counter, SystemClock())
    tasks = [asyncio.create_task(loop.run()) for loop in loops]
    await asyncio.sleep(2.0)  # connect and warm up
    start_samples, start_good = counter.samples, counter.good
    wall, cpu = time.perf_counter(), cpu_seconds()
    await asyncio.sleep(seconds)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    samples, good = counter.samples - start_samples, counter.good - start_good
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"points": samples, "good_points": good, "seconds": wall, "cpu_seconds": cpu,
            "points_per_second": samples / wall,
            "points_per_cpu_second": samples / cpu if cpu else 0.0,
            "cpu_seconds_per_1000_points": 1000 * cpu / samples if samples else float("inf"),
            "cpu_share_of_one_core": cpu / wall,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


async def run_rtu(sim_config: Path, passes: int) -> dict[str, float]:
    loaded = load_gateway_config(sim_config)
    [loop] = build_bus_loops(loaded, lambda _batch: None, SystemClock())
    bus = loaded.config.buses[0]
    assert isinstance(bus, ModbusRtuBus)
    pollers = [p for p in loop.pollers if isinstance(p, ModbusDevicePoller)]
    await loop.link.open()
    try:
        for poller in pollers:  # learn splits and settle the line before timing
            await poller.poll()
        requests = [r for p in pollers for r in p.plan]
        minimum = theoretical_rtu_seconds(requests, char_time=bus.char_time,
                                          frame_gap=bus.frame_gap)
        times, failures = [], 0
        for _ in range(passes):
            began = time.perf_counter()
            for poller in pollers:
                result = await poller.poll()
                failures += 0 if result.answered and not result.error else 1
            times.append(time.perf_counter() - began)
    finally:
        await loop.link.close()
    median = statistics.median(times)
    return {"requests_per_pass": len(requests), "theoretical_seconds": minimum,
            "median_pass_seconds": median, "best_pass_seconds": min(times),
            "ratio_median": median / minimum, "ratio_best": min(times) / minimum,
            "failed_polls": failures, "passes": passes, "baud": bus.baudrate}


def main(seconds: float = 10.0, passes: int = 10) -> dict[str, Any]:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # as `roomwarden run` does
    with tempfile.TemporaryDirectory(prefix="roomwarden-bench-") as tmp:
        work = Path(tmp)
        profiles = write_profiles(work / "profiles")
        tcp_config = work / "bench_tcp.yaml"
        tcp_config.write_text(yaml.safe_dump(tcp_site(profiles)))
        with simulator(tcp_config, work) as sim_config:
            tcp = asyncio.run(run_tcp(sim_config, seconds))
        rtu_config = work / "bench_rtu.yaml"
        rtu_config.write_text(yaml.safe_dump(rtu_site(profiles)))
        with simulator(rtu_config, work) as sim_config:
            rtu = asyncio.run(run_rtu(sim_config, passes))
    points = TCP_BUSES * DEVICES_PER_BUS * len(BENCH_METER["points"])
    print_table(f"Acquisition, Modbus TCP: {TCP_BUSES * DEVICES_PER_BUS} devices, "
                f"{points} points, {seconds:g} s", [
        ("points per second", f"{tcp['points_per_second']:,.0f}", "target >= 20,000"),
        ("points per CPU second", f"{tcp['points_per_cpu_second']:,.0f}", ""),
        ("CPU s per 1,000 points", f"{tcp['cpu_seconds_per_1000_points']:.4f}", ""),
        ("CPU share of one core", f"{tcp['cpu_share_of_one_core']:.0%}", ""),
        ("good / all points", f"{tcp['good_points']:,.0f} / {tcp['points']:,.0f}", ""),
        ("peak RSS of the gateway process", f"{tcp['peak_rss_mib']:.1f} MiB", ""),
    ])
    print_table(f"Acquisition, Modbus RTU at {rtu['baud']:.0f} baud: "
                f"{rtu['requests_per_pass']:.0f} requests per pass, {passes} passes", [
        ("theoretical minimum", f"{rtu['theoretical_seconds'] * 1000:.1f} ms", ""),
        ("achieved (median)", f"{rtu['median_pass_seconds'] * 1000:.1f} ms", ""),
        ("ratio (median)", f"{rtu['ratio_median']:.3f}", "target <= 1.2"),
        ("ratio (best)", f"{rtu['ratio_best']:.3f}", ""),
        ("failed polls", f"{rtu['failed_polls']:.0f}", "expected 0"),
    ])
    figures = {"tcp": tcp, "rtu": rtu}
    emit_json("acquisition", figures)
    return figures


if __name__ == "__main__":
    main()
