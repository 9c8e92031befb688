"""What central monitoring must not be misled about, on both stores (the central audit): a
gateway that stopped reporting is not counted online and is listed as not reporting; a live
drill's alarm is not an active alarm; a point's latest reading is its newest sample whatever
its quality, and a point that recovered is no longer listed as not good.

Lines written into the fleet's databases as the ingest writes them (docs/influx-schema.md),
each at the time that makes the case: a gateway last heard 10 minutes ago, a drill alarm
active a minute ago, a sensor that failed 20 minutes ago and has read well since."""

from __future__ import annotations

import time
import urllib.request
from typing import Any

import pytest

from gateway.dashboards.definition import FLEET_HEALTH, ROOM_DETAIL, SITE_OVERVIEW
from gateway.dashboards.model import Dashboard, Flavour
from tests.dashboards.fleet import DATABASE, SILENT, Fleet
from tests.dashboards.grafana import expand
from tests.dashboards.test_queries import resolve, run, time_range
from tests.fixtures.services import wait_for

FLAVOURS = ("influxql", "metricsql")
QUIET_GW = "gw-quiet"
RECOVERED = "th-recovered"


@pytest.fixture(scope="module")
def scene(fleet: Fleet) -> Fleet:
    site, room = fleet.sites["telecom"], fleet.rooms["fire"]
    now = time.time_ns()
    minute = 60 * 10**9
    lines = [
        f"gateway_state,site={site},gateway={QUIET_GW} online=true {now - 10 * minute}",
        (f"alarm_events,site={site},gateway=gw-drill,rule=explosion.h2_alarm,"
         f"subject=drill:h2-1.h2,kind=alarm,severity=critical,room={room},drill=true "
         f'active=true,seq=9i,state="active_unacknowledged" {now - minute}'),
        (f"temperature,site={site},gateway=gw-drill,room={room},device={RECOVERED},"
         f"point={RECOVERED}.temperature,quality=comm_error no_value=true {now - 20 * minute}"),
        *(f"temperature,site={site},gateway=gw-drill,room={room},device={RECOVERED},"
          f"point={RECOVERED}.temperature,quality=good,unit=°C value=22.5 {now - m * minute}"
          for m in (15, 1)),
    ]
    body = "\n".join(lines).encode()
    for url in (f"{fleet.influx.url}/write?db={DATABASE}&precision=ns",
                f"{fleet.victoria.url}/write?db={DATABASE}&precision=ns"):
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30) as r:
            assert r.status == 204, url
    data_centre = fleet.gateways["datacenter"]

    def stopped_in_victoria() -> bool:
        fleet.victoria.flush()
        return any(r["value"][1] == "0" for r in fleet.promql(
            f'last_over_time(gateway_state_online{{gateway="{data_centre}"}}[30d])'))

    wait_for(stopped_in_victoria, timeout=30, what="the data centre's offline in VictoriaMetrics")
    return fleet


def rows(fleet: Fleet, dashboard: Dashboard, title: str, flavour: Flavour) -> list[dict[str, Any]]:
    """The panel's rows: labels, then columns (InfluxQL), `value` (VictoriaMetrics)."""
    [panel] = [p for p in dashboard.panels() if p.title == title]
    [query] = panel.queries
    tr = time_range(fleet)
    text = expand(query.influxql if flavour == "influxql" else query.metricsql,
                  resolve(fleet, dashboard, flavour, tr), tr, flavour)
    out: list[dict[str, Any]] = []
    for s in run(fleet, flavour, query, text, tr):
        for values in s["values"]:
            row = dict(s["labels"])
            row.update(zip(s["columns"], values, strict=True) if s["columns"] else
                       {"value": float(values[1])})
            out.append(row)
    return out


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_gateway_that_stopped_reporting_is_not_online(scene: Fleet, flavour: Flavour) -> None:
    [count] = rows(scene, FLEET_HEALTH, "Gateways online", flavour)
    assert (count["value"] if flavour == "metricsql" else count["count"]) == 1  # telecom only
    for dashboard in (FLEET_HEALTH, SITE_OVERVIEW):
        silent = {r["gateway"] for r in rows(scene, dashboard, "Gateways silent", flavour)}
        stopped = {r["gateway"] for r in rows(scene, dashboard, "Gateways stopped", flavour)}
        assert QUIET_GW in silent, silent  # last heard 10 minutes ago, saying online
        data_centre = scene.gateways["datacenter"]  # stopped cleanly (silent after 5 min)
        assert silent | stopped == {QUIET_GW, data_centre} and not silent & stopped, (
            silent, stopped)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_drill_alarm_is_no_active_alarm(scene: Fleet, flavour: Flavour) -> None:
    active = rows(scene, SITE_OVERVIEW, "Active alarms", flavour)
    assert active and not [r for r in active if r["subject"].startswith("drill:")], active
    by_severity = rows(scene, SITE_OVERVIEW, "Active alarms by severity", flavour)
    critical = [r for r in by_severity if r["severity"] == "critical"]
    assert len(critical) <= 1
    count = critical[0]["value" if flavour == "metricsql" else "count"] if critical else 0
    assert count == len([r for r in active if r["severity"] == "critical"])


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_latest_readings_are_the_newest_whatever_their_quality(scene: Fleet,
                                                              flavour: Flavour) -> None:
    not_good = {r["point"] for r in rows(scene, ROOM_DETAIL, "Points not good", flavour)}
    assert f"{RECOVERED}.temperature" not in not_good  # failed 20 minutes ago, good since
    assert any(p.startswith(f"{SILENT}.") for p in not_good), not_good  # still failing
    if flavour == "influxql":
        return  # one row per point and quality there, each with its time (the panel says so)
    latest = rows(scene, ROOM_DETAIL, "Latest reading of every point", flavour)
    by_point: dict[str, list[str]] = {}
    for r in latest:
        by_point.setdefault(r["point"], []).append(r["quality"])
    assert all(len(q) == 1 for q in by_point.values()), by_point
    assert by_point[f"{RECOVERED}.temperature"] == ["good"]
    silent = {p: q for p, q in by_point.items()  # (its `online` point is the gateway's own)
              if p.startswith(f"{SILENT}.") and p != f"{SILENT}.online"}
    assert silent and all(q == ["comm_error"] for q in silent.values()), silent
