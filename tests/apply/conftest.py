"""A simulated equipment room and a RoomWarden service (the same object `roomwarden run` uses)
polling it, with a control socket in tmp; helpers to change its config file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config.loader import load_gateway_config
from gateway.control import request
from gateway.sim.site import SimulatedSite
from gateway.supervisor import Service

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"


def edit_config(text: str, change: Callable[[dict[str, Any]], None]) -> str:
    data = yaml.safe_load(text)
    change(data)
    return yaml.safe_dump(data, sort_keys=False)


def device(data: dict[str, Any], device_id: str) -> dict[str, Any]:
    return next(d for d in data["devices"] if d["id"] == device_id)


def for_tests(data: dict[str, Any], health_timeout: str = "8s") -> None:
    data["panel"] = {"enabled": False}
    data.setdefault("flashing", {})["health_timeout"] = health_timeout


async def until(check: Callable[[], bool], seconds: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def ask(path: Path, body: dict[str, Any]) -> list[dict[str, Any]]:
    """One control-socket request from a worker thread (the client is blocking)."""
    return await asyncio.to_thread(lambda: list(request(path, body, timeout=60)))


@dataclass
class Running:
    site: SimulatedSite
    service: Service
    factory: Path
    control: Path
    tmp: Path

    @property
    def text(self) -> str:
        return self.factory.read_text(encoding="utf-8")

    def all_online(self) -> bool:
        return all(h.online for loop in self.service.gateway.bus_loops
                   for h in loop.stats.device_health.values())


@contextlib.asynccontextmanager
async def running_service(tmp: Path, health_timeout: str = "8s",
                          change: Callable[[dict[str, Any]], None] | None = None,
                          ) -> AsyncIterator[Running]:
    def prepare(data: dict[str, Any]) -> None:
        for_tests(data, health_timeout)
        if change is not None:
            change(data)

    async with SimulatedSite(load_gateway_config(SITE)) as site:
        factory = site.write_config(tmp / "gateway.yaml")
        factory.write_text(edit_config(factory.read_text(encoding="utf-8"), prepare),
                           encoding="utf-8")
        control = tmp / "control.sock"
        service = Service(factory, state_dir=tmp / "state", control_path=control)
        task = asyncio.create_task(service.run())
        run = Running(site, service, factory, control, tmp)
        try:
            await until(lambda: task.done() or run.all_online(), 30, "every device online")
            assert not task.done(), task
            yield run
        finally:
            service.stop()
            await asyncio.wait_for(task, 30)


def connected(path: Path, count: int) -> list[socket.socket]:
    """`count` clients connected to the control socket at `path`, saying nothing (each holds a
    slot; close them after)."""
    clients = []
    for _ in range(count):
        client = socket.socket(socket.AF_UNIX)
        client.connect(os.fspath(path))
        clients.append(client)
    return clients


@contextlib.asynccontextmanager
async def booted(tmp: Path, factory: Path, name: str = "control") -> AsyncIterator[Service]:
    """`roomwarden run` on the installed file `factory` with the state directory `tmp`/state
    (kept from one boot to the next), once its rules were evaluated; stopped at the end."""
    service = Service(factory, state_dir=tmp / "state", control_path=tmp / f"{name}.sock")
    task = asyncio.create_task(service.run())
    try:
        await until(lambda: task.done() or service.gateway.evaluations > 0, 30,
                    "the gateway running")
        assert not task.done(), task
        yield service
    finally:
        service.stop()
        await asyncio.wait_for(task, 30)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    async with running_service(tmp_path) as run:
        yield run
