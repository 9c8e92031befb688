"""The ingest's two write APIs (gateway.ingest.writers), chosen in the central config.

v1: real InfluxDB 1.x (Debian's `influxdb`) with authentication on — the database and a
retention policy of our choosing, a user with a password file; string fields kept. A wrong
password or a missing database is retried, never dead-lettered, and what waited is written
once the setup is fixed. v2 with `store: victoriametrics`: the alarm strings as labels.
(The v2 API into VictoriaMetrics is also what tests/ingest/test_service.py runs.)
"""

from __future__ import annotations

import http.server
import os
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.alarms.events import EventKind
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.config.loader import ConfigErrors
from gateway.contract import wire as c
from gateway.ingest.service import IngestService
from gateway.ingest.settings import InfluxSettings, IngestSettings
from tests.fixtures.databases import INFLUXD, InfluxV1
from tests.fixtures.services import Broker, Victoria, wait_for
from tests.ingest.test_service import GW, NOW, SITE, Gateway, make_settings

DB, RP = "fleet", "week"


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[InfluxV1]:
    if not os.path.exists(INFLUXD):
        pytest.skip("influxdb (1.x) is not installed")
    db = InfluxV1(tmp_path / "influxdb", auth=True)
    db.start()
    try:
        yield db
    finally:
        db.stop()


@pytest.fixture
def gateway(broker: Broker) -> Iterator[Gateway]:
    gw = Gateway(broker)
    yield gw
    gw.close()


def v1_settings(tmp_path: Path, broker: Broker, influx: InfluxV1, password: str) -> IngestSettings:
    secret = tmp_path / "influx.pass"
    secret.write_text(password + "\n")
    return IngestSettings.model_validate({
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "protocol": "5",
                 "client_id": "ingest-v1", "shared_group": None},
        "influx": {"api": "v1", "url": influx.url, "database": DB, "retention_policy": RP,
                   "username": "writer", "password_file": str(secret),
                   "flush_interval": "200ms", "retry_max_wait": "500ms"},
        "dead_letter": str(tmp_path / "dead.jsonl"),
        "catalog_store": str(tmp_path / "catalogs.sqlite")})


def event(seq: int, actor: str = "zhang.wei", note: str | None = 'checked, "fan" ok') -> (
        c.AlarmEventMessage):
    return c.AlarmEventMessage(
        site=SITE, gateway=GW, seq=seq, ts=NOW + seq * 10**9, kind=EventKind.ALARM,
        rule="h2_high", subject="h2-1.concentration", state=AlarmState.ACTIVE_ACKNOWLEDGED,
        previous_state=AlarmState.ACTIVE_UNACKNOWLEDGED, value=12, severity=Severity.CRITICAL,
        actor=actor, note=note, room="battery-1", title="Hydrogen high")


def rows(influx: InfluxV1) -> list[list[object]]:
    result = influx.query(f'SELECT "actor", "note", "state" FROM "{DB}"."{RP}"."alarm_events"')
    return [row for s in result.get("series", []) for row in s["values"]]


def test_v1_writes_database_retention_policy_and_strings(
        tmp_path: Path, broker: Broker, influx: InfluxV1, gateway: Gateway) -> None:
    influx.query(f'CREATE DATABASE "{DB}"')
    influx.query(f'CREATE RETENTION POLICY "{RP}" ON "{DB}" DURATION 7d REPLICATION 1')
    influx.query("CREATE USER writer WITH PASSWORD 's3cret'")
    influx.query(f'GRANT WRITE ON "{DB}" TO writer')
    service = IngestService(v1_settings(tmp_path, broker, influx, "s3cret"))
    service.start()
    try:
        wait_for(lambda: bool(service.status()["subscribed"]), what="ingest subscribed")
        gateway.send(event(7))
        wait_for(lambda: service.status()["acked"] == 1, what="the event written")
        assert [r[1:] for r in rows(influx)] == [["zhang.wei", 'checked, "fan" ok',
                                                  "active_acknowledged"]]
        # the default retention policy got nothing: the write named ours
        assert "series" not in influx.query(f'SELECT * FROM "{DB}"."autogen"."alarm_events"')
        assert service.status()["dead_lettered"] == 0
    finally:
        service.stop()


def test_v1_refusals_of_the_setup_wait_and_lose_nothing(
        tmp_path: Path, broker: Broker, influx: InfluxV1, gateway: Gateway) -> None:
    """A wrong password (401), then a database that does not exist yet (404): retried, not
    dead-lettered; once the setup is right the waiting event is written."""
    influx.query("CREATE USER writer WITH PASSWORD 's3cret' WITH ALL PRIVILEGES")
    wrong = IngestService(v1_settings(tmp_path, broker, influx, "wrong"))
    wrong.start()
    try:
        wait_for(lambda: bool(wrong.status()["subscribed"]), what="ingest subscribed")
        gateway.send(event(8))
        wait_for(lambda: int(wrong.status()["write_retries"]) >= 2, what="retries (401)")
        assert wrong.status()["dead_lettered"] == 0 and wrong.status()["acked"] == 0
    finally:
        wrong.stop()
    right = IngestService(v1_settings(tmp_path, broker, influx, "s3cret"))
    right.start()  # the same client id and session: the broker redelivers the event
    try:
        wait_for(lambda: int(right.status()["write_retries"]) >= 2, what="retries (404)")
        assert right.status()["dead_lettered"] == 0 and right.status()["acked"] == 0
        influx.query(f'CREATE DATABASE "{DB}"')
        influx.query(f'CREATE RETENTION POLICY "{RP}" ON "{DB}" DURATION 7d REPLICATION 1')
        wait_for(lambda: right.status()["acked"] == 1, timeout=20, what="written at last")
        assert [r[1] for r in rows(influx)] == ["zhang.wei"]
        assert right.status()["dead_lettered"] == 0
    finally:
        right.stop()


def test_v2_into_victoriametrics_keeps_alarm_strings_as_labels(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway) -> None:
    settings = IngestSettings.model_validate({
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "protocol": "5",
                 "client_id": "ingest-vm", "shared_group": None},
        "influx": {"url": victoria.url, "org": "o", "bucket": "b", "token": "t",
                   "store": "victoriametrics", "flush_interval": "200ms"},
        "dead_letter": str(tmp_path / "dead.jsonl"),
        "catalog_store": str(tmp_path / "catalogs.sqlite")})
    service = IngestService(settings)
    service.start()
    try:
        wait_for(lambda: bool(service.status()["subscribed"]), what="ingest subscribed")
        gateway.send(event(9, note="line one\nline two"))
        gateway.send(event(9, note="line one\nline two"))  # a redelivery: written once
        wait_for(lambda: service.status()["acked"] == 2, what="both acknowledged")
        (history,) = victoria.export('{__name__="alarm_history_seq"}')
        labels = history["metric"]
        assert labels["actor"] == "zhang.wei" and labels["note"] == "line one_line two"
        assert labels["state"] == "active_acknowledged" and labels["severity"] == "critical"
        assert labels["title"] == "Hydrogen high" and history["values"] == [9]
        # the numbers stay where the dashboards' state panels read them
        assert victoria.export('{__name__="alarm_events_active"}')[0]["values"] == [1]
    finally:
        service.stop()


@pytest.mark.parametrize(("influx", "error"), [
    ({"api": "v1"}, "api v1 needs database"),
    ({"api": "v1", "database": "d", "org": "o"}, "api v1 does not use org"),
    ({"api": "v1", "database": "d", "password": "p"}, "a password needs a username"),
    ({"api": "v2", "org": "o"}, "api v2 needs org and bucket"),
    ({"api": "v2", "org": "o", "bucket": "b", "database": "d"}, "api v2 does not use database"),
    ({"api": "v1", "database": "d", "username": "u", "password": "p", "password_file": "f"},
     "give password or password_file, not both"),
    ({"api": "v3", "database": "d"}, "Input should be 'v1' or 'v2'"),
])
def test_settings_say_what_each_api_needs(influx: dict[str, str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        InfluxSettings.model_validate({"url": "http://127.0.0.1:1", **influx})


def test_unreadable_password_file_is_a_config_error(tmp_path: Path) -> None:
    settings = IngestSettings.model_validate({
        "mqtt": {"host": "h", "client_id": "i"},
        "influx": {"api": "v1", "url": "http://127.0.0.1:1", "database": "d", "username": "u",
                   "password_file": str(tmp_path / "missing")}})
    with pytest.raises(ConfigErrors, match=r"influx\.password_file"):
        settings.influx_password()


class AuthGate:
    """InfluxDB 2's answers in front of VictoriaMetrics (which checks no token): while
    `refusing` is a status, every write gets it with InfluxDB's JSON body; else it is passed on."""

    BODIES = {401: b'{"code":"unauthorized","message":"unauthorized access"}',
              404: b'{"code":"not found","message":"bucket \\"b\\" not found"}'}

    def __init__(self, upstream: str) -> None:
        self.refusing: int | None = 401
        self.refused = 0
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = gate.refusing
                if status is not None:
                    gate.refused += 1
                    data = gate.BODIES[status]
                else:
                    request = urllib.request.Request(upstream + self.path, data=body,
                                                     method="POST")
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        status, data = answer.status, answer.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_v2_refusals_of_the_setup_wait_and_lose_nothing(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway) -> None:
    """The v2 API as InfluxDB 2 answers a wrong token (401) and a bucket not there yet (404):
    retried, not dead-lettered nor acknowledged (the gateway would drop what it holds); once
    the setup is right the waiting event is written. Fails before: dead-lettered at once."""
    gate = AuthGate(victoria.url)
    settings = make_settings(tmp_path, broker, victoria, client_id="ingest-v2-setup")
    settings = settings.model_copy(update={"influx": settings.influx.model_copy(
        update={"url": gate.url})})
    service = IngestService(settings)
    service.start()
    try:
        wait_for(lambda: bool(service.status()["subscribed"]), what="ingest subscribed")
        gateway.send(event(9))
        for status in (401, 404):
            gate.refusing = status
            before = int(service.status()["write_retries"])

            def retried(before: int = before) -> bool:
                return int(service.status()["write_retries"]) >= before + 2

            wait_for(retried, what=f"retries ({status})")
            assert service.status()["dead_lettered"] == 0 and service.status()["acked"] == 0
        gate.refusing = None
        wait_for(lambda: service.status()["acked"] == 1, timeout=20, what="written at last")
        assert service.status()["dead_lettered"] == 0
        victoria.flush()
        assert victoria.export('{__name__=~"alarm_events.*"}')
    finally:
        service.stop()
        gate.close()
