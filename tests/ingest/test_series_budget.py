"""A gateway's series budget (central audit, finding 4: one gateway's 320,000 alarm events with
new subjects made 3.5 M VictoriaMetrics series and the fleet-wide alarm panels failed for every
site). Real mosquitto, the real ingest, a real VictoriaMetrics (`store: victoriametrics`, so
each alarm event writes `alarm_history` series too); the caps are scaled down by config."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.alarms.events import EventKind
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.contract import wire as c
from gateway.field.sample import Quality, Sample
from gateway.ingest.service import IngestService
from gateway.ingest.settings import IngestSettings
from tests.fixtures.services import Broker, Victoria, wait_for
from tests.ingest.test_service import NOW, SITE, Gateway, make_settings

BAD, GOOD = "gw-bad", "gw-good"
KEYS, TELEMETRY = 4, 6
"""The caps of this test: distinct alarm keys (rule, subject), telemetry series."""


@pytest.fixture
def gateway(broker: Broker) -> Iterator[Gateway]:
    gw = Gateway(broker)  # one client publishing both gateways' topics (no ACL here)
    yield gw
    gw.close()


def settings_for(tmp_path: Path, broker: Broker, victoria: Victoria) -> IngestSettings:
    settings = make_settings(tmp_path, broker, victoria, series_budget={
        "alarm_keys": KEYS, "alarm_series": 100, "telemetry_series": TELEMETRY})
    influx = settings.influx.model_copy(update={"store": "victoriametrics"})
    return settings.model_copy(update={"influx": influx})


def event(gw: str, seq: int, subject: str, state: AlarmState = AlarmState.ACTIVE_UNACKNOWLEDGED,
          *, actor: str = "system", note: str | None = None) -> c.AlarmEventMessage:
    clear = state is AlarmState.NORMAL
    return c.AlarmEventMessage(
        site=SITE, gateway=gw, seq=seq, ts=NOW + seq * 10**6, kind=EventKind.ALARM,
        rule="explosion.h2_alarm", subject=subject, state=state,
        previous_state=AlarmState.ACTIVE_ACKNOWLEDGED if clear else AlarmState.NORMAL,
        value=30, severity=Severity.CRITICAL, actor=actor, note=note, room="battery-1",
        title="Hydrogen", stream=7, dseq=seq)


def batch(gw: str, seq: int, points: list[str]) -> c.TelemetryBatch:
    ts = NOW + seq * 10**9
    return c.TelemetryBatch.from_samples(
        site=SITE, gateway=gw, seq=seq, produced=ts,
        samples=[Sample(p, 1.0, ts, Quality.GOOD) for p in points]
    ).model_copy(update={"stream": 8, "dseq": seq})


def subjects(vm: Victoria, gw: str) -> set[str]:
    return {s["metric"]["subject"]
            for s in vm.export(f'{{__name__="alarm_events_state_code",gateway="{gw}"}}')}


def history(vm: Victoria, gw: str) -> list[dict[str, str]]:
    return [s["metric"] for s in vm.export(f'{{__name__="alarm_history_seq",gateway="{gw}"}}')]


def dead_letters(settings: IngestSettings) -> list[dict[str, str]]:
    return [json.loads(line) for line in settings.dead_letter.read_text().splitlines()]


def refused(service: IngestService) -> float:
    value = service.metrics.dead.labels(reason="series_budget")._value.get()
    return float(value)


def test_a_gateway_past_its_caps_is_dead_lettered_while_another_is_stored(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="roomwarden.ingest")
    settings = settings_for(tmp_path, broker, victoria)
    service = IngestService(settings)
    service.start()
    flood = 10
    try:
        wait_for(lambda: bool(service.status()["subscribed"]), what="ingest subscribed")
        for n in range(1, flood + 1):  # a new subject each: KEYS pass, the rest are refused
            gateway.send(event(BAD, n, f"s{n}"))
        # telemetry: 4 new series pass, 4 more would pass the cap of 6, 2 more fit
        gateway.send(batch(BAD, 1, ["d.p1", "d.p2", "d.p3", "d.p4"]))
        gateway.send(batch(BAD, 2, ["d.p5", "d.p6", "d.p7", "d.p8"]))
        gateway.send(batch(BAD, 3, ["d.p1", "d.p5", "d.p6"]))
        for n in range(1, 4):  # the other gateway's alarms are stored
            gateway.send(event(GOOD, n, f"h2-{n}.lel"))
        total = flood + 3 + 3
        wait_for(lambda: service.status()["acked"] == total, timeout=30,
                 what="every message done (written or dead-lettered) and acknowledged")
        status = service.status()
        assert status["series_refused"] == flood - KEYS + 1
        assert status["dead_lettered"] == flood - KEYS + 1
        assert refused(service) == flood - KEYS + 1
        refusals = service.metrics.series_refused
        assert refusals.labels(site=SITE, gateway=BAD, cap="alarm_keys")._value.get() == \
            flood - KEYS
        assert refusals.labels(site=SITE, gateway=BAD,
                               cap="telemetry_series")._value.get() == 1
        assert service._writer.budget.held(SITE, BAD)["alarm_keys"] == KEYS
        assert service._writer.budget.held(SITE, BAD)["telemetry_series"] == TELEMETRY
    finally:
        service.stop()

    assert subjects(victoria, BAD) == {f"s{n}" for n in range(1, KEYS + 1)}
    assert subjects(victoria, GOOD) == {"h2-1.lel", "h2-2.lel", "h2-3.lel"}
    points = {s["metric"]["point"]
              for s in victoria.export(f'{{__name__="unclassified_value",gateway="{BAD}"}}')}
    assert points == {"d.p1", "d.p2", "d.p3", "d.p4", "d.p5", "d.p6"}
    records = dead_letters(settings)
    assert len(records) == flood - KEYS + 1
    alarm_records = [r for r in records if r["topic"].endswith("/alarms")]
    assert [json.loads(base64.b64decode(r["payload"]))["subject"]
            for r in alarm_records] == [f"s{n}" for n in range(KEYS + 1, flood + 1)]
    assert all(f"series budget: {SITE}/{BAD} has {KEYS} distinct alarm keys" in r["reason"]
               and "series_budget.alarm_keys" in r["reason"] for r in alarm_records)
    [telemetry] = [r for r in records if r["topic"].endswith("/telemetry")]
    assert "series_budget.telemetry_series" in telemetry["reason"]
    assert "would add 4 more" in telemetry["reason"]
    # logged once for the gateway, not once per refusal
    lines = [r.getMessage() for r in caplog.records
             if "event=series_budget_exceeded" in r.getMessage()]
    assert len(lines) == 1 and f"gateway={BAD}" in lines[0], lines


def test_a_known_alarm_clears_at_the_cap_and_a_restart_keeps_the_count(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway) -> None:
    settings = settings_for(tmp_path, broker, victoria)
    service = IngestService(settings)
    service.start()
    try:
        wait_for(lambda: bool(service.status()["subscribed"]), what="ingest subscribed")
        for n in range(1, KEYS + 1):
            gateway.send(event(BAD, n, f"s{n}"))
        gateway.send(event(BAD, KEYS + 1, "new-one"))  # past the cap
        # the known alarm s1 acknowledged and cleared by an operator with a note: new
        # alarm_history series (state, actor, note), an old key: written
        gateway.send(event(BAD, KEYS + 2, "s1", AlarmState.ACTIVE_ACKNOWLEDGED,
                           actor="zhang.wei", note="fan checked"))
        gateway.send(event(BAD, KEYS + 3, "s1", AlarmState.NORMAL, actor="zhang.wei",
                           note="sensor replaced"))
        wait_for(lambda: service.status()["acked"] == KEYS + 3, what="all done")
        assert service.status()["series_refused"] == 1
    finally:
        service.stop()
    states = {(h["subject"], h["state"]) for h in history(victoria, BAD)}
    assert ("s1", "normal") in states and ("s1", "active_acknowledged") in states
    assert "new-one" not in subjects(victoria, BAD)

    # a restart does not reset the count: a new key is still refused, a known one passes
    service = IngestService(settings)
    service.start()
    try:
        wait_for(lambda: bool(service.status()["subscribed"]), what="ingest subscribed again")
        gateway.send(event(BAD, KEYS + 4, "another-new-one"))
        gateway.send(event(BAD, KEYS + 5, "s2", AlarmState.NORMAL))
        wait_for(lambda: service.status()["acked"] == 2, what="both done")
        assert service.status()["series_refused"] == 1
    finally:
        service.stop()
    assert subjects(victoria, BAD) == {f"s{n}" for n in range(1, KEYS + 1)}
    assert ("s2", "normal") in {(h["subject"], h["state"]) for h in history(victoria, BAD)}
