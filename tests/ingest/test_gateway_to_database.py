"""End to end: a simulated device → the real gateway daemon (poll, rules, alarms, outbox,
MQTT publisher) → a real Mosquitto → the ingest service → a row in a real VictoriaMetrics."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from gateway.config.loader import load_gateway_config
from gateway.config.section import replaced, validator
from gateway.daemon import Gateway
from gateway.ingest.service import IngestService
from gateway.sim.signals import Constant
from gateway.sim.site import SimulatedSite
from gateway.uplink.settings import UplinkSettings
from tests.ingest.conftest import Broker, Victoria
from tests.ingest.test_service import make_settings

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"


async def until(check: object, seconds: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not check():  # type: ignore[operator]
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


def gateway_publishing_to(site: SimulatedSite, broker: Broker, tmp_path: Path) -> Gateway:
    """The real daemon on the simulated site, its uplink on `broker` (MQTT 5), no panel."""
    loaded = load_gateway_config(site.write_config(tmp_path / "sim.yaml"))
    uplink = validator(UplinkSettings).validate_python(
        {"broker": "127.0.0.1", "port": broker.port, "protocol": "5"})
    config = replaced(loaded.config, uplink=uplink,
                      panel=replaced(loaded.config.panel, enabled=False))
    return Gateway(dataclasses.replace(loaded, config=config), state_dir=tmp_path / "state")


def series(vm: Victoria, match: str) -> list[dict[str, Any]]:
    return vm.export(match)


async def test_a_simulated_reading_and_an_alarm_reach_the_database(
        tmp_path: Path, broker: Broker, victoria: Victoria) -> None:
    service = IngestService(make_settings(tmp_path, broker, victoria))
    service.start()
    try:
        async with SimulatedSite(load_gateway_config(SITE)) as site:
            gateway = gateway_publishing_to(site, broker, tmp_path)
            site.set_signal("th-tx-a03.temperature", Constant(value=31.5))
            task = asyncio.create_task(gateway.run())
            try:
                await until(lambda: gateway.uplink is not None
                            and gateway.uplink.status().connected, 15, "uplink connected")
                # a reading: the T/H sensor of the transmission room
                await until(lambda: any(
                    s["metric"].get("device") == "th-tx-a03"
                    for s in series(victoria, '{__name__="temperature_value"}')), 30,
                    "th-tx-a03 temperature in the database")
                rows = [s for s in series(victoria, '{__name__="temperature_value"}')
                        if s["metric"].get("device") == "th-tx-a03"]
                labels = rows[0]["metric"]
                assert labels["site"] == "gz-tianhe-exchange"
                assert labels["gateway"] == "fsu-gz-tianhe-0301"
                assert labels["room"] == "tx-3f" and labels["quality"] == "good"
                assert 31.5 in rows[0]["values"]

                # an alarm: smoke in both detectors → a confirmed fire, journalled centrally
                site.set_signal("smoke-tx-01.alarm", Constant(value=True))
                site.set_signal("smoke-tx-02.alarm", Constant(value=True))
                await until(lambda: any(
                    s["metric"].get("rule") == "fire.smoke_coincidence"
                    for s in series(victoria, '{__name__=~"alarm_events_.*"}')), 30,
                    "the fire alarm event in the database")
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        assert service.status()["dead_lettered"] == 0
    finally:
        service.stop()


async def test_an_ingest_that_missed_the_catalog_gets_it_from_the_gateway(
        tmp_path: Path, broker: Broker, victoria: Victoria) -> None:
    """A second ingest instance joins the shared subscription after the gateway sent its point
    catalog: its share of the batches waits while it sends `request_state`, the real gateway
    answers with its catalog, and every batch is written — none dead-lettered."""
    first = IngestService(make_settings(tmp_path / "a", broker, victoria, client_id="ingest-a"))
    late = IngestService(make_settings(tmp_path / "b", broker, victoria, client_id="ingest-b"))
    first.start()
    try:
        async with SimulatedSite(load_gateway_config(SITE)) as site:
            gateway = gateway_publishing_to(site, broker, tmp_path)
            task = asyncio.create_task(gateway.run())
            try:
                await until(lambda: first.status()["catalogs"] == 1
                            and int(first.status()["written_points"]) > 0, 30,
                            "the first instance writing")
                late.start()
                await until(lambda: int(late.status()["requested_state"]) >= 1, 30,
                            "request_state from the late instance")
                await until(lambda: late.status()["catalogs"] == 1
                            and int(late.status()["written_points"]) > 0, 30,
                            "the late instance writing with the resent catalog")
                await until(lambda: late.status()["parked"] == 0, 10, "nothing waiting")
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        # (request_state is only sent for a batch naming an unknown catalog; the gateway may
        # answer before the writer even parks it)
        assert first.status()["dead_lettered"] == late.status()["dead_lettered"] == 0
    finally:
        first.stop()
        late.stop()
