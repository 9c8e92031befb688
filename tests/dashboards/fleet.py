"""A small fleet feeding real databases, for the dashboard tests.

Two simulated sites (the shipped telecom equipment room and the lithium data-centre room), each
with the real gateway daemon (panel and /metrics on a free port, uplink to a real Mosquitto),
and two real ingest services reading the broker: one writes InfluxDB 1.x through the v1 API,
the other VictoriaMetrics through the v2 API with `store: victoriametrics`. The scene:

* the telecom room: smoke in both detectors (a confirmed fire), acknowledged by `alice` with a
  note; the smoke clears and alice resets the latched fire alarm (back to normal); a T/H
  sensor stops answering (points not good);
* the data centre: a water leak, left active (an active alarm); a second one acknowledged by
  `bob` and left active; then the gateway stops (offline).

The telecom gateway and both ingests keep running while the tests query (Prometheus scrapes
them). Everything runs in one background thread with its own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config.loader import LoadedConfig, load_gateway_config
from gateway.config.section import replaced, validator
from gateway.contract.wire import AlarmRef
from gateway.daemon import Gateway
from gateway.demo import _points_by_quantity, with_demo_user
from gateway.ingest.service import IngestService
from gateway.ingest.settings import IngestSettings
from gateway.operator.refusals import Refused
from gateway.sim.faults import Fault, FaultMode
from gateway.sim.signals import Constant
from gateway.sim.site import SimulatedSite
from gateway.uplink.settings import UplinkSettings
from tests.fixtures.databases import InfluxV1
from tests.fixtures.services import Broker, Victoria

REPO = Path(__file__).resolve().parents[2]
TELECOM = REPO / "firmware_configs" / "telecom_equipment_room.yaml"
DATACENTER = REPO / "firmware_configs" / "datacenter_lithium_room.yaml"
DATABASE = "roomwarden"
ACTOR = "alice"
NOTE = "checked on site: detector dusty, siren silenced, ticket INC-4711"
RESET_NOTE = "smoke gone, fire alarm reset"
SILENT = "th-tx-a03"
SEEP_ACTOR = "bob"
"""Acknowledges the data centre's second leak (left active)."""
"""The telecom T/H sensor that stops answering."""


@dataclass
class Fleet:
    broker: Broker
    influx: InfluxV1
    victoria: Victoria
    workdir: Path
    ingests: dict[str, IngestService] = field(default_factory=dict)
    started_ms: int = 0
    sites: dict[str, str] = field(default_factory=dict)
    """config file stem → site id"""
    gateways: dict[str, str] = field(default_factory=dict)
    """config file stem → gateway id"""
    rooms: dict[str, str] = field(default_factory=dict)
    """what → room: `fire`, `silent`, `leak`"""
    gateway_metrics: str = ""
    """host:port of the running telecom gateway's /metrics"""
    error: BaseException | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def influxql(self, q: str) -> list[dict[str, Any]]:
        result = self.influx.query(q, DATABASE, epoch="ms")
        series = result.get("series", [])
        assert isinstance(series, list)
        return series

    def promql(self, q: str) -> list[dict[str, Any]]:
        self.victoria.flush()  # see _scene
        body = urllib.parse.urlencode({"query": q}).encode()
        with urllib.request.urlopen(self.victoria.url + "/api/v1/query", data=body,
                                    timeout=30) as r:
            data = json.loads(r.read().decode())
        assert data["status"] == "success", data
        result = data["data"]["result"]
        assert isinstance(result, list)
        return result


def ingest_settings(fleet: Fleet, name: str, influx: dict[str, object]) -> IngestSettings:
    work = fleet.workdir / name
    return IngestSettings.model_validate({
        "mqtt": {"host": "127.0.0.1", "port": fleet.broker.port, "protocol": "5",
                 "client_id": f"ingest-{name}", "shared_group": None},
        "influx": {"batch_size": 2000, "flush_interval": "300ms", "retry_max_wait": "1s",
                   **influx},
        "dead_letter": str(work / "dead.jsonl"), "catalog_store": str(work / "catalogs.sqlite"),
        "http": {"bind": "127.0.0.1", "port": 0}})


def _gateway(loaded: LoadedConfig, site: SimulatedSite, fleet: Fleet, name: str) -> Gateway:
    config = with_demo_user(_no_parity(load_gateway_config(
        site.write_config(fleet.workdir / f"{name}.yaml"))))
    uplink = validator(UplinkSettings).validate_python({
        "broker": "127.0.0.1", "port": fleet.broker.port, "protocol": "5",
        "client_id": f"gw-{name}", "delivery": "puback", "reconnect_min": "500ms",
        "exception": {"max_interval": "5s"}})
    config = dataclasses.replace(config, config=replaced(config.config, uplink=uplink))
    return Gateway(config, state_dir=fleet.workdir / f"state-{name}", panel_port=0)


def _no_parity(loaded: LoadedConfig) -> LoadedConfig:
    """The RS-485 buses without parity: the pseudo-terminals of this machine refuse even
    parity (tcsetattr EINVAL), and parity is irrelevant to what the dashboards show."""
    buses = tuple(replaced(b, parity="N") if getattr(b, "parity", "N") != "N"
                  else b for b in loaded.config.buses)
    return dataclasses.replace(loaded, config=replaced(loaded.config, buses=buses))


async def _until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if await asyncio.to_thread(check):
                return
        except (OSError, AssertionError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


def _rows(fleet: Fleet, q: str) -> int:
    return sum(len(s.get("values", [])) for s in fleet.influxql(q))


async def _scene(fleet: Fleet) -> None:
    telecom, datacenter = load_gateway_config(TELECOM), _no_parity(load_gateway_config(DATACENTER))
    fleet.sites = {"telecom": telecom.config.gateway.site,
                   "datacenter": datacenter.config.gateway.site}
    fleet.gateways = {"telecom": telecom.config.gateway.id,
                      "datacenter": datacenter.config.gateway.id}
    smoke = [p for p, _ in _points_by_quantity(telecom, "smoke")][:2]
    fleet.rooms["fire"] = _points_by_quantity(telecom, "smoke")[0][1]
    fleet.rooms["silent"] = next(d.room for d in telecom.config.devices if d.id == SILENT)
    (leak, fleet.rooms["leak"]), (seep, _) = _points_by_quantity(datacenter, "water_leak")[:2]
    async with SimulatedSite(telecom) as tel_site, SimulatedSite(datacenter) as dc_site:
        tel = _gateway(telecom, tel_site, fleet, "telecom")
        dc = _gateway(datacenter, dc_site, fleet, "datacenter")
        tasks = {"telecom": asyncio.create_task(tel.run()),
                 "datacenter": asyncio.create_task(dc.run())}
        try:
            sites = "|".join(fleet.sites.values())
            await _until(lambda: len(fleet.influxql(
                f'SELECT count("value") FROM "temperature" WHERE "site" =~ /^({sites})$/ '
                'GROUP BY "site"')) == 2, 60, "both sites' temperatures in InfluxDB")
            await _drill(fleet, tel)  # issue 12: a live drill's events (the drill column)
            for point in smoke:
                tel_site.set_signal(point, Constant(value=True))
            dc_site.set_signal(leak, Constant(value=True))
            tel_site.set_fault(SILENT, Fault(mode=FaultMode.NO_REPLY))
            await _until(lambda: _rows(fleet, 'SELECT "state" FROM "alarm_events" WHERE '
                                       "\"rule\" = 'fire.smoke_coincidence'") > 0, 60, "the fire")
            assert tel.commands.acknowledge_all(ACTOR, None, NOTE) > 0
            await _until(lambda: _rows(fleet, f"SELECT \"note\" FROM \"alarm_events\" WHERE "
                                       f"\"actor\" = '{ACTOR}'") > 0, 30, "the acknowledgement")
            for point in smoke:
                tel_site.release(point)
            # the fire alarm latches: once the smoke is gone its own acknowledge resets it
            # ("acknowledge all" leaves an acknowledged latch for its reset)
            fires = [AlarmRef(rule=v.key.rule, subject=v.key.subject)
                     for v in tel.core.alarms.active() if v.key.rule == "fire.smoke_coincidence"]
            assert fires, "the fire is in the alarm list"
            deadline = time.monotonic() + 60
            while not await asyncio.to_thread(lambda: _rows(
                    fleet, 'SELECT "state" FROM "alarm_events" WHERE "rule" = '
                    "'fire.smoke_coincidence' AND \"state\" = 'normal'") > 0):
                assert time.monotonic() < deadline, "timed out waiting for the fire's reset"
                with contextlib.suppress(Refused):  # (its smoke not yet gone)
                    tel.commands.acknowledge(fires, ACTOR, RESET_NOTE)
                await asyncio.sleep(1.0)
            await _until(lambda: _rows(fleet, 'SELECT "active" FROM "alarm_events" WHERE '
                                       "\"rule\" =~ /water/ AND \"active\" = true") > 0, 60,
                         "the water leak alarm")
            # a second leak, acknowledged by bob and left active: the Active-alarms table
            # has an alarm in each of the states active unacknowledged and acknowledged
            dc_site.set_signal(seep, Constant(value=True))
            seep_ref = AlarmRef(rule="environment.water_leak", subject=seep)
            deadline = time.monotonic() + 60
            while True:  # acknowledged once its alarm is raised (normal until then)
                with contextlib.suppress(Refused):
                    if dc.commands.acknowledge([seep_ref], SEEP_ACTOR, None):
                        break
                assert time.monotonic() < deadline, "timed out waiting for the second leak"
                await asyncio.sleep(0.2)
            await _until(lambda: _rows(fleet, f'SELECT "state" FROM "alarm_events" WHERE '
                                       f"\"actor\" = '{SEEP_ACTOR}'") > 0, 30,
                         "the second leak acknowledged")
            await _until(lambda: _rows(fleet, f'SELECT "no_value" FROM /.*/ WHERE "device" = '
                                       f"'{SILENT}' AND \"quality\" != 'good'") > 0, 60,
                         "the silent sensor's points not good")
            dc.request_stop()  # a clean stop: the retained offline state, published now
            await asyncio.wait_for(tasks["datacenter"], 30)
            await _until(lambda: _rows(fleet, 'SELECT "online" FROM "gateway_state" WHERE '
                                       f"\"site\" = '{fleet.sites['datacenter']}' AND "
                                       '"online" = false') > 0, 30, "the data centre offline")
            await tel.panel_ready.wait()
            fleet.gateway_metrics = f"127.0.0.1:{tel.panel_port}"
            await _until_in_victoria(fleet, 60)
            fleet.ready.set()
            await asyncio.to_thread(fleet.stop.wait)
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)


def _victoria_scene(fleet: Fleet) -> dict[str, str]:
    """The scene as the panels read it from VictoriaMetrics: what → an instant query that
    returns a series once it is there (the facts `_scene` waits for in InfluxDB)."""
    sites = "|".join(fleet.sites.values())
    fire = 'rule="fire.smoke_coincidence"'
    return {
        "both sites' temperatures": (f'count(count by (site) (last_over_time(temperature_value'
                                     f'{{site=~"{sites}"}}[30d]))) == 2'),
        "a drill alarm": 'last_over_time(alarm_history_seq{drill="true",kind="alarm"}[30d])',
        "the drill's end": ('sum(count_over_time(alarm_history_seq{drill="true",kind="drill"}'
                            "[30d])) > 1"),
        "the fire": f"last_over_time(alarm_history_seq{{{fire}}}[30d])",
        "the acknowledgement": (f"last_over_time(alarm_history_seq{{{fire},actor={_q(ACTOR)},"
                                f"note={_q(NOTE)}}}[30d])"),
        "the fire's reset": (f'last_over_time(alarm_history_seq{{{fire},state="normal",'
                             f"actor={_q(ACTOR)},note={_q(RESET_NOTE)}}}[30d])"),
        "the second leak, acknowledged": ('last_over_time(alarm_events_state_code{rule='
                                          '"environment.water_leak"}[30d]) == 2'),
        "the water leak alarm, active": ('last_over_time(alarm_events_active{rule=~".*water.*",'
                                         'kind="alarm"}[30d]) == 1'),
        "the silent sensor's points not good": (
            f'last_over_time({{__name__=~".+_no_value",device={_q(SILENT)},'
            'quality!="good"}[30d])'),
        "the data centre offline": (f"last_over_time(gateway_state_online{{site="
                                    f"{_q(fleet.sites['datacenter'])}}}[30d]) == 0"),
    }


def _q(value: str) -> str:
    """A MetricsQL string literal."""
    return json.dumps(value)


async def _until_in_victoria(fleet: Fleet, seconds: float) -> None:
    """Wait until VictoriaMetrics shows the whole scene to an instant query at its current
    time, as the panels query it; raise naming what it does not show.

    The scene is checked in InfluxDB; the VictoriaMetrics ingest writes the same messages on
    its own, and Debian's VictoriaMetrics (1.79) hides a sample from queries for a while after
    it is acknowledged: rows sit in a buffer until flushed (every second, or
    /internal/force_flush, which `promql` calls), and a query ending within 1 s of its clock
    is evaluated 1 s back (`-search.latencyOffset` below 1 s counts as 1 s in this version),
    so the newest second of samples is invisible. The scene's last events (the water leak's
    alarm, the data centre's offline state) come less than a second before its end, so panel
    queries run right after it missed them. Once a sample is visible it stays visible."""
    deadline = time.monotonic() + seconds
    scene = _victoria_scene(fleet)
    while True:
        missing = []
        for what, query in scene.items():
            try:
                if not await asyncio.to_thread(fleet.promql, query):
                    missing.append(what)
            except OSError as exc:
                missing.append(f"{what} ({exc})")
        if not missing:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"VictoriaMetrics did not show, within {seconds:.0f} s of "
                                 f"InfluxDB: {'; '.join(missing)}")
        await asyncio.sleep(0.25)


async def _drill(fleet: Fleet, tel: Gateway) -> None:
    """Issue 12: a silent live drill in the battery room (hydrogen at 40 %LEL in the drill's
    overlay), ended once its alarm is in InfluxDB: the alarm history's drill column."""
    from gateway.drills.live import LiveDrill
    from gateway.drills.model import Drill

    drill = Drill.model_validate({
        "drill": "dashboard_drill", "title": "Hydrogen drill", "room": "batt-3f",
        "duration": "5m", "steps": [{"at": "0s", "set": {"h2-batt-01.h2": 40}}]})
    session = LiveDrill(drill, tel.core, evacuation=False, actor=ACTOR)
    tel.core.drill = session
    await _until(lambda: _rows(fleet, 'SELECT "state" FROM "alarm_events" WHERE "drill" = '
                               "'true' AND \"kind\" = 'alarm'") > 0, 60, "a drill alarm")
    session.request_stop("the dashboard scene's drill is over")
    await _until(lambda: _rows(fleet, 'SELECT "note" FROM "alarm_events" WHERE "drill" = '
                               "'true' AND \"kind\" = 'drill'") > 1, 30, "the drill's end")


def start_fleet(fleet: Fleet, timeout: float = 300.0) -> None:
    """Databases ready, ingests started; run the scene in a thread until `ready` (or raise)."""
    fleet.influx.query(f'CREATE DATABASE "{DATABASE}"')
    fleet.ingests["influx"] = IngestService(ingest_settings(fleet, "influx", {
        "url": fleet.influx.url, "api": "v1", "database": DATABASE,
        "retention_policy": "autogen"}))
    fleet.ingests["victoria"] = IngestService(ingest_settings(fleet, "victoria", {
        "url": fleet.victoria.url, "org": "ops", "bucket": DATABASE, "token": "t",
        "store": "victoriametrics"}))
    for ingest in fleet.ingests.values():
        ingest.start()
    fleet.started_ms = int(time.time() * 1000)

    def run() -> None:
        try:
            asyncio.run(_scene(fleet))
        except BaseException as exc:  # reported by the fixture
            fleet.error = exc
            fleet.ready.set()

    fleet.thread = threading.Thread(target=run, name="fleet", daemon=True)
    fleet.thread.start()
    assert fleet.ready.wait(timeout), "the fleet scene did not finish"
    if fleet.error is not None:
        raise fleet.error


def stop_fleet(fleet: Fleet) -> None:
    fleet.stop.set()
    if fleet.thread is not None:
        fleet.thread.join(60)
    for ingest in fleet.ingests.values():
        with contextlib.suppress(Exception):
            ingest.stop()
