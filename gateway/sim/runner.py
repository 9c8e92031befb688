"""`roomwarden simulate` and `roomwarden demo`: the simulator as a process, and the demo scene."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import tempfile
from pathlib import Path

from gateway.config.loader import LoadedConfig
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


def parse_command(text: str) -> str:
    """Check that a control command is one JSON object before it is sent."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("a control command is one JSON object")
    return json.dumps(value)
