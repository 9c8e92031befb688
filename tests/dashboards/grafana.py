r"""What Grafana does to a dashboard query before it reaches the database, for the tests.

Grafana is not installable here, so this fills a query the way its InfluxDB (InfluxQL) and
Prometheus data sources do:

* time: `$timeFilter` / `$__timeFilter` → `time >= <from>ms and time <= <to>ms`; `$__interval`
  (and `$__rate_interval`, at least 4 × the scrape interval) as a duration like `30s`,
  `$__interval_ms`, `$__range` (`3600s`), `$__range_s`, `$__range_ms`;
* template variables `$name`, `${name}`, `${name:raw}`, `[[name]]`: a single-valued variable is
  inserted raw; a multi-value or include-all variable is regex-escaped and joined as
  `(a|b)` (one value: just that value, escaped); "All" is the variable's `allValue` if it has
  one (raw), else every option joined. The escaping is the data source's: InfluxQL escapes
  `\^$*+?.()|[]{}/` with one backslash (the regex is a `/…/` literal); Prometheus escapes
  `$^*{}[]'+?.()|` with two and a backslash as four (the regex is inside a string literal);
* a variable query's options filtered by the variable's `regex` (`/…/`; the first capture
  group is the value).

`expand()` is pure; tests/dashboards/test_grafana.py checks it (hypothesis for the escaping).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ALL = "$__all"
_REFERENCE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]|\$(\w+)")
_INFLUX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
_PROM_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|]")


@dataclass(frozen=True)
class Selection:
    """The chosen value(s) of a template variable and how Grafana formats it."""

    values: tuple[str, ...]
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None
    options: tuple[str, ...] = ()
    """Every option (for "All" without an `allValue`)."""

    @property
    def all_selected(self) -> bool:
        return self.values == (ALL,)


@dataclass(frozen=True)
class TimeRange:
    start_ms: int
    end_ms: int
    interval_ms: int
    scrape_interval_ms: int = 15_000

    @property
    def range_s(self) -> int:
        return max(1, round((self.end_ms - self.start_ms) / 1000))


def regex_escape(value: str, flavour: str) -> str:
    """Grafana's regex escaping of one value in an InfluxQL or a Prometheus query."""
    if flavour == "influxql":
        return _INFLUX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)
    value = value.replace("\\", "\\\\\\\\")
    return _PROM_SPECIAL.sub(lambda m: "\\\\" + m.group(0), value)


def format_value(selection: Selection, flavour: str) -> str:
    if selection.all_selected:
        if selection.all_value is not None:
            return selection.all_value
        values = selection.options
    else:
        values = selection.values
    if not (selection.multi or selection.include_all):
        return values[0] if values else ""
    escaped = [regex_escape(v, flavour) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def _duration(ms: int) -> str:
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def builtins(time: TimeRange) -> dict[str, str]:
    time_filter = f"time >= {time.start_ms}ms and time <= {time.end_ms}ms"
    rate = max(time.interval_ms + time.scrape_interval_ms, 4 * time.scrape_interval_ms)
    return {"timeFilter": time_filter, "__timeFilter": time_filter,
            "__interval": _duration(time.interval_ms), "__interval_ms": str(time.interval_ms),
            "__rate_interval": _duration(rate), "__range": f"{time.range_s}s",
            "__range_s": str(time.range_s), "__range_ms": str(time.range_s * 1000)}


def expand(query: str, variables: dict[str, Selection], time: TimeRange,
           flavour: str) -> str:
    """`query` as Grafana sends it; KeyError for a variable that is not defined."""
    fixed = builtins(time)

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3) or match.group(4)
        fmt = match.group(2)
        if name in fixed:
            return fixed[name]
        if name not in variables:
            raise KeyError(f"${name} is not a variable of the dashboard")
        selection = variables[name]
        if fmt == "raw":
            return ",".join(selection.values)
        return format_value(selection, flavour)

    return _REFERENCE.sub(one, query)


def filter_options(options: list[str], regex: str) -> list[str]:
    """Grafana's variable `regex` (`/pattern/`): keep matching options; a capture group is the
    value. Duplicates removed, order kept."""
    if not regex:
        return list(dict.fromkeys(options))
    assert regex.startswith("/") and regex.endswith("/"), regex
    pattern = re.compile(regex[1:-1])
    out = []
    for option in options:
        match = pattern.search(option)
        if match is None:
            continue
        out.append(match.group(1) if match.groups() else option)
    return list(dict.fromkeys(out))
