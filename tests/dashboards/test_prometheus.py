"""Prometheus (Debian's package) with the shipped scrape config (central/prometheus/prometheus.yml)
scrapes the running gateway and both ingest instances of the test fleet, and every query of
the fleet-health dashboard's Prometheus panels returns their series."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.dashboards.definition import FLEET_HEALTH
from gateway.dashboards.model import PROM
from tests.dashboards.fleet import Fleet
from tests.dashboards.grafana import TimeRange, expand
from tests.fixtures.databases import PROMETHEUS, Prometheus
from tests.fixtures.services import wait_for

SHIPPED = Path(__file__).resolve().parents[2] / "central" / "prometheus" / "prometheus.yml"


def _config(fleet: Fleet, sd_file: Path) -> dict[str, Any]:
    """The shipped file with the test's loopback targets (the gateway through file_sd, as a
    fleet would list its gateways) and a 1 s scrape interval."""
    config: dict[str, Any] = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    config["global"].update(scrape_interval="1s", scrape_timeout="1s")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"roomwarden-ingest", "roomwarden-gateway"}
    ingests = [f"127.0.0.1:{i.http_port}" for i in fleet.ingests.values()]
    jobs["roomwarden-ingest"]["static_configs"] = [{"targets": ingests}]
    sd_file.write_text(yaml.safe_dump([{"targets": [fleet.gateway_metrics],
                                        "labels": {"site": fleet.sites["telecom"]}}]))
    jobs["roomwarden-gateway"]["static_configs"] = [{"targets": []}]
    jobs["roomwarden-gateway"]["file_sd_configs"][0]["files"] = [str(sd_file)]
    return config


def test_prometheus_scrapes_the_gateway_and_the_ingest(fleet: Fleet, tmp_path: Path) -> None:
    if not os.path.exists(PROMETHEUS):
        pytest.skip("prometheus is not installed")
    prom = Prometheus(tmp_path / "prometheus", _config(fleet, tmp_path / "gateways.yml"))
    prom.start()
    try:
        wait_for(lambda: len([t for t in prom.targets() if t["health"] == "up"]) == 3,
                 timeout=30, what="three targets up")
        panels = [p for p in FLEET_HEALTH.panels() if p.queries[0].source == PROM]
        assert len(panels) >= 6
        for panel in panels:
            (query,) = panel.queries

            def series(text: str = query.metricsql) -> list[dict[str, Any]]:
                now = time.time()
                tr = TimeRange(int((now - 30) * 1000), int(now * 1000), 2000, 1000)
                expanded = expand(text, {}, tr, "metricsql")
                return prom.query_range(expanded, now - 30, now, 2)

            wait_for(lambda: bool(series()), timeout=30, what=f"{panel.title}")
            for s in series():
                assert set(query.expect.tags) <= set(s["metric"]), (panel.title, s["metric"])
        jobs = {t["labels"]["job"] for t in prom.targets()}
        assert jobs == {"roomwarden-ingest", "roomwarden-gateway"}
        gateway = prom.query('roomwarden_uplink_connected{job="roomwarden-gateway"}')
        assert gateway and gateway[0]["value"][1] == "1"
        assert gateway[0]["metric"]["site"] == fleet.sites["telecom"]
    finally:
        prom.stop()
