"""`make demo` / `roomwarden demo`: a simulated site, the gateway polling it, its panel, and a
short scripted scene (a confirmed fire to acknowledge, a device going silent)."""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gateway.config.loader import LoadedConfig, load_gateway_config
from gateway.config.profile import ModbusProfile
from gateway.config.site import PanelUser
from gateway.daemon import Gateway
from gateway.field.points import bind_points
from gateway.panel.passwords import hash_password
from gateway.readout import render
from gateway.sim.faults import Fault, FaultMode
from gateway.sim.runner import describe, until_stopped, write_atomically
from gateway.sim.signals import Constant
from gateway.sim.site import SimulatedSite

Step = tuple[float, str, Callable[[SimulatedSite], None]]


def _points_by_quantity(loaded: LoadedConfig, quantity: str) -> list[tuple[str, str]]:
    """(point id, room) of every point (or flag) with `quantity`, in config order."""
    found = []
    for device in loaded.config.devices:
        profile = loaded.profiles.get(device.profile)
        if profile is None or not device.enabled:
            continue
        for point in bind_points(device, profile):
            if point.quantity == quantity:
                found.append((point.id, device.room))
            found.extend((flag.id, device.room) for flag in point.flags
                         if flag.quantity == quantity)
    return found


def demo_script(loaded: LoadedConfig) -> list[Step]:
    """A short scene on the demo site: smoke in one detector, then in a second one (a
    confirmed fire: siren and strobe, to acknowledge in the panel); then a device that stops
    answering while the rest of its bus keeps reading."""
    script: list[Step] = []
    smoke = _points_by_quantity(loaded, "smoke")
    rooms: dict[str, list[str]] = {}
    for point, room in smoke:
        rooms.setdefault(room, []).append(point)
    pair = next((points[:2] for points in rooms.values() if len(points) >= 2), None)
    if pair:
        first, second = pair
        script += [
            (20.0, f"smoke at {first}: a single-detector alert",
             lambda site: site.set_signal(first, Constant(value=True))),
            (35.0, f"smoke at {second} too: confirmed fire (two detectors) - siren and strobe "
                   "on; log in to the panel and acknowledge: the siren stops, the strobe stays",
             lambda site: site.set_signal(second, Constant(value=True))),
            (120.0, "the smoke clears",
             lambda site: _release(site, first, second)),
        ]
    modbus = [d for d in loaded.config.devices
              if isinstance(loaded.profiles.get(d.profile), ModbusProfile)
              and d.id not in {o.device for o in loaded.config.outputs}]
    if modbus:
        silent = modbus[0].id
        script += [
            (140.0, f"{silent} stops answering: OFFLINE after 3 polls while the other devices "
                    "of its bus keep reading",
             lambda site: site.set_fault(silent, Fault(mode=FaultMode.NO_REPLY))),
            (180.0, f"{silent} answers again: online after one good poll",
             lambda site: site.set_fault(silent, Fault(mode=FaultMode.NONE))),
        ]
    return script


def with_demo_user(loaded: LoadedConfig) -> LoadedConfig:
    """The demo's panel on loopback, with a user `demo` (password `demo`) if none is set."""
    panel = loaded.config.panel
    users = panel.users or (PanelUser(name="demo", password_hash=hash_password("demo")),)
    config = loaded.config.model_copy(update={"panel": panel.model_copy(
        update={"users": users, "bind": "127.0.0.1"})})
    return dataclasses.replace(loaded, config=config)


def _release(site: SimulatedSite, *points: str) -> None:
    for point in points:
        site.release(point)


async def run_demo(loaded: LoadedConfig, print_every: float, duration: float | None,
                   panel_port: int) -> None:
    with tempfile.TemporaryDirectory(prefix="roomwarden-demo-") as tmp:
        async with SimulatedSite(loaded) as site:
            port = await site.serve_control()
            sim_config = Path(tmp) / "demo-gateway.yaml"
            write_atomically(site, sim_config)
            print(describe(site, port, sim_config), flush=True)
            gateway = Gateway(with_demo_user(load_gateway_config(sim_config)),
                              state_dir=Path(tmp) / "state", panel_port=panel_port)
            script = demo_script(loaded)
            started = time.monotonic()

            async def scene() -> None:
                await gateway.panel_ready.wait()
                print(f"\nLocal panel: http://127.0.0.1:{gateway.panel_port}/  "
                      "(log in as demo / demo to acknowledge)", flush=True)
                print("\nThe demo scene:" if script else "", flush=True)
                for at, text, _ in script:
                    print(f"  at {at:>3.0f} s: {text}", flush=True)
                print("Stop with Ctrl-C.\n", flush=True)
                for at, text, act in script:
                    await asyncio.sleep(max(0.0, at - (time.monotonic() - started)))
                    act(site)
                    print(f"\n*** {time.monotonic() - started:.0f} s: {text}\n", flush=True)

            async def show() -> None:
                while True:
                    await asyncio.sleep(print_every)
                    print(render(gateway.bus_loops, gateway.latest), flush=True)

            tasks = [asyncio.create_task(gateway.run()),
                     asyncio.create_task(scene()), asyncio.create_task(show())]
            try:
                await until_stopped(duration)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)


