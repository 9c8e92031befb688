"""Contract messages → line protocol: total, deterministic, never an empty tag."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alarms.events import EventKind
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.contract import wire as c
from gateway.field.sample import Quality, Sample
from gateway.ingest.schema import (
    Line,
    UnknownCatalog,
    alarm_line,
    message_lines,
    state_line,
    telemetry_lines,
)
from tests.uplink import strategies as s

T0 = 1_767_225_600_000_000_000

_LINE = re.compile(r"^[a-z][a-z0-9_]*(,[a-z_]+=(\\[ ,=]|[^ ,=\\\n])+)* \S.* \d+$")


def _check(line: Line) -> None:
    assert line.tags and all(value for _, value in line.tags)
    assert line.fields
    assert 0 <= line.time_ns < 2**63
    text = line.to_line_protocol()
    assert "\n" not in text and "\r" not in text
    assert _LINE.match(text), text


@pytest.mark.slow
@settings(max_examples=200)
@given(batch=s.telemetry, metas=st.lists(s.point_meta, min_size=0, max_size=5))
def test_any_batch_converts(batch: c.TelemetryBatch, metas: list[c.PointMeta]) -> None:
    points = [row[0] for row in batch.samples]
    catalog = {p: m for p, m in zip(points, metas, strict=False)}
    lines = telemetry_lines(batch, catalog)
    assert len(lines) == len(batch.samples)
    for line, (point, _, dt, quality) in zip(lines, batch.samples, strict=True):
        _check(line)
        tags = dict(line.tags)
        assert tags["site"] == batch.site and tags["gateway"] == batch.gateway
        assert tags["point"] == point and tags["quality"] == quality.value
        assert line.time_ns == batch.t0 + dt
    assert telemetry_lines(batch, catalog) == lines  # deterministic: redelivery collapses


@pytest.mark.slow
@given(batch=s.telemetry)
def test_any_batch_converts_without_catalog(batch: c.TelemetryBatch) -> None:
    for line in telemetry_lines(batch, None):
        _check(line)
        assert line.measurement == "unclassified"


@settings(max_examples=200)
@given(event=s.alarm_event)
def test_any_alarm_event_converts(event: c.AlarmEventMessage) -> None:
    line = alarm_line(event)
    _check(line)
    assert dict(line.fields)["seq"] == event.seq and line.time_ns == event.ts
    assert alarm_line(event) == line


@given(state=s.state)
def test_any_gateway_state_converts(state: c.GatewayState) -> None:
    line = state_line(state)
    _check(line)
    assert dict(line.fields)["online"] is (state.status == "online")


def _catalog() -> c.PointCatalog:
    return c.PointCatalog.build(site="bj-idc", gateway="gw-1", produced=T0, points={
        "th-1.temperature": c.PointMeta(device="th-1", room="battery-1",
                                        quantity="temperature", unit="°C"),
        "smoke-1.alarm": c.PointMeta(device="smoke-1", room="battery-1", quantity="smoke"),
    })


def test_telemetry_lines_exact() -> None:
    cat = _catalog()
    batch = c.TelemetryBatch.from_samples(
        site="bj-idc", gateway="gw-1", seq=7, produced=T0, catalog=cat.catalog, samples=[
            Sample("th-1.temperature", 24.6, T0, Quality.GOOD),
            Sample("smoke-1.alarm", True, T0 + 5, Quality.GOOD),
            Sample("th-1.temperature", None, T0 + 9, Quality.COMM_ERROR),
            Sample("ups-1.mode", "line", T0 + 10, Quality.GOOD)])
    lines = [line.to_line_protocol()
             for line in message_lines(batch, lambda *_: cat.points)]
    assert lines == [
        "temperature,device=th-1,gateway=gw-1,point=th-1.temperature,quality=good,"
        "room=battery-1,site=bj-idc,unit=°C value=24.6 1767225600000000000",
        "smoke,device=smoke-1,gateway=gw-1,point=smoke-1.alarm,quality=good,room=battery-1,"
        "site=bj-idc value=1.0 1767225600000000005",
        "temperature,device=th-1,gateway=gw-1,point=th-1.temperature,quality=comm_error,"
        "room=battery-1,site=bj-idc,unit=°C no_value=true 1767225600000000009",
        "unclassified,device=ups-1,gateway=gw-1,point=ups-1.mode,quality=good,site=bj-idc "
        'text="line" 1767225600000000010',
    ]


def test_unknown_catalog_is_an_error() -> None:
    batch = c.TelemetryBatch.from_samples(
        site="s", gateway="g", seq=1, produced=T0, catalog="0123456789abcdef",
        samples=[Sample("d.p", 1.0, T0, Quality.GOOD)])
    with pytest.raises(UnknownCatalog):
        message_lines(batch, lambda *_: None)


def test_free_text_tags_are_escaped() -> None:
    event = c.AlarmEventMessage(
        site="s", gateway="g", seq=3, ts=T0, kind=EventKind.ALARM, rule="h2 high,=x",
        subject="a\\\nb", state=AlarmState.ACTIVE_UNACKNOWLEDGED,
        previous_state=AlarmState.NORMAL, actor="system", title='say "hi"\n', value=2.5,
        severity=Severity.CRITICAL)
    text = alarm_line(event).to_line_protocol()
    assert text.startswith("alarm_events,gateway=g,kind=alarm,rule=h2\\ high\\,\\=x,"
                           "severity=critical,site=s,subject=a__b ")
    assert 'title="say \\"hi\\" "' in text and "active=true" in text
