"""Incident records reach the central side (issue 12): a confirmed fire on a simulated room,
the real gateway service (recorder, keeper, uplink with its durable outbox) → a real Mosquitto →
the real ingest → its incident store; `roomwarden incident … --central` shows and exports the
same report as `--state-dir` on the gateway. Also with the broker stopped while the incident is
sent and the gateway restarted before it comes back: the record arrives complete, once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config.loader import load_gateway_config
from gateway.contract.wire import MessageKind
from gateway.ingest.incidents import CentralIncidents
from gateway.ingest.service import IngestService
from gateway.ingest.settings import load_settings
from gateway.recorder.store import IncidentStore
from gateway.sim.signals import Noise
from gateway.sim.site import SimulatedSite
from gateway.supervisor import Service
from gateway.uplink.incidents import is_sent
from tests.fixtures.services import Broker, Victoria
from tests.recorder.conftest import POLL, SITE, Rig, confirmed_fire, until


def central_config(tmp_path: Path, broker: Broker, vm: Victoria) -> Path:
    """The ingest's central.yaml (as an operator writes it), on the test's services."""
    path = tmp_path / "central" / "central.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump({
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "protocol": "5",
                 "client_id": "ingest-incidents", "shared_group": "ingest"},
        "influx": {"url": vm.url, "token": "t", "org": "o", "bucket": "b",
                   "flush_interval": "200ms", "retry_max_wait": "1s"},
        "dead_letter": "dead.jsonl", "catalog_store": "catalogs.sqlite"}))
    return path


@asynccontextmanager
async def ingest(config: Path) -> AsyncIterator[IngestService]:
    service = IngestService(load_settings(config))
    service.start()
    try:
        yield service
    finally:
        await asyncio.to_thread(service.stop)


@asynccontextmanager
async def simulated_room(tmp_path: Path, broker: Broker) -> AsyncIterator[SimulatedSite]:
    """The recorder tests' room; the gateway config it writes has an uplink on `broker`."""
    factory = tmp_path / "room.yaml"
    factory.write_text(yaml.safe_dump({
        **SITE, "uplink": {"broker": "127.0.0.1", "port": broker.port, "protocol": "5",
                           "ack_timeout": "2s", "reconnect_max": "2s"}}))
    async with SimulatedSite(load_gateway_config(factory)) as site:
        site.set_signal("th-1.temperature", Noise(base=23.0, sigma=0.15, interval=POLL))
        yield site


@asynccontextmanager
async def gateway(site: SimulatedSite, tmp_path: Path, run: int) -> AsyncIterator[Rig]:
    """The gateway service (as `roomwarden run` runs it) on `site`; the same state directory
    every run."""
    control = tmp_path / f"control-{run}.sock"
    service = Service(site.write_config(tmp_path / f"sim-{run}.yaml"),
                      state_dir=tmp_path / "state", control_path=control)
    task = asyncio.create_task(service.run())
    try:
        await until(lambda: service.gateway.started.is_set() and control.exists())
        yield Rig(site, service.gateway, tmp_path / "state", control)
    finally:
        service.stop()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 15)


@pytest.fixture
def mqtt_broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


def roomwarden(*args: str | Path) -> str:
    done = subprocess.run([sys.executable, "-m", "gateway", *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def central_store(config: Path) -> CentralIncidents:
    settings = load_settings(config)
    return CentralIncidents(settings.incident_store, settings.incidents, readonly=True)


async def arrived(config: Path, incident_id: str) -> list[dict[str, Any]]:
    def complete() -> bool:
        store = central_store(config)
        try:
            return any(r["id"] == incident_id for r in store.summaries())
        finally:
            store.close()
    await until(complete, 60)
    store = central_store(config)
    try:
        return store.summaries()
    finally:
        store.close()


async def all_covered(rig: Rig) -> None:
    """Every chunk left the outbox: the ingest's watermark covered it."""
    uplink = rig.gateway.uplink
    assert uplink is not None
    await until(lambda: uplink.outbox.depth(MessageKind.ALARM) == 0, 30)


def stored(config: Path, incident_id: str) -> tuple[tuple[str, str, bytes], int]:
    """The central store's copy (site, gateway, bytes) and how many records wait for chunks."""
    store = central_store(config)
    try:
        return store.read(incident_id), len(store.waiting())
    finally:
        store.close()


def same_report(config: Path, state_dir: Path, incident_id: str, tmp_path: Path) -> None:
    """show and export from the central store equal what the gateway's state directory gives
    (the five commands run side by side: each is mostly interpreter start-up)."""
    central = ("--central", config)
    local = ("--state-dir", state_dir)
    commands = [("incident", "show", incident_id, *central),
                ("incident", "show", incident_id, *local),
                ("incident", "export", incident_id, "--html", tmp_path / "central.html",
                 *central),
                ("incident", "export", incident_id, "--html", tmp_path / "gateway.html", *local),
                ("incident", "list", *central)]
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        show_central, show_local, _, _, listing = pool.map(lambda c: roomwarden(*c), commands)
    assert show_central == show_local
    html = (tmp_path / "central.html").read_bytes()
    assert html == (tmp_path / "gateway.html").read_bytes()
    assert b"<svg" in html and incident_id.encode() in html
    assert "lab/gw-rec" in listing and incident_id in listing and "critical" in listing


async def test_a_confirmed_fire_reaches_the_central_store_and_reports_the_same(
        tmp_path: Path, mqtt_broker: Broker, victoria: Victoria) -> None:
    broker = mqtt_broker
    config = central_config(tmp_path, broker, victoria)
    async with ingest(config) as service, simulated_room(tmp_path, broker) as site:
        async with gateway(site, tmp_path, 1) as rig:
            incident_id = await confirmed_fire(rig)
            rows = await arrived(config, incident_id)
            await all_covered(rig)
        data = IncidentStore(tmp_path / "state" / "incidents").read(incident_id)
        assert stored(config, incident_id) == (("lab", "gw-rec", data), 0)  # the same bytes
        assert [(r["id"], r["status"], r["room"], r["rule"]) for r in rows] == [
            (incident_id, "closed", "tx", "fire.smoke_coincidence")]
        assert service.status()["dead_lettered"] == 0
    same_report(config, tmp_path / "state", incident_id, tmp_path)


async def test_an_incident_sent_during_a_broker_outage_arrives_after_a_gateway_restart(
        tmp_path: Path, mqtt_broker: Broker, victoria: Victoria) -> None:
    broker = mqtt_broker
    config = central_config(tmp_path, broker, victoria)
    async with ingest(config) as service, simulated_room(tmp_path, broker) as site:
        async with gateway(site, tmp_path, 1) as rig:
            uplink = rig.gateway.uplink
            assert uplink is not None
            await until(lambda: uplink.status().connected, 20)
            await asyncio.to_thread(broker.stop)  # the outage begins
            incident_id = await confirmed_fire(rig)
            data = IncidentStore(tmp_path / "state" / "incidents").read(incident_id)
            await until(lambda: is_sent(uplink, incident_id, data), 20)  # in the outbox
            assert not uplink.status().connected
        # the gateway stopped with the incident in its outbox; the broker comes back, then the
        # gateway (same state directory)
        await asyncio.to_thread(broker.start)
        async with gateway(site, tmp_path, 2) as rig:
            rows = await arrived(config, incident_id)
            await all_covered(rig)
        assert [r["id"] for r in rows] == [incident_id]  # once
        assert stored(config, incident_id) == (("lab", "gw-rec", data), 0)
        status = service.status()
        assert status["dead_lettered"] == 0
    same_report(config, tmp_path / "state", incident_id, tmp_path)


async def test_records_the_outbox_never_got_are_sent_at_the_next_start(
        tmp_path: Path, mqtt_broker: Broker, victoria: Victoria) -> None:
    """A closed record saved before the uplink was configured (or by a process that died before
    its chunks were committed) and one left open by a process that died: the next start marks
    the open one interrupted and sends both."""
    broker = mqtt_broker
    config = central_config(tmp_path, broker, victoria)
    incidents = IncidentStore(tmp_path / "state" / "incidents")
    ids = {"closed": "20261203T031200Z-tx-7", "open": "20261203T031500Z-tx-9"}
    for status, incident_id in ids.items():
        incidents.save({"format": "roomwarden-incident/1", "id": incident_id,
                        "status": status, "kind": "alarm", "room": "tx", "gateway": "gw-rec",
                        "site": "lab", "trigger": {"rule": "fire.smoke_coincidence",
                                                   "subject": "tx", "severity": "critical"}})
    async with ingest(config), simulated_room(tmp_path, broker) as site, \
            gateway(site, tmp_path, 1) as rig:
        await arrived(config, ids["closed"])
        rows = await arrived(config, ids["open"])
        await all_covered(rig)
    assert {r["id"]: r["status"] for r in rows} == {ids["closed"]: "closed",
                                                    ids["open"]: "interrupted"}
    for incident_id in ids.values():
        assert stored(config, incident_id)[0][2] == incidents.read(incident_id)
