"""Gateway clocks as the ingest sees them (the clock audit's D4, the central audit's skew): a
message stamped by an unset clock (1970) was acknowledged and silently dropped by the database
(VictoriaMetrics: `small_timestamp`) — a critical alarm gone without a trace. The ingest now
dead-letters such telemetry, saying why, and writes such alarm events and live states at the
time it first received them, marked (`clock_suspect`, `gateway_ts`): central monitoring's
Active alarms table shows the alarm, once however often it is delivered. A gateway whose live
state is minutes off the ingest's clock is logged and measured. Real Mosquitto, the real
ingest, VictoriaMetrics."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gateway.contract.wire as c
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.contract.enums import EventKind
from gateway.dashboards.definition import FLEET_HEALTH, SITE_OVERVIEW
from gateway.dashboards.model import Dashboard
from gateway.field.sample import Quality, Sample
from gateway.ingest.service import IngestService
from gateway.ingest.timecheck import (
    AHEAD_NS,
    FLOOR_NS,
    MAX_EVENT_AGE_NS,
    RETENTION_NS,
    implausible,
)
from tests.dashboards.grafana import Selection, TimeRange, expand
from tests.fixtures.services import Broker, Victoria, wait_for
from tests.ingest.test_service import (
    CATALOG,
    GW,
    SITE,
    Gateway,
    make_settings,
    subscribed,
    values,
)

DAY_1970 = 86_400 * 10**9  # 1970-01-02: a Pi's clock before NTP
HIDDEN_S = 1.5
"""Debian's VictoriaMetrics (1.79) hides the newest second of samples from a query or export at
its current time (tests/dashboards/fleet.py, _until_in_victoria): wait this long after the last
write before looking, so that any row written at a receive time would be seen."""


@pytest.fixture
def gateway(broker: Broker) -> Iterator[Gateway]:
    publisher = Gateway(broker)
    yield publisher
    publisher.close()


def unset_clock_batch(gateway: str = GW) -> c.TelemetryBatch:
    return c.TelemetryBatch.from_samples(
        site=SITE, gateway=gateway, seq=1, produced=DAY_1970,
        catalog=CATALOG.catalog if gateway == GW else None,
        samples=[Sample("h2-1.concentration", 30, DAY_1970, Quality.GOOD)])


def unset_clock_alarm(gateway: str = GW) -> c.AlarmEventMessage:
    """A critical hydrogen alarm raised by a gateway whose clock NTP has not set."""
    return c.AlarmEventMessage(
        site=SITE, gateway=gateway, seq=7, ts=DAY_1970 + 10**9, kind=EventKind.ALARM,
        rule="explosion.h2_alarm", subject="h2-1.concentration",
        state=AlarmState.ACTIVE_UNACKNOWLEDGED, previous_state=AlarmState.NORMAL, value=30,
        severity=Severity.CRITICAL, actor="system", room="battery-1", title="Hydrogen")


def dashboard_rows(vm: Victoria, dashboard: Dashboard, title: str) -> list[dict[str, Any]]:
    """A table or stat panel's rows as Grafana gets them from VictoriaMetrics: its MetricsQL
    filled in as Grafana fills it (this test's site chosen), an instant query at now — after
    waiting for any row: Debian's VictoriaMetrics hides the newest second of samples from a
    query at now (tests/dashboards/fleet.py, _until_in_victoria)."""
    rows: list[dict[str, Any]] = []

    def shown() -> bool:
        rows[:] = _dashboard_rows(vm, dashboard, title)
        return bool(rows)

    wait_for(shown, timeout=15, what=f"the {title!r} panel's rows")
    return rows


def _dashboard_rows(vm: Victoria, dashboard: Dashboard, title: str) -> list[dict[str, Any]]:
    [panel] = [p for p in dashboard.panels() if p.title == title]
    [query] = panel.queries
    assert query.table and query.metricsql
    now_ms = time.time_ns() // 10**6
    tr = TimeRange(start_ms=now_ms - 3_600_000, end_ms=now_ms, interval_ms=10_000)
    chosen = {"site": Selection((SITE,), multi=True, include_all=True),
              "rp": Selection(("autogen",))}
    text = expand(query.metricsql, chosen, tr, "metricsql")
    vm.flush()
    url = vm.url + "/api/v1/query?" + urllib.parse.urlencode(
        {"query": text, "time": str(tr.end_ms / 1000)})
    with urllib.request.urlopen(url, timeout=30) as r:
        data = json.loads(r.read().decode())
    assert data["status"] == "success", data
    return [{**r["metric"], "value": float(r["value"][1])} for r in data["data"]["result"]]


def restamp_lines(caplog: pytest.LogCaptureFixture, gateway: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if "event=gateway_clock_restamped" in r.getMessage()
            and f"gateway={gateway} " in r.getMessage()]


def test_an_unset_clocks_telemetry_is_dead_lettered_with_why(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway,
        caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path, broker, victoria)
    with subscribed(settings) as service:
        gateway.send(CATALOG)
        gateway.send(unset_clock_batch())
        # 3 minutes ahead (further is not written at its own time); a gateway of its own: the
        # skew line is logged at most a minute per gateway (test_service's states are an hour
        # behind)
        skewed = c.GatewayState(site=SITE, gateway="gw-skewed", status="online",
                                ts=time.time_ns() + 180 * 10**9)
        with caplog.at_level(logging.WARNING, logger="roomwarden.ingest"):
            gateway.raw(str(c.Topic(SITE, "gw-skewed", c.Channel.STATE)), c.encode(skewed))
            wait_for(lambda: service.status()["acked"] == 3, what="all acknowledged")
        records = [json.loads(x) for x in settings.dead_letter.read_text().splitlines()]
        assert len(records) == 1 and "before 2020" in records[0]["reason"]
        assert "1970-01-02" in records[0]["reason"]
        assert not values(victoria, "hydrogen_value")
        exposition = service.metrics.exposition().decode()
        assert 'roomwarden_ingest_messages_dead_lettered_total{reason="clock"} 1.0' in \
            exposition
        assert 'roomwarden_ingest_messages_restamped_total{reason="clock"} 0.0' in exposition
        skew = [line for line in exposition.splitlines()
                if line.startswith("roomwarden_ingest_gateway_clock_skew_seconds{")]
        assert len(skew) == 1 and 175 < float(skew[0].split()[-1]) < 185
        assert any("event=gateway_clock_skew" in r.getMessage() and "ahead of" in
                   r.getMessage() for r in caplog.records)


def test_an_unset_clocks_critical_alarm_is_active_centrally_at_receive_time_once(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway,
        caplog: pytest.LogCaptureFixture) -> None:
    """The clock audit's critical hydrogen alarm, from a gateway whose clock is unset: written
    at the ingest's receive time with the gateway's stamp kept and marked, listed in the Active
    alarms table (the dashboard's own query), written once however often it is delivered; the
    gateway's live state likewise (it counts online); its telemetry is still dead-lettered."""
    unset = "gw-unset"
    settings = make_settings(tmp_path, broker, victoria)
    with subscribed(settings) as service:
        alarm = unset_clock_alarm(unset)
        state = c.GatewayState(site=SITE, gateway=unset, status="online", ts=DAY_1970 + 2 * 10**9,
                               devices_online=3, devices_total=3)
        before = time.time_ns()
        with caplog.at_level(logging.WARNING, logger="roomwarden.ingest"):
            for message in (unset_clock_batch(unset), alarm, state):
                gateway.send(message)  # (the state retained, as a gateway sends it: live here)
            wait_for(lambda: service.status()["acked"] == 3, what="all acknowledged")
            after = time.time_ns()
            for _ in range(2):  # QoS 1 again, the gateway's replay after a reconnect: the same
                gateway.send(alarm)
            wait_for(lambda: service.status()["acked"] == 5, what="redeliveries acknowledged")
        received = range(before // 10**6, after // 10**6 + 1)
        time.sleep(HIDDEN_S)

        [seq] = victoria.export(f'{{__name__="alarm_events_seq",gateway="{unset}"}}')
        [at] = seq["timestamps"]  # one row, however often delivered
        assert at in received and seq["values"] == [7]
        assert values(victoria, "alarm_events_clock_suspect") == {at: 1.0}
        stamps = values(victoria, "alarm_events_gateway_ts")  # float64, 17 digits printed
        assert list(stamps) == [at] and stamps[at] == pytest.approx(alarm.ts, abs=2048)
        [active] = [r for r in dashboard_rows(victoria, SITE_OVERVIEW, "Active alarms")
                    if r["gateway"] == unset]
        assert active["severity"] == "critical" and active["rule"] == "explosion.h2_alarm"
        assert active["value"] == 1.0  # state_code: active unacknowledged
        assert dashboard_rows(victoria, SITE_OVERVIEW, "Active alarms by severity") == [
            {"severity": "critical", "value": 1.0}]

        [state_at] = values(victoria, "gateway_state_online")
        assert state_at in received
        stamps = values(victoria, "gateway_state_gateway_ts")  # float64, 17 digits printed
        assert list(stamps) == [state_at] and stamps[state_at] == pytest.approx(state.ts,
                                                                                abs=2048)
        assert values(victoria, "gateway_state_clock_suspect") == {state_at: 1.0}
        assert dashboard_rows(victoria, FLEET_HEALTH, "Gateways online") == [{"value": 1.0}]
        [seen] = dashboard_rows(victoria, FLEET_HEALTH, "Last seen")
        assert seen["gateway"] == unset and seen["value"] == state_at

        records = [json.loads(x) for x in settings.dead_letter.read_text().splitlines()]
        assert [r["topic"] for r in records] == [f"roomwarden/{SITE}/{unset}/telemetry"]
        assert "before 2020" in records[0]["reason"] and not values(victoria, "hydrogen_value")
        status = service.status()
        assert status["duplicates"] == 2 and status["dead_lettered"] == 1
        exposition = service.metrics.exposition().decode()
        assert 'roomwarden_ingest_messages_restamped_total{reason="clock"} 2.0' in exposition
        assert 'roomwarden_ingest_messages_dead_lettered_total{reason="clock"} 1.0' in \
            exposition
        assert 'roomwarden_ingest_messages_duplicate_total{channel="alarms"} 2.0' in exposition
        [line] = restamp_lines(caplog, unset)  # a line a minute per gateway
        assert "alarm_event seq=7" in line and "1970-01-02" in line and "clock_suspect" in line
        assert not [r for r in caplog.records if "event=gateway_clock_skew" in r.getMessage()
                    and f"gateway={unset} " in r.getMessage()]  # the line above says it


def test_a_restamped_alarm_keeps_its_first_receive_time(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway) -> None:
    """Received while the database is down, never acknowledged, redelivered by the broker to
    the next ingest: written at the first ingest's receive time, not the redelivery's. And
    written again anyway (the duplicate key lost: a crash between the database's write and the
    key's commit), it lands on that same time — a second row at another time is impossible."""
    unset = "gw-replay"
    settings = make_settings(tmp_path, broker, victoria)
    first = IngestService(settings)
    first.start()
    wait_for(lambda: bool(first.status()["subscribed"]), what="ingest subscribed")
    victoria.kill()
    before = time.time_ns()
    gateway.send(unset_clock_alarm(unset))
    wait_for(lambda: first.status()["write_retries"] >= 1, what="a write failing")
    first.stop()
    stopped = time.time_ns()
    assert first.status()["acked"] == 0
    victoria.start()
    second = IngestService(settings)
    second.start()
    try:
        wait_for(lambda: second.status()["acked"] == 1, timeout=30, what="redelivered alarm")
        time.sleep(HIDDEN_S)
        [seq] = victoria.export(f'{{__name__="alarm_events_seq",gateway="{unset}"}}')
        [at] = seq["timestamps"]
        assert before // 10**6 <= at <= stopped // 10**6  # the first receive, not the second's
        forget = sqlite3.connect(settings.seen_store)
        with forget:
            assert forget.execute("DELETE FROM seen").rowcount == 1
        forget.close()
        gateway.send(unset_clock_alarm(unset))
        wait_for(lambda: second.status()["acked"] == 2, what="the alarm again")
        time.sleep(HIDDEN_S)
        [seq] = victoria.export(f'{{__name__="alarm_events_seq",gateway="{unset}"}}')
        assert seq["timestamps"] == [at, at]  # (InfluxDB collapses these; VM here keeps both)
    finally:
        second.stop()


def test_a_retained_unset_clock_state_never_heard_live_is_dead_lettered(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway) -> None:
    """A gateway's retained state from before the ingest subscribed is as old as it is: with
    an unset clock, when it was made is unknown, so it is not re-stamped to now (a gateway
    long gone would count online); once heard live, its states are."""
    unset = "gw-retained"
    gateway.send(c.GatewayState(site=SITE, gateway=unset, status="online", ts=DAY_1970))
    settings = make_settings(tmp_path, broker, victoria)
    service = IngestService(settings)
    service.start()
    try:
        wait_for(lambda: service.status()["acked"] == 1, what="the retained state")
        [record] = [json.loads(x) for x in settings.dead_letter.read_text().splitlines()]
        assert record["topic"] == f"roomwarden/{SITE}/{unset}/state"
        assert "before 2020" in record["reason"]
        gateway.send(c.GatewayState(site=SITE, gateway=unset, status="online",
                                    ts=DAY_1970 + 60 * 10**9))
        wait_for(lambda: service.status()["acked"] == 2, what="the live state")
        time.sleep(HIDDEN_S)
        [at] = values(victoria, "gateway_state_online")  # the live one only
        assert values(victoria, "gateway_state_gateway_ts") == {at: float(DAY_1970 + 60 * 10**9)}
    finally:
        service.stop()


@given(ts=st.integers(0, 2**62))
def test_only_times_from_a_day_back_to_5_minutes_ahead_are_written(ts: int) -> None:
    """A live state (and an alarm event) from `max_event_age` (a day) back to AHEAD_NS (5
    minutes) ahead; telemetry from the retention (30 days) back; a retained state or a last
    will however old, after 2020 (their time is not the gateway clock's now)."""
    now = 1_800_000_000 * 10**9
    assert AHEAD_NS == 300 * 10**9 and now - RETENTION_NS > FLOOR_NS
    state = c.GatewayState(site=SITE, gateway=GW, status="online", ts=ts)
    for live in (state, unset_clock_alarm().model_copy(update={"ts": ts})):
        assert (implausible(live, now) is None) == (
            now - MAX_EVENT_AGE_NS <= ts <= now + AHEAD_NS)
    for retained in (state, state.model_copy(update={"status": "offline"})):
        assert (implausible(retained, now, retained=retained.status == "online") is None) == (
            FLOOR_NS <= ts <= now + AHEAD_NS)
    if ts < 2**62 - 10**9:
        batch = c.TelemetryBatch.from_samples(
            site=SITE, gateway=GW, seq=1, produced=ts,
            samples=[Sample("th-1.temperature", 1.0, ts, Quality.GOOD)])
        assert (implausible(batch, now) is None) == (now - RETENTION_NS <= ts <= now + AHEAD_NS)


def test_the_skew_gauge_keeps_no_series_of_a_forgotten_gateway(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """30,000 forged gateway states left 30,000 skew series (2.3 MB a /metrics scrape) though
    the watch keeps 10,000 gateways (the central audit): a forgotten gateway's series goes."""
    import gateway.ingest.timecheck as timecheck
    from gateway.ingest.gatewaywatch import GatewayWatch
    from gateway.ingest.metrics import IngestMetrics

    monkeypatch.setattr(timecheck, "MAX_GATEWAYS", 50)
    metrics = IngestMetrics(queue_depth=lambda: 0, parked=lambda: 0, connected=lambda: 1,
                            catalogs=lambda: 0)
    watch = GatewayWatch(metrics)
    now = time.time_ns()
    for n in range(300):
        watch.observe(c.GatewayState(site=SITE, gateway=f"gw-{n}", status="online", ts=now),
                      False, now)
    series = [s for family in metrics.registry.collect()
              if family.name.endswith("gateway_clock_skew_seconds") for s in family.samples]
    assert len(series) == 50
    assert {s.labels["gateway"] for s in series} == {f"gw-{n}" for n in range(250, 300)}


def test_a_clear_after_the_gateway_clock_stepped_back_clears_the_alarm_centrally(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway) -> None:
    """The central audit: raised (seq 3, a second ago), then cleared after the gateway's clock
    stepped back an hour (seq 4, stamped an hour ago): written at its own time the clear sorted
    before the raise, and Active alarms showed the alarm until its next event. The clear is
    placed just after the raise, marked, its own time kept."""
    now = time.time_ns()
    raised = c.AlarmEventMessage(
        site=SITE, gateway=GW, seq=3, ts=now - 10**9, kind=EventKind.ALARM,
        rule="fire.smoke_detector", subject="smoke-1.alarm",
        state=AlarmState.ACTIVE_UNACKNOWLEDGED, previous_state=AlarmState.NORMAL, value=True,
        severity=Severity.MAJOR, actor="system", room="battery-1", title="Smoke")
    cleared = raised.model_copy(update={
        "seq": 4, "ts": now - 3600 * 10**9, "state": AlarmState.NORMAL,
        "previous_state": AlarmState.ACTIVE_UNACKNOWLEDGED, "value": False})
    settings = make_settings(tmp_path, broker, victoria)
    with subscribed(settings) as service:
        gateway.send(raised)
        wait_for(lambda: service.status()["acked"] == 1, what="the raise acknowledged")
        assert [r for r in dashboard_rows(victoria, SITE_OVERVIEW, "Active alarms")
                if r["gateway"] == GW]  # active …
        gateway.send(cleared)
        wait_for(lambda: service.status()["acked"] == 2, what="the clear acknowledged")
        time.sleep(HIDDEN_S)
        # the gateway's own time kept as a float64 field: VictoriaMetrics prints it to 17
        # digits, so the number read back is within a few hundred ns of the stamp, not exact
        stamps = values(victoria, "alarm_events_gateway_ts")
        assert list(stamps) == [(raised.ts + 1_000_000) // 10**6]
        assert stamps[(raised.ts + 1_000_000) // 10**6] == pytest.approx(cleared.ts, abs=2048)
        assert not [r for r in _dashboard_rows(victoria, SITE_OVERVIEW, "Active alarms")
                    if r["gateway"] == GW]  # … and cleared
