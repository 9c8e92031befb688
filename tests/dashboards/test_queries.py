"""Every dashboard query and every variable query, executed against real databases.

A small fleet (tests/dashboards/fleet.py: two simulated sites, the real gateways, Mosquitto,
the real ingest) feeds InfluxDB 1.x through the v1 API and VictoriaMetrics through the v2 API.
Each dashboard's variables are then resolved as Grafana resolves them (their own queries run
first, regex filters applied, "All" or a chosen value), each panel query is filled
(tests/dashboards/grafana.py) and run, and what comes back must be what the panel expects:
series with the expected tags, the expected `unit` tag for the panel's unit, and for the
alarm history the acknowledging user and note.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

from gateway.dashboards.definition import ALARM_HISTORY, DASHBOARDS, UNITS
from gateway.dashboards.model import PROM, Dashboard, Flavour, Panel, Query
from tests.dashboards.fleet import ACTOR, NOTE, RESET_NOTE, Fleet
from tests.dashboards.grafana import ALL, Selection, TimeRange, expand, filter_options


def time_range(fleet: Fleet) -> TimeRange:
    return TimeRange(start_ms=fleet.started_ms - 60_000, end_ms=int(time.time() * 1000) + 1000,
                     interval_ms=10_000)


# ---------------------------------------------------------------------------------- running

def _vm_get(fleet: Fleet, path: str, params: dict[str, str]) -> Any:
    url = fleet.victoria.url + path + "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            data = json.loads(r.read().decode())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{exc.code} {exc.read().decode()[:500]} for {params}") from None
    assert data["status"] == "success", data
    return data["data"]


_LABEL_VALUES = re.compile(r"^label_values\((.+),\s*(\w+)\)$")


def variable_options(fleet: Fleet, flavour: Flavour, query: str, tr: TimeRange) -> list[str]:
    """A variable query's options as Grafana gets them."""
    if flavour == "influxql":
        out: list[str] = []
        for series in fleet.influxql(query):
            columns = series["columns"]
            index = columns.index("value") if columns[:1] == ["key"] else 0
            out += [str(row[index]) for row in series.get("values", [])]
        return out
    match = _LABEL_VALUES.match(query)
    assert match, f"unsupported variable query {query}"
    values = _vm_get(fleet, f"/api/v1/label/{match.group(2)}/values",
                     {"match[]": match.group(1), "start": str(tr.start_ms // 1000),
                      "end": str(tr.end_ms // 1000)})
    return [str(v) for v in values]


def preferred(fleet: Fleet) -> dict[str, str]:
    return {"site": fleet.sites["telecom"], "room": fleet.rooms["fire"], "rp": "autogen"}


def resolve(fleet: Fleet, dashboard: Dashboard, flavour: Flavour,
            tr: TimeRange) -> dict[str, Selection]:
    chosen: dict[str, Selection] = {}
    for var in dashboard.variables:
        if var.values:
            options = list(var.values)
        else:
            query = var.influxql if flavour == "influxql" else var.metricsql
            if query is None:
                continue
            found = variable_options(fleet, flavour, expand(query, chosen, tr, flavour), tr)
            options = filter_options(found, var.option_regex(flavour))
        assert options, f"variable {var.name} of {dashboard.uid} ({flavour}) has no options"
        want = preferred(fleet).get(var.name)
        if var.include_all:
            values: tuple[str, ...] = (ALL,)
        else:
            if want is not None:
                assert want in options, f"{var.name}: {want} not among {options}"
            values = (want if want is not None else options[0],)
        chosen[var.name] = Selection(values, var.multi, var.include_all, var.all_value,
                                     tuple(options))
    return chosen


def run(fleet: Fleet, flavour: Flavour, query: Query, text: str,
        tr: TimeRange) -> list[dict[str, Any]]:
    """Series as `{"labels": {...}, "columns": [...], "values": [...]}`."""
    if flavour == "influxql":
        return [{"labels": s.get("tags", {}), "columns": s["columns"], "values": s["values"]}
                for s in fleet.influxql(text)]
    if query.table:
        result = _vm_get(fleet, "/api/v1/query", {"query": text, "time": str(tr.end_ms / 1000)})
        return [{"labels": r["metric"], "columns": [], "values": [r["value"]]}
                for r in result["result"]]
    result = _vm_get(fleet, "/api/v1/query_range", {
        "query": text, "start": str(tr.start_ms / 1000), "end": str(tr.end_ms / 1000),
        "step": str(tr.interval_ms / 1000)})
    return [{"labels": r["metric"], "columns": [], "values": r["values"]}
            for r in result["result"]]


def check(panel: Panel, query: Query, series: list[dict[str, Any]], where: str) -> None:
    expect = query.expect
    assert len(series) >= expect.min_series, f"{where}: {len(series)} series"
    names: set[str] = set()  # a table's columns: a row may leave one empty (no note)
    for s in series:
        names |= set(s["labels"]) | set(s["columns"])
        assert set(expect.tags) <= set(s["labels"]), f"{where}: tags {s['labels']}"
        assert any(v is not None for row in s["values"] for v in row[1:]), f"{where}: no values"
        if expect.unit is not None:
            assert s["labels"]["unit"] == expect.unit, f"{where}: unit {s['labels']}"
    assert set(expect.columns) <= names, f"{where}: {sorted(names)}"
    if expect.unit is not None:
        assert panel.unit == UNITS[expect.unit]


CASES = [pytest.param(d, p, q, f, id=f"{f}-{d.uid.removeprefix('roomwarden-')}-{p.title}-{i}")
         for d in DASHBOARDS for p in d.panels() for i, q in enumerate(p.queries)
         if q.source != PROM for f in ("influxql", "metricsql")]


@pytest.mark.parametrize(("dashboard", "panel", "query", "flavour"), CASES)
def test_panel_query(fleet: Fleet, dashboard: Dashboard, panel: Panel, query: Query,
                     flavour: Flavour) -> None:
    tr = time_range(fleet)
    variables = resolve(fleet, dashboard, flavour, tr)
    source = query.influxql if flavour == "influxql" else query.metricsql
    if panel.repeat is None:
        text = expand(source, variables, tr,
                  flavour)
        check(panel, query, run(fleet, flavour, query, text, tr), f"{panel.title}: {text}")
        return
    repeated = variables[panel.repeat]
    assert len(repeated.options) >= 5, repeated.options
    for option in repeated.options:  # one panel per value, as Grafana repeats it
        one = {**variables, panel.repeat: Selection((option,), repeated.multi,
                                                    repeated.include_all, None, (option,))}
        text = expand(source, one, tr, flavour)
        check(panel, query, run(fleet, flavour, query, text, tr), f"{option}: {text}")


@pytest.mark.parametrize("flavour", ["influxql", "metricsql"])
def test_alarm_history_shows_who_acknowledged_with_the_note(fleet: Fleet,
                                                            flavour: Flavour) -> None:
    """The alarm-history table on either store: alice's acknowledgement of the fire with her
    note, its state and severity, and the fire's return to normal."""
    tr = time_range(fleet)
    variables = resolve(fleet, ALARM_HISTORY, flavour, tr)
    panel = ALARM_HISTORY.panels()[0]
    (query,) = panel.queries
    text = expand(query.influxql if flavour == "influxql" else query.metricsql, variables, tr,
                  flavour)
    rows: list[dict[str, Any]] = []
    for s in run(fleet, flavour, query, text, tr):
        for values in s["values"]:
            row = dict(s["labels"])
            row.update(zip(s["columns"], values, strict=True) if s["columns"] else {})
            rows.append(row)
    fire = [r for r in rows if r["rule"] == "fire.smoke_coincidence"]
    acked = [r for r in fire if r.get("actor") == ACTOR and r.get("note") == NOTE]
    assert acked, fire
    assert acked[0]["state"] == "active_acknowledged" and acked[0]["severity"] == "critical"
    reset = [r for r in fire if r["state"] == "normal"]
    assert reset and reset[0].get("actor") == ACTOR and reset[0].get("note") == RESET_NOTE


def test_the_rooms_of_the_scene(fleet: Fleet) -> None:
    """Room detail is checked on one room: the fire and the silent sensor are both in it."""
    assert fleet.rooms["fire"] == fleet.rooms["silent"]
