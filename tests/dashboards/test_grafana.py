"""The Grafana stand-in the query tests use (tests/dashboards/grafana.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.dashboards.grafana import (
    ALL,
    Selection,
    TimeRange,
    expand,
    filter_options,
    format_value,
    regex_escape,
)

TR = TimeRange(start_ms=1_000_000, end_ms=4_600_000, interval_ms=30_000)
values = st.lists(st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]),
                          min_size=1, max_size=12), min_size=1, max_size=4, unique=True)


def _prom_literal(text: str) -> str:
    """What a PromQL double-quoted string literal holds (its backslash escapes undone)."""
    return re.sub(r"\\(.)", r"\1", text)


@given(values)
def test_influxql_multi_value_regex_matches_exactly_the_chosen_values(chosen: list[str]) -> None:
    sel = Selection(tuple(chosen), multi=True)
    pattern = re.compile("^" + format_value(sel, "influxql") + "$")
    for v in chosen:
        assert pattern.fullmatch(v)
    assert not pattern.fullmatch("".join(chosen) + "\x00")


@given(values)
def test_prometheus_multi_value_regex_matches_exactly_the_chosen_values(chosen: list[str]) -> None:
    sel = Selection(tuple(chosen), multi=True)
    pattern = re.compile(_prom_literal(format_value(sel, "metricsql")))
    for v in chosen:
        assert pattern.fullmatch(v)
    assert not pattern.fullmatch("".join(chosen) + "\x00")


@given(st.text(max_size=20))
def test_an_escaped_influxql_value_never_ends_the_regex_literal(value: str) -> None:
    escaped = regex_escape(value, "influxql")
    assert re.search(r"(?<!\\)/", escaped) is None or "\\" in value


def test_builtins_and_formats() -> None:
    variables = {"site": Selection(("a.b", "c"), multi=True, include_all=True),
                 "one": Selection(("x-1",)),
                 "sev": Selection((ALL,), multi=True, include_all=True, all_value=".*"),
                 "all": Selection((ALL,), multi=True, include_all=True, options=("p", "q"))}
    q = ('SELECT 1 WHERE "site" =~ /^$site$/ AND $timeFilter AND x = \'${one}\' AND [[one]] '
         "AND $sev AND $all GROUP BY time($__interval) $__range $__rate_interval ${site:raw}")
    assert expand(q, variables, TR, "influxql") == (
        'SELECT 1 WHERE "site" =~ /^(a\\.b|c)$/ AND time >= 1000000ms and time <= 4600000ms '
        "AND x = 'x-1' AND x-1 AND .* AND (p|q) GROUP BY time(30s) 3600s 60s a.b,c")
    assert expand('site=~"$site"', variables, TR, "metricsql") == 'site=~"(a\\\\.b|c)"'
    with pytest.raises(KeyError):
        expand("$nope", variables, TR, "influxql")


def test_variable_regex_filter() -> None:
    options = ["alarm_events", "temperature", "gateway_state", "temperature", "h2_lel"]
    assert filter_options(options, "/^(?!(?:alarm_events|gateway_state)$)(.+)$/") == [
        "temperature", "h2_lel"]
    assert filter_options(["temperature_value", "temperature_no_value"],
                          "/^(?!.*_no_value$)(.+)_value$/") == ["temperature"]
    assert filter_options(["b", "a", "b"], "") == ["b", "a"]
