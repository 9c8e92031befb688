"""`roomwarden simulate` and `roomwarden demo`: the simulator as a process, and the demo scene."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from gateway.config.loader import LoadedConfig, load_gateway_config
from gateway.config.profile import ModbusProfile
from gateway.sim.faults import Fault, FaultMode
from gateway.sim.site import SimulatedSite


def write_atomically(site: SimulatedSite, path: Path) -> None:
    """Write the redirected config so that a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    site.write_config(Path(temp))
    os.replace(temp, path)


async def until_stopped(duration: float | None) -> None:
    """Return after `duration` seconds, or on SIGTERM / SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration)


def describe(site: SimulatedSite, control_port: int, config_path: Path) -> str:
    lines = [f"simulating {len(site.devices())} devices of gateway "
             f"{site.loaded.config.gateway.id}:"]
    for bus in site.loaded.config.buses:
        with contextlib.suppress(KeyError):
            lines.append(f"  bus {bus.id:<12} {bus.type:<12} -> {site.endpoint(bus.id)}")
    lines.append(f"control channel: 127.0.0.1:{control_port} (JSON lines; "
                 f"`roomwarden simctl {control_port} '{{\"cmd\": \"list\"}}'`)")
    lines.append(f"gateway config pointed at the simulator: {config_path}")
    return "\n".join(lines)


async def run_simulator(loaded: LoadedConfig, config_out: Path, control_port: int,
                        duration: float | None) -> None:
    async with SimulatedSite(loaded) as site:
        port = await site.serve_control(port=control_port)
        write_atomically(site, config_out)
        print(describe(site, port, config_out), flush=True)
        await until_stopped(duration)


async def send_control(port: int, command: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(command.strip().encode() + b"\n")
        await writer.drain()
        return (await asyncio.wait_for(reader.readline(), 10)).decode().strip()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


# --- the demo ------------------------------------------------------------------------------


Step = tuple[float, str, Callable[[SimulatedSite], None]]


def demo_script(loaded: LoadedConfig) -> list[Step]:
    """A short scene on the demo site: one device goes silent and comes back, another
    answers garbage for a while; the rest of its bus keeps reading."""
    modbus = [d for d in loaded.config.devices
              if isinstance(loaded.profiles.get(d.profile), ModbusProfile)]
    if len(modbus) < 2:
        return []
    silent, noisy = modbus[0].id, modbus[-1].id
    return [
        (20.0, f"{silent} stops answering (no reply): watch it go OFFLINE after 3 polls, "
               "while the other devices keep reading",
         lambda site: site.set_fault(silent, Fault(mode=FaultMode.NO_REPLY))),
        (45.0, f"{silent} answers again: back online after one good poll",
         lambda site: site.set_fault(silent, Fault(mode=FaultMode.NONE))),
        (55.0, f"{noisy} replies with CRC errors half of the time",
         lambda site: site.set_fault(noisy, Fault(mode=FaultMode.CRC_ERROR, probability=0.5))),
        (75.0, f"{noisy} is healthy again",
         lambda site: site.set_fault(noisy, Fault(mode=FaultMode.NONE))),
    ]


async def run_demo(loaded: LoadedConfig, print_every: float, duration: float | None,
                   printer: Callable[[object], None],
                   make_gateway: Callable[[LoadedConfig], object],
                   run_gateway: Callable[[object], Coroutine[Any, Any, None]]) -> None:
    with tempfile.TemporaryDirectory(prefix="roomwarden-demo-") as tmp:
        async with SimulatedSite(loaded) as site:
            port = await site.serve_control()
            sim_config = Path(tmp) / "demo-gateway.yaml"
            write_atomically(site, sim_config)
            print(describe(site, port, sim_config), flush=True)
            gateway = make_gateway(load_gateway_config(sim_config))
            script = demo_script(loaded)
            print("\nThe demo scene:" if script else "", flush=True)
            for at, text, _ in script:
                print(f"  at {at:>3.0f} s: {text}", flush=True)
            print("Stop with Ctrl-C.\n", flush=True)
            started = time.monotonic()

            async def scene() -> None:
                for at, text, act in script:
                    await asyncio.sleep(max(0.0, at - (time.monotonic() - started)))
                    act(site)
                    print(f"\n*** {time.monotonic() - started:.0f} s: {text}\n", flush=True)

            async def show() -> None:
                while True:
                    await asyncio.sleep(print_every)
                    printer(gateway)

            tasks = [asyncio.create_task(run_gateway(gateway)),
                     asyncio.create_task(scene()), asyncio.create_task(show())]
            try:
                await until_stopped(duration)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)


def parse_command(text: str) -> str:
    """Check that a control command is one JSON object before it is sent."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("a control command is one JSON object")
    return json.dumps(value)
