"""Gateway clocks ahead or behind within what the ingest used to let through (the central
audit, probe_time.py): an alarm stamped 8 h ahead (an RTC kept in China's local time read as
UTC before NTP) was invisible to *Active alarms* until that time came, and its clear after NTP
fixed the clock was moved 8 h ahead too; one stamped 90 days back (fake-hwclock restoring an
old shutdown time) was acknowledged and dropped by VictoriaMetrics (a month's retention), and
*Active alarms* (30 days) would never show it; the ordering of an alarm's events lived in RAM,
so a restart of the ingest between a raise and its clear lost it, and one gateway's 100,000
alarms cleared every gateway's. Real Mosquitto, the real ingest, VictoriaMetrics; the
dashboard's own *Active alarms* query."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gateway.contract.wire as c
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.contract.enums import EventKind
from gateway.dashboards.definition import SITE_OVERVIEW
from gateway.field.sample import Quality, Sample
from tests.dashboards.grafana import Selection, TimeRange, expand
from tests.fixtures.services import Broker, Victoria, wait_for
from tests.ingest.test_clock_check import HIDDEN_S, dashboard_rows
from tests.ingest.test_service import SITE, Gateway, make_settings, subscribed, values

A, N = AlarmState.ACTIVE_UNACKNOWLEDGED, AlarmState.NORMAL
HOUR = 3600 * 10**9
DAY = 24 * HOUR


@pytest.fixture
def gateway(broker: Broker) -> Iterator[Gateway]:
    publisher = Gateway(broker)
    yield publisher
    publisher.close()


def event(gw: str, seq: int, ts: int, active: bool, *, rule: str = "explosion.h2_alarm",
          subject: str = "h2-1.concentration") -> c.AlarmEventMessage:
    return c.AlarmEventMessage(
        site=SITE, gateway=gw, seq=seq, ts=ts, kind=EventKind.ALARM, rule=rule,
        subject=subject, state=A if active else N, previous_state=N if active else A,
        value=30 if active else 2, severity=Severity.CRITICAL, actor="system",
        room="battery-1", title="Hydrogen")


def active_at(vm: Victoria, at_ns: int) -> list[str]:
    """The gateways (and rules) the site overview's *Active alarms* table lists at `at_ns` —
    its MetricsQL as Grafana fills it, an instant query at that time."""
    [panel] = [p for p in SITE_OVERVIEW.panels() if p.title == "Active alarms"]
    [query] = panel.queries
    assert query.metricsql
    at_ms = at_ns // 10**6
    chosen = {"site": Selection((SITE,), multi=True, include_all=True),
              "rp": Selection(("autogen",))}
    text = expand(query.metricsql, chosen,
                  TimeRange(start_ms=at_ms - 3_600_000, end_ms=at_ms, interval_ms=10_000),
                  "metricsql")
    vm.flush()
    url = vm.url + "/api/v1/query?" + urllib.parse.urlencode(
        {"query": text, "time": f"{at_ms / 1000:.3f}"})
    with urllib.request.urlopen(url, timeout=30) as r:
        data: dict[str, Any] = json.loads(r.read().decode())
    assert data["status"] == "success", data
    return sorted(f"{x['metric']['gateway']}:{x['metric']['rule']}"
                  for x in data["data"]["result"])


def export_until(vm: Victoria, match: str, end_ns: int) -> list[dict[str, Any]]:
    """Raw samples of the series matching `match` up to `end_ns` (the fixture's export ends
    now, and these lie ahead)."""
    vm.flush()
    body = urllib.parse.urlencode({"match[]": match, "start": "0",
                                   "end": str(end_ns // 10**9)}).encode()
    with urllib.request.urlopen(vm.url + "/api/v1/export", data=body, timeout=60) as r:
        return [json.loads(line) for line in r.read().decode().splitlines() if line]


def dead_letters(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_an_alarm_stamped_8h_ahead_is_active_at_once_and_its_clear_lands_now(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway) -> None:
    """Raised while the gateway's clock is 8 h ahead: written at its receive time, marked,
    listed by *Active alarms* at once; its readings so stamped are dead-lettered saying so.
    Cleared after NTP fixed the clock: the clear lands now, not 8 h ahead, and nothing is
    active then or later."""
    gw = "gw-ahead"
    settings = make_settings(tmp_path, broker, victoria)
    with subscribed(settings) as service:
        ahead = time.time_ns() + 8 * HOUR
        before = time.time_ns()
        gateway.send(event(gw, 10, ahead, True))
        gateway.send(c.TelemetryBatch.from_samples(
            site=SITE, gateway=gw, seq=1, produced=ahead,
            samples=[Sample("h2-1.concentration", 30, ahead, Quality.GOOD)]))
        wait_for(lambda: service.status()["acked"] == 2, what="both acknowledged")
        after = time.time_ns()
        [row] = [r for r in dashboard_rows(victoria, SITE_OVERVIEW, "Active alarms")
                 if r["gateway"] == gw]
        assert row["rule"] == "explosion.h2_alarm" and row["severity"] == "critical"
        [at] = values(victoria, "alarm_events_clock_suspect")
        assert before // 10**6 <= at <= after // 10**6
        assert values(victoria, "alarm_events_gateway_ts")[at] == pytest.approx(ahead, abs=2048)
        [record] = dead_letters(settings.dead_letter)
        assert record["topic"].endswith(f"/{gw}/telemetry")
        assert "8 h ahead of the ingest's clock" in record["reason"]
        assert not values(victoria, "unclassified_value")

        cleared = time.time_ns()
        gateway.send(event(gw, 11, cleared, False))  # NTP fixed the clock
        wait_for(lambda: service.status()["acked"] == 3, what="the clear acknowledged")
        time.sleep(HIDDEN_S)
        [seq] = victoria.export(f'{{__name__="alarm_events_seq",gateway="{gw}"}}')
        assert seq["timestamps"] == [at, cleared // 10**6]  # the clear at its own time
        assert gw not in " ".join(active_at(victoria, time.time_ns()))
        assert active_at(victoria, ahead + 60 * 10**9) == []  # nor when +8 h comes
        assert active_at(victoria, ahead + 20 * DAY) == []


def test_an_alarm_stamped_90_days_back_is_active_and_old_readings_are_dead_lettered(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway) -> None:
    """fake-hwclock restored a shutdown time 90 days old: the raise is written at its receive
    time, marked, its own time kept, and *Active alarms* lists it; readings older than the
    database's retention (`telemetry_retention`) are dead-lettered saying so, not acknowledged
    and dropped by the database."""
    gw = "gw-old"
    settings = make_settings(tmp_path, broker, victoria)
    with subscribed(settings) as service:
        old = time.time_ns() - 90 * DAY
        before = time.time_ns()
        gateway.send(event(gw, 5, old, True, rule="fire.smoke", subject="smoke-1.alarm"))
        gateway.send(c.TelemetryBatch.from_samples(
            site=SITE, gateway=gw, seq=1, produced=old,
            samples=[Sample("smoke-1.alarm", True, old, Quality.GOOD)]))
        wait_for(lambda: service.status()["acked"] == 2, what="both acknowledged")
        after = time.time_ns()
        [row] = [r for r in dashboard_rows(victoria, SITE_OVERVIEW, "Active alarms")
                 if r["gateway"] == gw]
        assert row["rule"] == "fire.smoke" and row["value"] == 1.0
        [at] = values(victoria, "alarm_events_clock_suspect")
        assert before // 10**6 <= at <= after // 10**6
        assert values(victoria, "alarm_events_gateway_ts")[at] == pytest.approx(old, abs=2048)
        [record] = dead_letters(settings.dead_letter)
        assert record["topic"].endswith(f"/{gw}/telemetry")
        assert "older than telemetry_retention (30 d)" in record["reason"]
        assert service.status()["dead_lettered"] == 1
        assert not values(victoria, "unclassified_value")


def test_a_backlog_older_than_max_event_age_stays_behind_its_alarms_live_events(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway) -> None:
    """A gateway away two days sends its live events first, then its backlog: the backlog's
    raise (a lower seq, two days old) is written at its arrival — later than the live clear —
    and is placed just before the clear, so the alarm is not shown active. (A guard: the
    previous code wrote the backlog at its own time.)"""
    gw = "gw-away"
    settings = make_settings(tmp_path, broker, victoria)
    with subscribed(settings) as service:
        now = time.time_ns()
        gateway.send(event(gw, 21, now, False))  # live first
        wait_for(lambda: service.status()["acked"] == 1, what="the live clear")
        gateway.send(event(gw, 20, now - 2 * DAY, True))  # then the backlog
        wait_for(lambda: service.status()["acked"] == 2, what="the backlog's raise")
        time.sleep(HIDDEN_S)
        [seq] = victoria.export(f'{{__name__="alarm_events_seq",gateway="{gw}"}}')
        # 1 ms (and a ns for the seq below) before the clear, its own time kept
        assert seq["timestamps"] == [(now - 1_000_001) // 10**6, now // 10**6]
        assert seq["values"] == [20, 21]
        stamps = values(victoria, "alarm_events_gateway_ts")
        assert stamps == {(now - 1_000_001) // 10**6: pytest.approx(now - 2 * DAY, abs=2048)}
        assert active_at(victoria, time.time_ns()) == []


def test_the_order_of_an_alarms_events_survives_an_ingest_restart(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway) -> None:
    """Raised while the gateway's clock ran 3 minutes ahead (within what is written at its
    own time); the ingest restarts; the clear, stamped after NTP set the clock back, is placed
    after the raise — the order is kept on disk — so the alarm is not active when the raise's
    time comes."""
    gw = "gw-step"
    settings = make_settings(tmp_path, broker, victoria)
    raised = time.time_ns() + 180 * 10**9
    with subscribed(settings) as first:
        gateway.send(event(gw, 30, raised, True))
        wait_for(lambda: first.status()["acked"] == 1, what="the raise")
    with subscribed(settings) as second:
        gateway.send(event(gw, 31, time.time_ns(), False))
        wait_for(lambda: second.status()["acked"] == 1, what="the clear")
        victoria.flush()
        assert active_at(victoria, raised + 2 * 10**9) == []
        assert active_at(victoria, raised + DAY) == []
        [seq] = export_until(victoria, f'{{__name__="alarm_events_seq",gateway="{gw}"}}',
                             raised + HOUR)
        assert seq["values"] == [30, 31]  # the clear 1 ms after the raise, 3 minutes ahead
        assert seq["timestamps"] == [raised // 10**6, (raised + 1_000_000) // 10**6]


def test_one_gateways_alarm_flood_keeps_anothers_order(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Past 100,000 alarms (here 20) the ordering memory was cleared for every gateway: one
    gateway's flood of alarms, then another's clear after its clock stepped back, and that
    other's alarm stayed active. Now a gateway's flood costs only its own memory."""
    import gateway.ingest.alarmorder as alarmorder

    monkeypatch.setattr(alarmorder, "PER_GATEWAY", 20)
    settings = make_settings(tmp_path, broker, victoria)
    with subscribed(settings) as service:
        now = time.time_ns()
        gateway.send(event("gw-calm", 5, now - 10 * 10**9, True))
        for n in range(25):
            gateway.send(event("gw-flood", 100 + n, now - 5 * 10**9, False,
                               subject=f"h2-{n}.concentration"))
        gateway.send(event("gw-calm", 6, now - 60 * 10**9, False))  # clock stepped back
        wait_for(lambda: service.status()["acked"] == 27, what="all acknowledged")
        time.sleep(HIDDEN_S)
        assert active_at(victoria, time.time_ns()) == []
        assert len(service._timeline.order) == 21
