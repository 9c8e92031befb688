"""Rule-engine benchmark: a synthetic site of about 2,000 points (shipped profiles in every room
type), every shipped pack, samples at each device's poll interval and `evaluate()` at 1 Hz.

Simulated time (ManualClock) runs as fast as the CPU allows; only the engine's own calls
(`on_samples` and `evaluate`) are timed, with the process CPU clock. The CPU share of one core
at 1 Hz is the engine's CPU seconds per simulated second. Target: < 5 % of one core.
"""

from __future__ import annotations

import random
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from gateway.clock import ManualClock
from gateway.config.loader import load_gateway_config, load_profile
from gateway.config.site import Device
from gateway.field.points import bind_points
from gateway.field.sample import Quality, Sample, Value
from gateway.rules.config import default_rules_dir, load_rule_packs
from gateway.rules.engine import RuleEngine
from tests.bench.common import emit_json, print_table

TARGET_POINTS = 2000

# (profile, poll interval s) per room type: a plausible equipment mix of each kind of room
ROOM_MIX: dict[str, list[tuple[str, float]]] = {
    "data_center": [("generic_th_sensor", 5.0)] * 6 + [("generic_precision_ac", 10.0)] * 2
    + [("generic_smoke_detector", 2.0)] * 2,
    "equipment": [("generic_th_sensor", 5.0)] * 2 + [("generic_smoke_detector", 2.0)] * 2
    + [("generic_di_module", 1.0), ("eastron_sdm630", 5.0)],
    "battery": [("generic_h2_detector", 2.0), ("generic_th_sensor", 10.0)],
    "energy_storage": [("generic_offgas_detector", 1.0)] * 2 + [("generic_lithium_bms", 1.0)] * 4,
    "distribution": [("eastron_sdm630", 5.0)] * 2 + [("generic_rcm_monitor", 2.0),
                                                   ("generic_di_module", 1.0)],
    "ups": [("generic_modbus_ups", 2.0)],
}

NOMINAL: dict[str, float] = {
    "temperature": 23.0, "relative_humidity": 45.0, "dew_point": 10.5,
    "detector_temperature": 25.0, "return_air_temperature": 26.0,
    "supply_air_temperature": 18.0, "phase_voltage": 220.0, "line_voltage": 381.0,
    "frequency": 50.0, "phase_current": 20.0, "cell_voltage_max": 3.35,
    "cell_voltage_min": 3.28, "cell_temperature_max": 28.0, "cell_temperature_min": 25.0,
    "ups_input_voltage": 221.0, "ups_output_voltage": 220.0, "ups_input_frequency": 50.0,
    "ups_load_pct": 45.0, "battery_soc": 98.0, "residual_current_ma": 80.0,
    "cable_temperature": 35.0, "h2_lel": 0.0, "gas_lel": 0.0, "co_ppm": 2.0,
    "voc_ppm": 1.0, "h2_ppm": 3.0,
}


def site(profiles_dir: Path) -> tuple[dict[str, Any], dict[str, float]]:
    """A site config with about TARGET_POINTS sample ids, and each device's poll interval."""
    sizes: dict[str, int] = {}
    for profile_id in {p for mix in ROOM_MIX.values() for p, _ in mix}:
        profile = load_profile(profiles_dir / f"{profile_id}.yaml")
        points = bind_points(Device(id="x", bus="b", profile=profile_id, room="r"), profile)
        sizes[profile_id] = len(points) + sum(len(p.flags) for p in points) + 1
    rooms: list[dict[str, str]] = []
    devices: list[dict[str, Any]] = []
    intervals: dict[str, float] = {}
    total, block = 0, 0
    while total < TARGET_POINTS:
        for room_type, mix in ROOM_MIX.items():
            room_id = f"{room_type.replace('_', '-')}-{block}"
            rooms.append({"id": room_id, "type": room_type})
            for index, (profile_id, interval) in enumerate(mix):
                device_id = f"{room_id}-d{index}"
                bus = f"tcp-{len(devices) // 200}"
                devices.append({"id": device_id, "bus": bus, "unit": len(devices) % 200 + 1,
                                "profile": profile_id, "room": room_id,
                                "poll_interval": f"{interval:g}s"})
                intervals[device_id] = interval
                total += sizes[profile_id]
        block += 1
    buses = sorted({d["bus"] for d in devices})
    config = {"gateway": {"id": "bench-rules", "site": "bench"},
              "rooms": rooms,
              "buses": [{"id": b, "type": "modbus_tcp", "host": "192.0.2.1"} for b in buses],
              "devices": devices}
    return config, intervals


def main(seconds: int = 300, seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    profiles_dir = Path(__file__).resolve().parents[2] / "hardware" / "profiles"
    config, intervals = site(profiles_dir)
    with tempfile.TemporaryDirectory(prefix="roomwarden-bench-rules-") as tmp:
        path = Path(tmp) / "bench_rules_site.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        loaded = load_gateway_config(path)
    packs = load_rule_packs(default_rules_dir())
    clock = ManualClock()
    build_started = time.process_time()
    engine = RuleEngine(packs, loaded, clock)
    build_cpu = time.process_time() - build_started

    # every device's sample ids with a nominal value each
    device_points: dict[str, list[tuple[str, Value, float]]] = {}
    for device in loaded.config.devices:
        rows: list[tuple[str, Value, float]] = [(f"{device.id}.online", True, 0.0)]
        for point in bind_points(device, loaded.profile_of(device)):
            quantity = point.quantity or ""
            if point.spec.type == "bool":  # a contact
                rows.append((point.id, False, 0.0))
            elif quantity in NOMINAL:
                rows.append((point.id, NOMINAL[quantity], max(0.05, NOMINAL[quantity] * 0.002)))
            else:
                rows.append((point.id, 0, 0.0))
            rows.extend((flag.id, False, 0.0) for flag in point.flags)
        device_points[device.id] = rows
    points = sum(len(rows) for rows in device_points.values())

    next_poll = {device_id: rng.uniform(0, interval) for device_id, interval in intervals.items()}
    cpu_samples = cpu_evaluate = 0.0
    samples = evaluations = changed = 0
    previous: dict[tuple[str, str], object] = {}
    for second in range(seconds):
        for device_id, due in next_poll.items():
            if due > second:
                continue
            next_poll[device_id] = due + intervals[device_id]
            ts = clock.now_ns()
            batch = [Sample(point_id, (round(nominal + rng.gauss(0, noise), 2)
                                       if noise and isinstance(nominal, float) else nominal),
                            ts, Quality.GOOD)
                     for point_id, nominal, noise in device_points[device_id]]
            started = time.process_time()
            engine.on_samples(batch)
            cpu_samples += time.process_time() - started
            samples += len(batch)
        started = time.process_time()
        result = engine.evaluate()
        cpu_evaluate += time.process_time() - started
        evaluations += len(result)
        for evaluation in result:
            key = (evaluation.rule, evaluation.subject)
            if previous.get(key) is not evaluation:
                changed += 1
                previous[key] = evaluation
        clock.advance(1.0)
    active = sorted({(e.rule, e.subject) for e in engine.evaluate() if e.active})
    cpu_total = cpu_samples + cpu_evaluate
    figures: dict[str, Any] = {
        "points": points,
        "devices": len(loaded.config.devices),
        "rules": sum(len(p.rules) for p in packs.values()),
        "bindings": len(engine.bindings()),
        "simulated_seconds": seconds,
        "samples_per_second": samples / seconds,
        "evaluations_per_second_at_1hz": evaluations / seconds,
        "evaluations_per_cpu_second": evaluations / cpu_evaluate if cpu_evaluate else 0.0,
        "evaluate_ms_mean": cpu_evaluate / seconds * 1000,
        "on_samples_us_per_sample": cpu_samples / samples * 1e6 if samples else 0.0,
        "cpu_share_of_one_core_at_1hz": cpu_total / seconds,
        "bind_seconds": build_cpu,
        "new_evaluation_objects_per_second": changed / seconds,
        "active_at_end": len(active),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print_table(f"Rules: {points} points, {figures['devices']} devices, "
                f"{figures['rules']} rules, {figures['bindings']} bindings, "
                f"{seconds} s simulated at 1 Hz", [
        ("samples per second (poll intervals)", f"{figures['samples_per_second']:,.0f}", ""),
        ("evaluations per second at 1 Hz", f"{figures['evaluations_per_second_at_1hz']:,.0f}",
         ""),
        ("evaluations per CPU second", f"{figures['evaluations_per_cpu_second']:,.0f}", ""),
        ("evaluate(), mean", f"{figures['evaluate_ms_mean']:.2f} ms", ""),
        ("on_samples, per sample", f"{figures['on_samples_us_per_sample']:.2f} µs", ""),
        ("CPU share of one core at 1 Hz", f"{figures['cpu_share_of_one_core_at_1hz']:.2%}",
         "target < 5 %"),
        ("binding the site (once)", f"{build_cpu * 1000:.0f} ms", ""),
        ("alarms active at the end (quiet site)", f"{len(active)}", "expected 0"),
        ("peak RSS of the process", f"{figures['peak_rss_mib']:.1f} MiB", ""),
    ])
    emit_json("rules", figures)
    return figures


if __name__ == "__main__":
    main()
