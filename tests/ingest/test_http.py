"""The ingest's /healthz and /metrics over real HTTP, with a real broker and database, and its
duplicate detection (a re-sent batch is acknowledged, not written again — visible in a
VictoriaMetrics without deduplication)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway.ingest.service import IngestService
from tests.fixtures.services import Broker, Victoria, wait_for
from tests.ingest.test_service import (
    CATALOG,
    GW,
    SITE,
    Gateway,
    batch,
    make_settings,
    ms,
    subscribed,
    values,
)


def get(port: int, path: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return int(r.status), r.read(), str(r.headers["Content-Type"])
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read(), str(exc.headers["Content-Type"])


def health(port: int) -> tuple[int, dict[str, object]]:
    status, body, kind = get(port, "/healthz")
    assert kind == "application/json"
    return status, json.loads(body)


def metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body, kind = get(port, "/metrics")
    assert status == 200 and kind.startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples}


def metric(port: int, name: str, **labels: str) -> float:
    return metrics(port).get((name, tuple(sorted(labels.items()))), float("nan"))


def test_healthz_and_metrics(tmp_path: Path, broker: Broker, victoria: Victoria) -> None:
    settings = make_settings(tmp_path, broker, victoria, http={"bind": "127.0.0.1", "port": 0})
    service = IngestService(settings)
    gateway = Gateway(broker)
    service.start()
    port = service.http_port
    assert port is not None and port not in (0, 9108)
    try:
        wait_for(lambda: health(port)[0] == 200, what="healthy")
        assert get(port, "/nope")[0] == 404
        wait_for(lambda: bool(service.status()["subscribed"]), what="subscribed")
        gateway.send(CATALOG)
        gateway.send(batch(1, 0))
        gateway.raw(f"roomwarden/{SITE}/{GW}/telemetry", b"not json")
        wait_for(lambda: service.status()["acked"] == 3, what="3 acknowledged")
        m = metrics(port)
        assert m[("roomwarden_ingest_messages_received_total", (("channel", "meta"),))] == 1
        assert m[("roomwarden_ingest_messages_received_total", (("channel", "telemetry"),))] == 2
        assert m[("roomwarden_ingest_messages_written_total", (("channel", "telemetry"),))] == 1
        assert m[("roomwarden_ingest_messages_dead_lettered_total",
                  (("reason", "malformed"),))] == 1
        assert m[("roomwarden_ingest_messages_dead_lettered_total",
                  (("reason", "unknown_catalog"),))] == 0
        assert m[("roomwarden_ingest_points_written_total", ())] == 3
        assert m[("roomwarden_ingest_write_seconds_count", ())] >= 1
        assert m[("roomwarden_ingest_write_rate_points_per_second", ())] > 0
        assert m[("roomwarden_ingest_connected", ())] == 1
        assert m[("roomwarden_ingest_catalogs", ())] == 1
        assert m[("roomwarden_ingest_queue_depth", ())] == 0
        assert m[("roomwarden_ingest_write_errors_total", ())] == 0

        # the database goes away with a batch to write: unhealthy, errors and retries counted
        victoria.kill()
        gateway.send(batch(2, 1))
        wait_for(lambda: service.status()["write_retries"] >= 2, what="retries")
        status, body = health(port)
        assert status == 503 and body["ok"] is False and body["last_write_ok"] is False
        assert int(body["pending"]) >= 1  # type: ignore[call-overload]
        assert metric(port, "roomwarden_ingest_write_errors_total") >= 2
        assert metric(port, "roomwarden_ingest_write_retries_total") >= 1
        assert metric(port, "roomwarden_ingest_queue_depth") >= 1
        victoria.start()
        wait_for(lambda: service.status()["acked"] == 4, timeout=30, what="written after all")
        assert health(port)[0] == 200
        assert metric(port, "roomwarden_ingest_points_written_total") == 6

        # the broker goes away: unhealthy
        broker.stop()
        wait_for(lambda: health(port)[0] == 503, what="unhealthy without a broker")
        assert metric(port, "roomwarden_ingest_connected") == 0
        broker.start()
    finally:
        gateway.client.loop_stop()
        service.stop()


def test_a_resent_batch_is_written_once_even_after_an_ingest_restart(
        tmp_path: Path, broker: Broker, victoria: Victoria) -> None:
    gateway = Gateway(broker)
    try:
        with subscribed(make_settings(tmp_path, broker, victoria)) as first:
            gateway.send(CATALOG)
            gateway.send(batch(1, 0, 21.0))
            gateway.send(batch(1, 0, 21.0))  # the gateway re-sends after a lost PUBACK
            gateway.send(batch(2, 1, 22.0))
            wait_for(lambda: first.status()["acked"] == 4, what="4 acknowledged")
            assert first.status()["duplicates"] == 1
        with subscribed(make_settings(tmp_path, broker, victoria)) as second:
            gateway.send(batch(2, 1, 22.0))  # replayed from the outbox after a gateway crash
            # a gateway whose outbox was wiped starts again at seq 1: new data, not a duplicate
            gateway.send(batch(1, 5, 25.0))
            wait_for(lambda: second.status()["acked"] == 2, what="2 acknowledged")
            assert second.status()["duplicates"] == 1
            assert values(victoria, "temperature_value") == {ms(0): 21.0, ms(1): 22.0,
                                                             ms(5): 25.0}
    finally:
        gateway.close()


def test_a_service_never_started_stops_at_once(tmp_path: Path, broker: Broker,
                                               victoria: Victoria) -> None:
    service = IngestService(make_settings(tmp_path, broker, victoria,
                                          http={"bind": "127.0.0.1", "port": 0}))
    service.stop()  # returns (a never-started HTTP server is closed, not waited for)
    assert service.status()["connected"] is False
