"""`roomwarden plan`: the Modbus requests each device of a config costs per poll cycle, and an
RTU bus's least time on the wire for one pass."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config.report import CONFIG_HELP, load_or_report

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


def add_plan_parser(sub: SubParsers) -> None:
    """Register `plan` on the `roomwarden` subparsers `sub`."""
    plan = sub.add_parser("plan", help="print the Modbus requests each device costs per cycle")
    plan.add_argument("config", type=Path, help=CONFIG_HELP)
    plan.set_defaults(func=cmd_plan)


def cmd_plan(args: argparse.Namespace) -> int:
    from gateway.config.profile import ModbusProfile
    from gateway.config.site import ModbusRtuBus
    from gateway.field.planner import plan_requests, theoretical_rtu_seconds
    from gateway.field.points import bind_points

    loaded = load_or_report(args.config)
    if loaded is None:
        return 1
    cfg = loaded.config
    for bus in cfg.buses:
        devices = [d for d in cfg.devices if d.bus == bus.id and d.enabled]
        print(f"bus {bus.id} ({bus.type}, timeout {bus.timeout:g}s, max_gap {bus.max_gap})")
        bus_requests = []
        for device in devices:
            profile = loaded.profile_of(device)
            interval = device.poll_interval or profile.default_poll_interval
            if not isinstance(profile, ModbusProfile):
                print(f"  device {device.id} ({profile.id}) every {interval:g}s: "
                      f"1 request {profile.request!r}")
                continue
            points = bind_points(device, profile)
            requests = plan_requests(points, max_registers=profile.max_registers_per_request,
                                     max_bits=profile.max_bits_per_request,
                                     max_gap=bus.max_gap)
            bus_requests.extend(requests)
            print(f"  device {device.id} unit {device.unit} ({profile.id}) every "
                  f"{interval:g}s: {len(points)} points in {len(requests)} requests")
            for request in requests:
                print(f"    {request.describe()}")
        if isinstance(bus, ModbusRtuBus) and bus_requests:
            minimum = theoretical_rtu_seconds(bus_requests, char_time=bus.char_time,
                                              frame_gap=bus.frame_gap)
            print(f"  one pass over every device at {bus.baudrate} baud takes at least "
                  f"{minimum * 1000:.1f} ms on the wire")
    return 0
