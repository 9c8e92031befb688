"""What to tell a user about the dashboards of a VictoriaMetrics database: the Grafana data
source, the files to import and the alarm-history query by hand (`make demo` prints it)."""

from __future__ import annotations

from pathlib import Path

from gateway.dashboards.__main__ import FOLDERS
from gateway.dashboards.definition import ALARM_HISTORY, DASHBOARDS

DASHBOARD_DIR = Path("dashboards") / FOLDERS["metricsql"]
"""The dashboards that query the demo's database (VictoriaMetrics: the MetricsQL set)."""


def dashboard_files() -> list[Path]:
    return [DASHBOARD_DIR / (d.uid.removeprefix("roomwarden-") + ".json") for d in DASHBOARDS]


def alarm_history_query(site: str, window: str = "1h") -> str:
    """The alarm-history dashboard's table query with its variables filled for `site` (every
    severity, the last `window`): each event's labels carry state, severity, actor and note."""
    expr = ALARM_HISTORY.panels()[0].queries[0].metricsql
    return (expr.replace("$site", site).replace("$severity", ".*")
            .replace("$__range", window))


def grafana_guide(url: str, site: str) -> list[str]:
    """What to point Grafana at, what to import, and the alarm history by hand."""
    return [
        "Query the database (the ingest's measurements, as <measurement>_<field>):",
        f"    curl -s {url}/api/v1/query --data-urlencode 'query=temperature_value'",
        "  the alarm history as the alarm-history dashboard asks for it: each event's state,",
        "  severity, who acknowledged it (actor) and their note; the value is its time in ms:",
        f"    curl -s {url}/api/v1/query --data-urlencode "
        f"'query={alarm_history_query(site)}'",
        "",
        f"Grafana (not part of the demo): a data source of type Prometheus, URL {url},",
        "  HTTP method POST, scrape interval 10s (VictoriaMetrics answers MetricsQL); then",
        "  import these dashboards and pick that data source for their `victoria` variable:",
        *(f"    {path}" for path in dashboard_files()),
        "  (dashboards/influxql/ is the same set for InfluxDB: docs/dashboards.md)"]
