"""A real gateway with its panel on a free port, polling a simulated shipped site on loopback
(the demo user `demo`/`demo` logged in as the panel's tests do)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.config.loader import load_gateway_config
from gateway.config.section import replaced
from gateway.daemon import Gateway
from gateway.demo import with_demo_user
from gateway.sim.site import SimulatedSite


@dataclass
class Live:
    site: SimulatedSite
    gateway: Gateway
    url: str


@contextlib.asynccontextmanager
async def live_panel(site_config: Path, tmp_path: Path, *, uplink: bool = True,
                     change: Callable[[dict[str, Any]], None] | None = None
                     ) -> AsyncIterator[Live]:
    """The gateway running until the block ends; `uplink=False` leaves the config's uplink
    out (no broker needed); `change` edits the gateway's config (as YAML data) first."""
    async with SimulatedSite(load_gateway_config(site_config)) as site:
        path = site.write_config(tmp_path / "sim.yaml")
        if change is not None:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            change(data)
            path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        loaded = with_demo_user(load_gateway_config(path))
        if not uplink:
            loaded = dataclasses.replace(loaded, config=replaced(loaded.config, uplink=None))
        gateway = Gateway(loaded, state_dir=tmp_path / "state", panel_port=0)
        task = asyncio.create_task(gateway.run())
        try:
            await asyncio.wait_for(gateway.panel_ready.wait(), 10)
            yield Live(site, gateway, f"http://127.0.0.1:{gateway.panel_port}")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
