"""Grafana dashboards query only what the ingest writes (docs/influx-schema.md).

The measurement, field and tag names are derived from the code: quantities from the shipped
hardware profiles and gateway configs, fields and tags from lines that gateway.ingest.schema
builds for sample messages. A rename in the schema or a profile breaks a dashboard here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.alarms.events import EventKind
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.field.sample import Quality, Sample
from gateway.ingest.schema import (
    ALARM_MEASUREMENT,
    STATE_MEASUREMENT,
    Line,
    alarm_line,
    state_line,
    telemetry_lines,
)
from gateway.uplink import contract as c

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "dashboards" / "json").glob("*.json"))
T0 = 1_767_225_600_000_000_000
TELEMETRY = "telemetry"
FLUX_COLUMNS = frozenset({"_measurement", "_field", "_value", "_time", "_start", "_stop"})


# ---------------------------------------------------------------------------------- schema

def _quantities(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "quantity" and isinstance(value, str):
                yield value
            else:
                yield from _quantities(value)
    elif isinstance(node, list):
        for item in node:
            yield from _quantities(item)


def _shipped_quantities() -> frozenset[str]:
    files = [*(ROOT / "hardware" / "profiles").glob("*.yaml"),
             *(ROOT / "firmware_configs").glob("*.yaml")]
    assert files
    found: set[str] = set()
    for path in files:
        found.update(_quantities(yaml.safe_load(path.read_text(encoding="utf-8"))))
    return frozenset(found)


QUANTITIES = _shipped_quantities()


def _telemetry_sample_lines() -> list[Line]:
    """A number, a boolean, a string and a null, all with a full catalog entry."""
    meta = c.PointMeta(device="th-1", room="room-1", quantity="temperature", unit="°C")
    catalog = {f"th-1.p{i}": meta for i in range(4)}
    batch = c.TelemetryBatch.from_samples(
        site="s", gateway="g", seq=1, produced=T0, catalog=None, samples=[
            Sample("th-1.p0", 21.5, T0, Quality.GOOD),
            Sample("th-1.p1", True, T0 + 1, Quality.STALE),
            Sample("th-1.p2", "text", T0 + 2, Quality.GOOD),
            Sample("th-1.p3", None, T0 + 3, Quality.COMM_ERROR)])
    return telemetry_lines(batch, catalog)


def _alarm_sample_lines() -> list[Line]:
    return [alarm_line(c.AlarmEventMessage(
        site="s", gateway="g", seq=i + 1, ts=T0 + i, kind=EventKind.ALARM, rule="r",
        subject="d.p", state=AlarmState.ACTIVE_UNACKNOWLEDGED, previous_state=AlarmState.NORMAL,
        actor="system", title="t", note="n", value=value, severity=Severity.CRITICAL,
        room="room-1", first_out=True, chattering=False))
        for i, value in enumerate([1.5, "text", None])]


def _state_sample_lines() -> list[Line]:
    return [state_line(c.GatewayState(
        site="s", gateway="g", status="online", ts=T0, software="1.0", config_version="7",
        catalog="0123456789abcdef", boot=T0 - 1,
        outbox=c.OutboxStatus(depth=3, bytes=100, budget=1000, oldest_age_s=2.5),
        dropped={kind: 1 for kind in c.MessageKind}, devices_online=1, devices_total=2))]


def _names(lines: list[Line]) -> tuple[frozenset[str], frozenset[str]]:
    fields = frozenset(name for line in lines for name, _ in line.fields)
    tags = frozenset(name for line in lines for name, _ in line.tags)
    return fields, tags


SCHEMA: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    TELEMETRY: _names(_telemetry_sample_lines()),
    ALARM_MEASUREMENT: _names(_alarm_sample_lines()),
    STATE_MEASUREMENT: _names(_state_sample_lines()),
}
MEASUREMENTS = QUANTITIES | {ALARM_MEASUREMENT, STATE_MEASUREMENT}


def test_sample_lines_cover_the_documented_schema() -> None:
    """Guards the derivation itself: every optional field and tag is produced by a sample."""
    fields, tags = SCHEMA[TELEMETRY]
    assert {"value", "text", "no_value"} <= fields
    assert {"site", "gateway", "room", "device", "point", "quality", "unit"} <= tags
    fields, tags = SCHEMA[ALARM_MEASUREMENT]
    assert {"active", "seq", "state", "value", "value_text", "no_value", "note"} <= fields
    assert {"rule", "subject", "kind", "room", "severity"} <= tags
    fields, _ = SCHEMA[STATE_MEASUREMENT]
    assert {"online", "outbox_depth", "outbox_oldest_age_s", "dropped_telemetry"} <= fields
    assert {"temperature", "relative_humidity"} <= QUANTITIES


# ---------------------------------------------------------------------------------- queries

def _load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _variables(dashboard: dict[str, Any]) -> set[str]:
    return {v["name"] for v in dashboard.get("templating", {}).get("list", [])}


def _queries(dashboard: dict[str, Any]) -> list[str]:
    queries = [target["query"] for panel in _panels(dashboard["panels"])
               for target in panel.get("targets", [])]
    queries += [v["query"] for v in dashboard.get("templating", {}).get("list", [])
                if v.get("type") == "query"]
    return queries


CASES = [pytest.param(path, query, id=f"{path.stem}-{i}")
         for path in DASHBOARDS for i, query in enumerate(_queries(_load(path)))]

_MEASUREMENT = re.compile(r'r\._measurement\s*(==|!=)\s*"([^"]*)"')
_FIELD = re.compile(r'r\._field\s*(?:==|!=)\s*"([^"]*)"')
_COLUMN = re.compile(r'\br\.([A-Za-z_]\w*)|\br\["([^"]+)"\]')
_TAG_ARG = re.compile(r'\btag:\s*"([^"]+)"')
_GROUP = re.compile(r'\bgroup\(columns:\s*\[([^\]]*)\]')
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def _kinds(query: str, variables: set[str]) -> set[str]:
    """What the query reads: alarm_events, gateway_state and/or telemetry quantities."""
    kinds: set[str] = set()
    for op, name in _MEASUREMENT.findall(query):
        if _VARIABLE.fullmatch(name):
            assert name.strip("${}") in variables, f"undefined variable {name}"
            kinds.add(TELEMETRY)
            continue
        assert name in MEASUREMENTS, f"measurement {name!r} is never written"
        if op == "==":
            kinds.add(name if name in (ALARM_MEASUREMENT, STATE_MEASUREMENT) else TELEMETRY)
    if not any(op == "==" for op, _ in _MEASUREMENT.findall(query)):
        kinds.add(TELEMETRY)  # no positive measurement filter: telemetry across quantities
    return kinds


def test_there_are_dashboards() -> None:
    assert {p.name for p in DASHBOARDS} >= {"site-overview.json", "room-detail.json",
                                            "fleet-health.json"}
    assert len(CASES) >= 10


@pytest.mark.parametrize(("path", "query"), CASES)
def test_query_uses_only_written_names(path: Path, query: str) -> None:
    variables = _variables(_load(path))
    assert 'from(bucket: "roomwarden")' in query or "bucket: \"roomwarden\"" in query
    assert _MEASUREMENT.search(query), "every query filters _measurement"
    assert _FIELD.search(query), "every query filters _field"
    kinds = _kinds(query, variables)
    fields = frozenset().union(*(SCHEMA[k][0] for k in kinds))
    tags = frozenset().union(*(SCHEMA[k][1] for k in kinds))
    for field in _FIELD.findall(query):
        assert field in fields, f"field {field!r} is not written for {sorted(kinds)}"
    # After a pivot, field names become columns of the row.
    columns = tags | FLUX_COLUMNS | (fields if "pivot(" in query else frozenset())
    for dotted, bracketed in _COLUMN.findall(query):
        assert (dotted or bracketed) in columns, f"r.{dotted or bracketed} is not written"
    for tag in _TAG_ARG.findall(query):
        assert tag in tags | FLUX_COLUMNS, f"tag {tag!r} is not written"
    for group in _GROUP.findall(query):
        for column in re.findall(r'"([^"]+)"', group):
            assert column in tags | FLUX_COLUMNS, f"group column {column!r} is not written"
    for name, short in _VARIABLE.findall(query):
        var = name or short
        assert var in variables or var in {"__interval", "__timeFilter"}, f"${var} undefined"
    for value in re.findall(r'r\.quality\s*(?:==|!=)\s*"([^"]*)"', query):
        assert value in {q.value for q in Quality}
    for value in re.findall(r'r\.severity\s*(?:==|!=)\s*"([^"]*)"', query):
        assert value in {s.value for s in Severity}
    for value in re.findall(r'r\.kind\s*(?:==|!=)\s*"([^"]*)"', query):
        assert value in {k.value for k in EventKind}


# ---------------------------------------------------------------------------------- structure

@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_structure(path: Path) -> None:
    dashboard = _load(path)
    assert dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in _panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}"
    for panel in _panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "roomwarden-influx"
        assert panel["targets"] and all(t["query"].strip() for t in panel["targets"])
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        if "repeat" in panel:
            assert panel["repeat"] in _variables(dashboard)


def test_uids_and_titles_are_unique() -> None:
    uids = [_load(p)["uid"] for p in DASHBOARDS]
    titles = [_load(p)["title"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids)) and len(titles) == len(set(titles))


def test_provisioning() -> None:
    prov = ROOT / "dashboards" / "provisioning"
    source = yaml.safe_load((prov / "datasources" / "influxdb.yaml").read_text(encoding="utf-8"))
    (ds,) = source["datasources"]
    assert ds["type"] == "influxdb" and ds["uid"] == "roomwarden-influx"
    assert ds["jsonData"]["version"] == "Flux" and ds["jsonData"]["defaultBucket"]
    assert ds["jsonData"]["organization"] and ds["url"]
    assert ds["secureJsonData"]["token"] == "$INFLUX_TOKEN"
    provider = yaml.safe_load((prov / "dashboards" / "roomwarden.yaml").read_text(encoding="utf-8"))
    assert provider["providers"][0]["type"] == "file"
