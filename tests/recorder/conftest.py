"""A small simulated room (two smoke detectors, a T/H sensor, a relay module with a siren) and
the real gateway service (as `roomwarden run` runs it, control socket included) polling it on
loopback, with short incident windows so tests stay fast."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.config.loader import load_gateway_config
from gateway.contract.wire import AlarmRef
from gateway.daemon import Gateway
from gateway.recorder.store import IncidentStore
from gateway.sim.signals import Constant, Noise
from gateway.sim.site import SimulatedSite
from gateway.supervisor import Service

POLL = 0.5
PRE, POST, MAX_DURATION = 4.0, 2.0, 12.0
FIRE = ("fire.smoke_coincidence", "tx")

SITE: dict[str, Any] = {
    "gateway": {"id": "gw-rec", "site": "lab"},
    "rooms": [{"id": "tx", "type": "equipment"}],
    "buses": [{"id": "rs485", "type": "modbus_rtu", "port": "/dev/ttyX", "baudrate": 38400,
               "timeout": "500ms"}],
    "devices": [
        {"id": "smoke-1", "bus": "rs485", "unit": 1, "profile": "generic_smoke_detector",
         "room": "tx", "poll_interval": f"{int(POLL * 1000)}ms"},
        {"id": "smoke-2", "bus": "rs485", "unit": 2, "profile": "generic_smoke_detector",
         "room": "tx", "poll_interval": f"{int(POLL * 1000)}ms"},
        {"id": "th-1", "bus": "rs485", "unit": 3, "profile": "generic_th_sensor",
         "room": "tx", "poll_interval": f"{int(POLL * 1000)}ms"},
        {"id": "do-1", "bus": "rs485", "unit": 4, "profile": "generic_relay_module",
         "room": "tx", "poll_interval": f"{int(POLL * 1000)}ms"}],
    "outputs": [{"id": "siren-tx", "role": "siren", "device": "do-1", "point": "do1",
                 "rooms": ["tx"]}],
    "panel": {"enabled": False},
    "recorder": {"window": "30s"},
    # critical only: a device that misses polls on a loaded machine (device_offline, major)
    # opens no incident of its own here (the default, major and worse, is tested in test_ring)
    "incidents": {"pre": f"{PRE}s", "post": f"{POST}s", "max_duration": f"{MAX_DURATION}s",
                  "severity": "critical"},
}


async def until(condition: Callable[[], object], seconds: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        assert loop.time() < deadline, "condition never held"
        await asyncio.sleep(0.05)


@dataclass
class Rig:
    site: SimulatedSite
    gateway: Gateway
    state_dir: Path
    control: Path
    """The gateway's control socket (a `roomwarden run` service)."""


@contextlib.asynccontextmanager
async def running_rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """The simulated room and the gateway service polling it, while the block runs."""
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(SITE))
    async with SimulatedSite(load_gateway_config(config)) as site:
        site.set_signal("th-1.temperature", Noise(base=23.0, sigma=0.15, interval=POLL))
        control = tmp_path / "control.sock"
        service = Service(site.write_config(tmp_path / "sim.yaml"),
                          state_dir=tmp_path / "state", control_path=control)
        gateway = service.gateway
        task = asyncio.create_task(service.run())
        try:
            await until(lambda: gateway.started.is_set() and control.exists())
            yield Rig(site, gateway, tmp_path / "state", control)
        finally:
            service.stop()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 15)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with running_rig(tmp_path) as running:
        yield running


ACK_NOTE = "checked the room: burning cable tray"


async def confirmed_fire(rig: Rig) -> str:
    """Quiet data, then both detectors in alarm (a confirmed fire, the siren sounds), the
    saved open incident, alice's acknowledgement (the siren is silenced), the detectors reset,
    the incident closed. Returns its id."""
    gateway, site = rig.gateway, rig.site
    await until(lambda: gateway.recording.recorder is not None
                and len(gateway.recording.recorder.samples("th-1.temperature")) >= 2 * PRE / POLL)
    site.set_signal("smoke-1.alarm", Constant(value=True))
    site.set_signal("smoke-2.alarm", Constant(value=True))
    key = AlarmKey(*FIRE)
    await until(lambda: key in gateway.core.alarms.known()
                and gateway.core.alarms.get(key).state is AlarmState.ACTIVE_UNACKNOWLEDGED)
    await until(lambda: site.read_point("do-1.do1") is True)  # the siren sounds…
    recorder = gateway.recording.recorder
    assert recorder is not None
    await until(lambda: any(s.value is True for s in recorder.samples("do-1.do1")))
    # …and the relay module's own poll has seen it on
    store = IncidentStore(rig.state_dir / "incidents")
    await until(lambda: len(store.ids()) == 1)
    assert store.load(store.ids()[0])["status"] == "open"  # saved at once, before it ends
    assert gateway.acknowledge([AlarmRef(rule=FIRE[0], subject=FIRE[1])], "alice",
                               ACK_NOTE) == 1
    await until(lambda: site.read_point("do-1.do1") is False)  # silenced by the ack
    site.set_signal("smoke-1.alarm", Constant(value=False))
    site.set_signal("smoke-2.alarm", Constant(value=False))
    await until(lambda: store.load(store.ids()[0])["status"] == "closed", 30)

    [incident_id] = store.ids()
    return incident_id


async def fire_recorded(rig: Rig) -> tuple[IncidentStore, str]:
    """Both detectors in alarm, until the incident's record is on disk: (the store, its id)."""
    rig.site.set_signal("smoke-1.alarm", Constant(value=True))
    rig.site.set_signal("smoke-2.alarm", Constant(value=True))
    store = IncidentStore(rig.state_dir / "incidents")
    await until(lambda: len(store.ids()) == 1)
    return store, store.ids()[0]
