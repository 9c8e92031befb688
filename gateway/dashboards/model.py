"""One definition of the Grafana dashboards, rendered for two data sources.

A panel carries its query twice, side by side: InfluxQL (Grafana's InfluxDB data source in
InfluxQL mode — InfluxDB 1.x, 2.x through a DBRP mapping, 3.x) and MetricsQL (Grafana's
Prometheus data source pointed at VictoriaMetrics). Layout, titles, units and variables are
written once; `render(dashboard, flavour)` makes the Grafana JSON of either set. The database
(or bucket) is the data source's setting and the retention policy the variable `$rp`: no
query names either. Panels may also query the fleet's Prometheus (`PROM`: the ingest's and the
gateways' own /metrics), the same in both sets.

What a query must return is part of the definition (`Expect`): tests/dashboards runs every
query against the real databases and checks it.
"""

from __future__ import annotations

from typing import Any, Literal

from gateway.records import dataclass, field

Flavour = Literal["influxql", "metricsql"]
FLAVOURS: tuple[Flavour, ...] = ("influxql", "metricsql")
DATASOURCE = {"influxql": ("influxdb", "${influx}"), "metricsql": ("prometheus", "${victoria}")}
"""flavour → (Grafana data source type, the datasource variable naming it)."""
PROM = "prom"
"""`Query.source` of a query against the fleet's Prometheus (datasource variable `prom`)."""


@dataclass(frozen=True)
class Expect:
    """What a query returns with the tests' site: every series (or row) carries `tags`;
    `unit` is the value of its `unit` tag (the panel's unit says the same in Grafana's terms);
    `columns` must be among a table's columns or labels; `min_series` series at least."""

    tags: tuple[str, ...] = ()
    unit: str | None = None
    columns: tuple[str, ...] = ()
    min_series: int = 1


@dataclass(frozen=True)
class Query:
    influxql: str
    metricsql: str
    table: bool = False
    """Table rows (InfluxQL `resultFormat: table`; Prometheus: an instant query, `format:
    table`); else a time series over the dashboard's range."""
    expect: Expect = Expect()
    source: str | None = None
    """None: the dashboard's database; PROM: the fleet's Prometheus (`metricsql` is then
    PromQL, the same in both sets, and `influxql` is unused)."""


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str
    """Grafana panel type: timeseries, stat, table, state-timeline."""
    queries: tuple[Query, ...]
    unit: str | None = None
    width: int = 12
    height: int = 8
    repeat: str | None = None
    description: str = ""
    value_names: tuple[tuple[int, str], ...] = ()
    """MetricsQL set: names for the numbers of a table's `Value` column (an alarm's
    `state_code` → its state), with the column titled `value_title`."""
    value_title: str = "Value"


@dataclass(frozen=True)
class Row:
    title: str


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    influxql: str | None = None
    """InfluxQL query giving the options (None: `values` or absent in this set)."""
    metricsql: str | None = None
    """Grafana Prometheus variable query, e.g. `label_values(m{…}, label)`."""
    values: tuple[str, ...] = ()
    """A custom variable's options."""
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None
    regex: str = ""
    """Grafana's option filter (`/…/`; a capture group picks the value)."""
    metricsql_regex: str | None = None
    """The MetricsQL set's filter, if it differs."""

    def option_regex(self, flavour: Flavour) -> str:
        if flavour == "metricsql" and self.metricsql_regex is not None:
            return self.metricsql_regex
        return self.regex
    default: str | None = None
    hide: bool = False


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...]
    items: tuple[Panel | Row, ...]
    time_from: str = "now-6h"
    tags: tuple[str, ...] = field(default=("roomwarden",))

    def panels(self) -> list[Panel]:
        return [p for p in self.items if isinstance(p, Panel)]


# ---------------------------------------------------------------------------------- render


def _datasource(flavour: Flavour, source: str | None) -> dict[str, str]:
    if source == PROM:
        return {"type": "prometheus", "uid": "${prom}"}
    kind, uid = DATASOURCE[flavour]
    return {"type": kind, "uid": uid}


def _target(query: Query, flavour: Flavour, ref: str) -> dict[str, Any]:
    ds = _datasource(flavour, query.source)
    if ds["type"] == "influxdb":
        return {"refId": ref, "datasource": ds, "rawQuery": True, "query": query.influxql,
                "resultFormat": "table" if query.table else "time_series"}
    return {"refId": ref, "datasource": ds, "expr": query.metricsql, "instant": query.table,
            "range": not query.table, "format": "table" if query.table else "time_series"}


def _variable(var: Variable, flavour: Flavour) -> dict[str, Any] | None:
    current = ({"text": "All", "value": "$__all"} if var.include_all and var.default is None
               else {"text": var.default or "", "value": var.default or ""})
    common: dict[str, Any] = {"name": var.name, "label": var.label, "multi": var.multi,
                              "includeAll": var.include_all, "current": current,
                              "hide": 2 if var.hide else 0}
    if var.all_value is not None:
        common["allValue"] = var.all_value
    if var.values:
        return {**common, "type": "custom", "query": ",".join(var.values),
                "options": [{"text": v, "value": v, "selected": v == var.default}
                            for v in var.values]}
    query = var.influxql if flavour == "influxql" else var.metricsql
    if query is None:
        return None
    kind, uid = DATASOURCE[flavour]
    return {**common, "type": "query", "datasource": {"type": kind, "uid": uid},
            "query": query, "definition": query, "regex": var.option_regex(flavour), "refresh": 2,
            "sort": 1}


def _datasource_variables(dashboard: Dashboard, flavour: Flavour) -> list[dict[str, Any]]:
    kind, uid = DATASOURCE[flavour]
    out = [{"name": uid[2:-1], "label": "Database", "type": "datasource", "query": kind,
            "current": {}, "hide": 0, "regex": ""}]
    if any(q.source == PROM for p in dashboard.panels() for q in p.queries):
        out.append({"name": PROM, "label": "Prometheus", "type": "datasource",
                    "query": "prometheus", "current": {}, "hide": 0, "regex": ""})
    return out


def render(dashboard: Dashboard, flavour: Flavour) -> dict[str, Any]:
    """The Grafana dashboard JSON (schema 39) of `dashboard` for `flavour`."""
    panels: list[dict[str, Any]] = []
    x = y = 0
    row_height = 0
    for number, item in enumerate(dashboard.items, start=1):
        if isinstance(item, Row):
            y += row_height
            x = row_height = 0
            panels.append({"id": number, "type": "row", "title": item.title, "collapsed": False,
                           "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})
            y += 1
            continue
        if x + item.width > 24:
            y += row_height
            x = row_height = 0
        source = item.queries[0].source
        panel: dict[str, Any] = {
            "id": number, "type": item.kind, "title": item.title,
            "description": item.description, "datasource": _datasource(flavour, source),
            "gridPos": {"x": x, "y": y, "w": item.width, "h": item.height},
            "fieldConfig": {"defaults": {"unit": item.unit} if item.unit else {},
                            "overrides": []},
            "options": {}, "targets": [_target(q, flavour, chr(ord("A") + i))
                                       for i, q in enumerate(item.queries)]}
        if item.value_names and flavour == "metricsql":
            panel["fieldConfig"]["overrides"].append({
                "matcher": {"id": "byName", "options": "Value"},
                "properties": [
                    {"id": "displayName", "value": item.value_title},
                    {"id": "mappings", "value": [{"type": "value", "options": {
                        str(number): {"text": name, "index": index}
                        for index, (number, name) in enumerate(item.value_names)}}]}]})
        if item.repeat is not None:
            panel.update({"repeat": item.repeat, "repeatDirection": "h", "maxPerRow": 2})
        panels.append(panel)
        x += item.width
        row_height = max(row_height, item.height)
    variables = _datasource_variables(dashboard, flavour) + [
        v for v in (_variable(var, flavour) for var in dashboard.variables) if v is not None]
    suffix = "" if flavour == "influxql" else " (VictoriaMetrics)"
    return {"uid": dashboard.uid + ("" if flavour == "influxql" else "-vm"),
            "title": dashboard.title + suffix, "description": dashboard.description,
            "tags": [*dashboard.tags, flavour], "timezone": "", "schemaVersion": 39,
            "version": 1, "editable": True, "refresh": "30s",
            "time": {"from": dashboard.time_from, "to": "now"},
            "templating": {"list": variables}, "annotations": {"list": []}, "panels": panels}
