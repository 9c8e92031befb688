"""A real gateway polling the simulator on loopback (tests/ops/site.yaml: two Modbus TCP buses,
200 ms polls), its panel on a free port; helpers to scrape /metrics and /healthz over HTTP.
Also a real mosquitto (tests/fixtures/services.py) for the uplink figures."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config.loader import LoadedConfig, load_gateway_config
from gateway.config.section import replaced, validator
from gateway.daemon import Gateway
from gateway.localservices import free_port
from gateway.sim.site import SimulatedSite
from gateway.uplink.settings import UplinkSettings
from tests.fixtures.services import Broker, broker, victoria

__all__ = ["SITE", "Broker", "Live", "Scrape", "broker", "free_port", "live", "stop", "until",
           "victoria"]

SITE = Path(__file__).resolve().parent / "site.yaml"


async def until(check: Callable[[], bool], what: str, seconds: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@dataclass
class Scrape:
    """One /metrics answer: samples by (name, labels), and the families as parsed."""

    text: str
    content_type: str
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    families: dict[str, Any]

    def value(self, name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        assert key in self.samples, f"no sample {name}{labels}"
        return self.samples[key]

    def all(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {labels: v for (n, labels), v in self.samples.items() if n == name}


@dataclass
class Live:
    site: SimulatedSite
    gateway: Gateway
    url: str

    async def scrape(self) -> Scrape:
        async with aiohttp.ClientSession() as client, client.get(self.url + "/metrics") as r:
            assert r.status == 200, await r.text()
            text = await r.text()
            ctype = r.headers["Content-Type"]
        samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        families: dict[str, Any] = {}
        for family in text_string_to_metric_families(text):
            families[family.name] = family
            for s in family.samples:
                key = (s.name, frozenset(s.labels.items()))
                assert key not in samples, f"duplicate sample {key}"
                samples[key] = s.value
        return Scrape(text, ctype, samples, families)

    async def healthz(self) -> tuple[int, dict[str, Any]]:
        async with aiohttp.ClientSession() as client, client.get(self.url + "/healthz") as r:
            assert r.content_type == "application/json"
            return r.status, await r.json()

    def device_online(self, device: str) -> bool | None:
        for loop in self.gateway.bus_loops:
            if device in loop.stats.device_health:
                return loop.stats.device_health[device].online
        raise KeyError(device)

    def all_online(self) -> bool:
        return all(h.online for loop in self.gateway.bus_loops
                   for h in loop.stats.device_health.values())


def with_uplink(loaded: LoadedConfig, port: int, **extra: object) -> LoadedConfig:
    uplink = validator(UplinkSettings).validate_python(
        {"broker": "127.0.0.1", "port": port, "protocol": "5", "reconnect_min": 0.2,
         "reconnect_max": 1.0, **extra})
    return dataclasses.replace(loaded, config=replaced(loaded.config, uplink=uplink))


async def start_live(tmp_path: Path, uplink_port: int | None = None,
                     **uplink: object) -> AsyncGenerator[Live, None]:
    async with SimulatedSite(load_gateway_config(SITE)) as site:
        loaded = load_gateway_config(site.write_config(tmp_path / "sim.yaml"))
        if uplink_port is not None:
            loaded = with_uplink(loaded, uplink_port, **uplink)
        gateway = Gateway(loaded, state_dir=tmp_path / "state", panel_port=0)
        task = asyncio.create_task(gateway.run())
        try:
            await asyncio.wait_for(gateway.panel_ready.wait(), 10)
            live = Live(site, gateway, f"http://127.0.0.1:{gateway.panel_port}")
            await until(live.all_online, "every simulated device online")
            yield live
        finally:
            await stop(task)


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel the gateway and wait for it (bounded: a stop that hangs is a bug)."""
    task.cancel()
    await asyncio.wait([task], timeout=30)
    assert task.done(), "the gateway did not stop within 30 s of a cancel"
    await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    async for running in start_live(tmp_path):
        yield running
