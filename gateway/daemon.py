"""The composition root: wires config → bus loops → sample sinks, and runs them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.clock import Clock, SystemClock
from gateway.config.loader import LoadedConfig
from gateway.field.bus_loop import BusLoop
from gateway.field.buses import build_bus_loops
from gateway.field.latest import LatestSamples
from gateway.field.sample import Sample

log = logging.getLogger("roomwarden.daemon")


class Gateway:
    def __init__(self, loaded: LoadedConfig, clock: Clock | None = None,
                 extra_sinks: list[Callable[[list[Sample]], None]] | None = None) -> None:
        self.loaded = loaded
        self.clock = clock or SystemClock()
        self.latest = LatestSamples()
        self.sinks = [self.latest.update, *(extra_sinks or [])]
        self.bus_loops: list[BusLoop] = build_bus_loops(loaded, self._fan_out, self.clock)

    def _fan_out(self, batch: list[Sample]) -> None:
        for sink in self.sinks:
            sink(batch)

    async def run(self) -> None:
        cfg = self.loaded.config
        log.info("event=gateway_start gateway=%s site=%s buses=%d devices=%d", cfg.gateway.id,
                 cfg.gateway.site, len(self.bus_loops), len(cfg.devices))
        async with asyncio.TaskGroup() as group:
            for loop in self.bus_loops:
                group.create_task(loop.run(), name=f"bus:{loop.bus_id}")
