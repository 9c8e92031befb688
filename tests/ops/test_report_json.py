"""The status and health reports written without pydantic (gateway.ops.health_report,
gateway.ops.status_report, issue 15): `as_json` gives what pydantic's serializer gives for the
same classes (for any report: every field present or absent, unicode, floats of every kind),
a bare panel's health leaving out what it does not know; `read_status` (the CLI's side) reads it
back as the same report and refuses unknown keys; and the bytes are the ones 2264460's
pydantic models (`StatusReport`, `HealthReport`) wrote, recorded below, ints in float fields
written as floats as their validators made them."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from gateway.ops.health_report import CheckResult, HealthReport, Level, as_json
from gateway.ops.status_report import StatusReport, read_status


def text(value: object) -> str:
    """As the control socket and /healthz write it (NaN compares equal as text)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def pydantic_json(report: Any) -> Any:
    """pydantic's serializer for the report's class, less what it leaves out while None."""
    dumped = TypeAdapter(type(report)).dump_python(report, mode="json")
    health = dumped if isinstance(report, HealthReport) else dumped.get("health")
    for name in HealthReport.omit_none:
        if health is not None and health[name] is None:
            del health[name]
    return dumped


@settings(max_examples=300)
@given(report=st.from_type(StatusReport))
def test_a_status_report_is_written_as_pydantic_writes_it_and_read_back(
        report: StatusReport) -> None:
    written = report.model_dump(mode="json")
    assert text(written) == text(pydantic_json(report))
    assert text(as_json(read_status(json.loads(text(written))))) == text(written)


@settings(max_examples=300)
@given(report=st.from_type(HealthReport))
def test_a_health_report_is_written_as_pydantic_writes_it(report: HealthReport) -> None:
    assert text(as_json(report)) == text(pydantic_json(report))


GOLDEN = (
    '{"gateway":"gw-1","site":"site-1","name":null,"timezone":"Asia/Shanghai","software":'
    '"1.0","config_version":3,"config_sha256":"ababababababababababababababababababababab'
    'ababababababababababab","generated_ns":1796000000000000000,"uptime_s":12.0,"evaluati'
    'ons":7,"health":{"ok":true,"status":"alarm","checks":{"buses":{"status":"degraded","'
    'detail":"tcp: 1 offline (th-1); 1/2 devices online"},"uplink":{"status":"ok","detail'
    '":"connected; outbox 0"}},"service":"degraded","site":{"status":"alarm","active":2,"'
    'critical":1,"unacknowledged":1,"flood":false,"detail":"ALARM — 1 critical active (1 '
    'other alarm)"},"summary":"Service: degraded · Site: ALARM — 1 critical active (1 oth'
    'er alarm)"},"flood":false,"buses":[{"id":"tcp","type":"modbus_tcp","devices_online":'
    '1,"devices_total":2,"polls":40,"overruns":0,"requests":80,"last_poll_ms":3.0,"progre'
    'ss_age_s":0.25,"stall_limit_s":30.0,"link_open":true,"link_error":null,"devices":[{"'
    'id":"th-1","name":"机房 1","online":false,"polls":20,"failures":3,"consecutive_failure'
    's":3,"last_error":"timeout \\"x\\"","last_success_age_s":4.5},{"id":"th-2","name":null'
    ',"online":null,"polls":0,"failures":0,"consecutive_failures":0,"last_error":null,"la'
    'st_success_age_s":null}]}],"alarms":[{"rule":"fire.smoke_detector","subject":"smoke-'
    '1","title":"Smoke","severity":"critical","state":"shelved","room":"r1","since_ns":5,'
    '"acked_by":null,"first_out":false,"hidden":"latched"}],"outputs":[{"id":"siren","rol'
    'e":"siren","wanted":true,"commanded":true,"confirmed":null,"failed":false,"failures"'
    ':0,"last_error":null,"blocked_by":null,"block_reason":null,"reasons":["fire.smoke_de'
    'tector@smoke-1 (shelved)"]}],"uplink":{"connected":true,"outbox_depth":2,"outbox_byt'
    'es":100,"outbox_budget":1000,"oldest_age_s":0.0,"dropped":{"telemetry":1},"published'
    '":9,"last_error":null,"subscribed":true,"refused":{}}}')
"""2264460's (the pydantic model's) `StatusReport.model_validate(RAW).model_dump(mode="json")`,
compact."""
RAW: dict[str, Any] = {
    "gateway": "gw-1", "site": "site-1", "name": None, "timezone": "Asia/Shanghai",
    "software": "1.0", "config_version": 3, "config_sha256": "ab" * 32,
    "generated_ns": 1_796_000_000_000_000_000, "uptime_s": 12,
    "evaluations": 7,
    "health": {"ok": True, "status": "alarm", "checks": {
        "buses": {"status": "degraded", "detail": "tcp: 1 offline (th-1); 1/2 devices online"},
        "uplink": {"status": "ok", "detail": "connected; outbox 0"}},
        "service": "degraded", "site": {"status": "alarm", "active": 2, "critical": 1,
                                        "unacknowledged": 1, "flood": False,
                                        "detail": "ALARM — 1 critical active (1 other alarm)"},
        "summary": "Service: degraded · Site: ALARM — 1 critical active (1 other alarm)"},
    "flood": False,
    "buses": [{"id": "tcp", "type": "modbus_tcp", "devices_online": 1, "devices_total": 2,
               "polls": 40, "overruns": 0, "requests": 80, "last_poll_ms": 3,
               "progress_age_s": 0.25, "stall_limit_s": 30, "link_open": True,
               "link_error": None,
               "devices": [{"id": "th-1", "name": "机房 1", "online": False, "polls": 20,
                            "failures": 3, "consecutive_failures": 3,
                            "last_error": "timeout \"x\"", "last_success_age_s": 4.5},
                           {"id": "th-2", "online": None, "polls": 0, "failures": 0,
                            "consecutive_failures": 0, "last_error": None,
                            "last_success_age_s": None}]}],
    "alarms": [{"rule": "fire.smoke_detector", "subject": "smoke-1", "title": "Smoke",
                "severity": "critical", "state": "shelved", "room": "r1",
                "since_ns": 5, "hidden": "latched"}],
    "outputs": [{"id": "siren", "role": "siren", "wanted": True, "commanded": True,
                 "confirmed": None, "failed": False, "failures": 0, "last_error": None,
                 "reasons": ["fire.smoke_detector@smoke-1 (shelved)"]}],
    "uplink": {"connected": True, "outbox_depth": 2, "outbox_bytes": 100,
               "outbox_budget": 1000, "oldest_age_s": 0, "dropped": {"telemetry": 1},
               "published": 9, "last_error": None, "subscribed": True},
}


def test_the_bytes_are_the_models_bytes() -> None:
    report = read_status(RAW)
    assert text(report.model_dump(mode="json")) == GOLDEN
    # as the gateway makes it: ints where floats go (a stall limit set to 30, an empty outbox)
    assert report.uplink is not None
    made = dataclasses.replace(
        report, uptime_s=12, uplink=dataclasses.replace(report.uplink, oldest_age_s=0),
        buses=[dataclasses.replace(report.buses[0], last_poll_ms=3, stall_limit_s=30)])
    assert text(made.model_dump(mode="json")) == GOLDEN
    assert text(as_json(HealthReport(ok=True, status=Level.OK, checks={}))) == \
        '{"ok":true,"status":"ok","checks":{}}'  # a bare panel's /healthz


@pytest.mark.parametrize("where", [(), ("health",), ("health", "checks", "buses"),
                                   ("buses", 0), ("buses", 0, "devices", 1), ("alarms", 0),
                                   ("outputs", 0), ("uplink",)])
def test_the_reader_refuses_unknown_keys(where: tuple[str | int, ...]) -> None:
    raw = json.loads(GOLDEN)
    part = raw
    for key in where:
        part = part[key]
    part["surprise"] = 1
    with pytest.raises(ValidationError, match="surprise"):
        read_status(raw)


def test_checks_compare_as_before() -> None:
    """What the callers read: a check's status is its level, and the level its word."""
    check = CheckResult(status=Level.DEGRADED, detail="x")
    assert check.status == "degraded" and as_json(check) == {"status": "degraded",
                                                               "detail": "x"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        check.detail = "y"  # type: ignore[misc]
