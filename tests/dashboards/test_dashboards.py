"""The shipped dashboard files: generated from the one definition, well-formed Grafana JSON,
no database or bucket in any query. (What the queries return: test_queries.py, against real
databases.)"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.dashboards.__main__ import main, rendered
from gateway.dashboards.definition import DASHBOARDS
from gateway.dashboards.model import FLAVOURS, PROM

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "dashboards").glob("*/*.json"))


def _load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def test_the_shipped_files_are_what_the_definition_renders(tmp_path: Path) -> None:
    assert main(["--check", str(ROOT / "dashboards")]) == 0, "run python -m gateway.dashboards"
    assert set(FILES) == set(rendered(ROOT / "dashboards"))
    (tmp_path / "influxql").mkdir()
    (tmp_path / "influxql" / "site-overview.json").write_text("{}")
    assert main(["--check", str(tmp_path)]) == 1  # the check can fail


def test_four_dashboards_in_two_sets() -> None:
    assert {d.uid for d in DASHBOARDS} == {
        "roomwarden-site-overview", "roomwarden-room-detail", "roomwarden-fleet-health",
        "roomwarden-alarm-history"}
    assert len(FILES) == 2 * len(DASHBOARDS)
    uids = [_load(p)["uid"] for p in FILES]
    titles = [_load(p)["title"] for p in FILES]
    assert len(set(uids)) == len(uids) and len(set(titles)) == len(titles)


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_dashboard_structure(path: Path) -> None:
    dashboard = _load(path)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    datasource_vars = {f"${{{n}}}" for n, v in variables.items() if v["type"] == "datasource"}
    ids = [panel["id"] for panel in _panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] in datasource_vars
        assert panel["targets"]
        for target in panel["targets"]:
            text = target.get("query") or target.get("expr")
            assert text and text.strip()
            assert target["datasource"]["uid"] in datasource_vars
            for name in re.findall(r"\$\{?(\w+)", text):
                assert name in variables or name.startswith("__") or name == "timeFilter", name
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        if "repeat" in panel:
            assert panel["repeat"] in variables


def test_no_query_names_a_database_or_bucket() -> None:
    """The database/bucket is the data source's setting, the retention policy `$rp`."""
    for dashboard in DASHBOARDS:
        for panel in dashboard.panels():
            for query in panel.queries:
                for text in (query.influxql, query.metricsql):
                    assert not re.search(r"\broomwarden\b(?!_)|bucket|\bdb=", text), text
                if query.source != PROM:
                    assert '"$rp".' in query.influxql, query.influxql
                    assert "FROM \"" not in query.influxql.replace('FROM "$rp"', ""), \
                        query.influxql


def test_every_panel_has_both_queries() -> None:
    for dashboard in DASHBOARDS:
        for panel in dashboard.panels():
            for query in panel.queries:
                assert query.metricsql.strip()
                assert query.source == PROM or query.influxql.strip()
    assert FLAVOURS == ("influxql", "metricsql")


def test_provisioning() -> None:
    prov = ROOT / "dashboards" / "provisioning"
    sources = yaml.safe_load((prov / "datasources" / "roomwarden.yaml").read_text("utf-8"))
    kinds = {(d["type"], d.get("jsonData", {}).get("dbName")) for d in sources["datasources"]}
    assert ("influxdb", "roomwarden") in kinds and ("prometheus", None) in kinds
    for source in sources["datasources"]:
        assert not any("password" in k or "token" in k for k in source.get("jsonData", {}))
    providers = yaml.safe_load((prov / "dashboards" / "roomwarden.yaml").read_text("utf-8"))
    assert {p["type"] for p in providers["providers"]} == {"file"}
    assert len(providers["providers"]) == 2
