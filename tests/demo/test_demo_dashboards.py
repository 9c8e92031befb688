"""What `make demo` says about central monitoring matches what ships and works (issue 13 part 4):
its database is VictoriaMetrics, so it names the VictoriaMetrics dashboard set (all of it) and a
Prometheus-type data source; its ingest settings keep alarm strings as labels; and the
alarm-history command it prints, run as printed against the demo's own ingest and a real
VictoriaMetrics, shows who acknowledged an alarm and their note."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

from gateway.alarms.events import EventKind
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.config.loader import load_gateway_config
from gateway.contract import wire as c
from gateway.dashboards.guide import DASHBOARD_DIR, dashboard_files, grafana_guide
from gateway.demo import Backend, guide, ingest_settings
from gateway.ingest.service import IngestService
from gateway.localservices import LocalVictoria
from tests.fixtures.services import Broker, Victoria, broker, victoria, wait_for
from tests.ingest.test_service import Gateway

__all__ = ["broker", "victoria"]

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"


def test_the_guide_names_the_dashboards_of_its_database(tmp_path: Path) -> None:
    loaded = load_gateway_config(SITE)
    database = LocalVictoria(tmp_path / "vm")
    database.start()
    try:
        text = guide(loaded, panel_port=1, control_port=2, backend=Backend(database=database),
                     script=[], silent=None)
    finally:
        database.stop()
    assert "Prometheus data source" not in text  # the old hint that matched no dashboard
    assert f"a data source of type Prometheus, URL {database.url}" in text
    shipped = sorted((REPO / DASHBOARD_DIR).glob("*.json"))
    assert sorted(REPO / p for p in dashboard_files()) == shipped
    for path in dashboard_files():
        assert f"    {path}\n" in text
        dashboard = json.loads((REPO / path).read_text("utf-8"))
        kinds = {t["datasource"]["type"] for p in dashboard["panels"]
                 for t in p.get("targets", [])}
        assert kinds == {"prometheus"}, path
    assert f"site=~\"{loaded.config.gateway.site}\"" in text


def test_the_printed_alarm_history_command_shows_actor_and_note(
        tmp_path: Path, broker: Broker, victoria: Victoria) -> None:
    site = load_gateway_config(SITE).config.gateway.site
    settings = ingest_settings(broker.port, victoria.url, tmp_path / "ingest")
    assert settings.influx.store == "victoriametrics"
    service = IngestService(settings)
    service.start()
    gateway = Gateway(broker)
    try:
        wait_for(lambda: bool(service.status()["subscribed"]), what="the ingest's SUBACK")
        now = time.time_ns()
        for seq, state, actor, note in (
                (1, AlarmState.ACTIVE_UNACKNOWLEDGED, "system", None),
                (2, AlarmState.ACTIVE_ACKNOWLEDGED, "demo", "siren silenced, smoke checked")):
            gateway.send(c.AlarmEventMessage(
                site=site, gateway="fsu-1", seq=seq, ts=now - 60_000_000_000 + seq, note=note,
                kind=EventKind.ALARM, rule="fire.smoke_coincidence", subject="tx-3f",
                state=state, previous_state=AlarmState.NORMAL, severity=Severity.CRITICAL,
                actor=actor, room="tx-3f", title="Fire confirmed"))
        wait_for(lambda: service.status()["acked"] == 2, what="both events written")
        victoria.flush()
        line = next(x for x in grafana_guide(victoria.url, site) if "alarm_history_seq" in x)
        reply = subprocess.run(shlex.split(line), capture_output=True, text=True, timeout=20,
                               check=True)
        result = json.loads(reply.stdout)["data"]["result"]
        events = {r["metric"]["state"]: r["metric"] for r in result}
        assert events["active_acknowledged"]["actor"] == "demo"
        assert events["active_acknowledged"]["note"] == "siren silenced, smoke checked"
        assert events["active_unacknowledged"]["actor"] == "system"
        assert {e["severity"] for e in events.values()} == {"critical"}
    finally:
        gateway.close()
        service.stop()
