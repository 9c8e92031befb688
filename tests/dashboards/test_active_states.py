"""The Active-alarms table says each alarm's state on VictoriaMetrics too: the ingest writes
`state_code` beside the `state` string (VictoriaMetrics keeps no string fields), the MetricsQL
table carries the code and the dashboard names it. On the fleet's real databases the two sets
agree alarm by alarm: of the data centre's two leaks left active, the one bob acknowledged is
`active acknowledged` in both, the other `active unacknowledged`."""

from __future__ import annotations

from gateway.dashboards.definition import DASHBOARDS, STATE_NAMES
from gateway.dashboards.model import Dashboard, Panel, Query, render
from gateway.ingest.schema import STATE_CODES
from tests.dashboards.fleet import Fleet
from tests.dashboards.grafana import expand
from tests.dashboards.test_queries import resolve, run, time_range

KEY = ("site", "gateway", "rule", "subject")


def _table() -> tuple[Dashboard, Panel, Query]:
    for dashboard in DASHBOARDS:
        for panel in dashboard.panels():
            if panel.title == "Active alarms":
                return dashboard, panel, panel.queries[0]
    raise AssertionError("no Active alarms panel")


def test_the_vm_active_alarms_table_agrees_with_influxql_on_each_state(fleet: Fleet) -> None:
    dashboard, _, query = _table()
    tr = time_range(fleet)
    by_influx: dict[tuple[str, ...], str] = {}
    chosen = resolve(fleet, dashboard, "influxql", tr)
    text = expand(query.influxql, chosen, tr, "influxql")
    for series in run(fleet, "influxql", query, text, tr):
        columns = series["columns"]
        for row in series["values"]:
            record = {**series["labels"], **dict(zip(columns, row, strict=True))}
            by_influx[tuple(record[k] for k in KEY)] = record["state"]
    chosen = resolve(fleet, dashboard, "metricsql", tr)
    names = {str(code): name for code, name in STATE_NAMES}
    by_vm: dict[tuple[str, ...], str] = {}
    text = expand(query.metricsql, chosen, tr, "metricsql")
    for series in run(fleet, "metricsql", query, text, tr):
        code = str(int(float(series["values"][0][1])))
        by_vm[tuple(series["labels"][k] for k in KEY)] = names[code]
    assert by_influx, "the fleet's scene leaves active alarms"
    assert {k: v.replace("_", " ") for k, v in by_influx.items()} == by_vm
    leaks = sorted(state for key, state in by_vm.items() if key[2] == "environment.water_leak")
    assert leaks == ["active acknowledged", "active unacknowledged"]  # bob's and the other


def test_the_codes_the_dashboard_names_are_the_ingests() -> None:
    codes = {state.value.replace("_", " "): code for state, code in STATE_CODES.items()}
    for code, name in STATE_NAMES:
        assert code == -1 or codes[name] == code
    rendered = render(_table()[0], "metricsql")
    table = next(p for p in rendered["panels"] if p.get("title") == "Active alarms")
    override = table["fieldConfig"]["overrides"][0]
    mapping = next(p["value"] for p in override["properties"] if p["id"] == "mappings")
    assert mapping[0]["options"]["2"]["text"] == "active acknowledged"
    influx = render(_table()[0], "influxql")
    table = next(p for p in influx["panels"] if p.get("title") == "Active alarms")
    assert table["fieldConfig"]["overrides"] == []  # InfluxQL's table has the state string
