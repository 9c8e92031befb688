"""The technician's status report of a real gateway: data that survives the control socket's
JSON, and a terminal view that names every bus, device and active alarm in ≤ 100 columns."""

from __future__ import annotations

import dataclasses
import re
import unicodedata

from gateway.ops.status_report import build_status_report, read_status
from gateway.ops.status_text import WIDTH, duration, render_status
from gateway.sim.faults import Fault, FaultMode
from gateway.sim.signals import Constant
from tests.ops.conftest import Live, until

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def columns(line: str) -> int:
    """Terminal columns of a line, counted here independently of the module."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
               for c in ANSI.sub("", line))


async def test_the_report_names_every_bus_device_and_active_alarm(live: Live) -> None:
    gw = live.gateway
    live.site.set_signal("smoke-1.alarm", Constant(value=True))
    live.site.set_fault("th-1", Fault(mode=FaultMode.NO_REPLY))
    await until(lambda: live.device_online("th-1") is False
                and any(v.key.rule == "fire.smoke_detector" for v in gw.core.alarms.active()),
                "th-1 offline and the smoke alarm")

    report = build_status_report(gw)
    # what the control socket sends and the CLI reads back
    assert read_status(report.model_dump(mode="json")) == report
    assert (report.gateway, report.site) == ("gw-ops-test", "ops-lab")
    assert (report.config_version, report.config_sha256) == (gw.config_version,
                                                             gw.config_sha256)
    assert report.health.status.value == "degraded"
    assert [b.id for b in report.buses] == [loop.bus_id for loop in gw.bus_loops]
    th1 = next(d for b in report.buses for d in b.devices if d.id == "th-1")
    assert th1.online is False and th1.failures >= 2 and th1.last_error
    assert {o.id for o in report.outputs} == {"siren-tx", "strobe-tx"}
    assert report.uplink is None

    text = render_status(report, color=False)
    lines = text.splitlines()
    assert max(columns(line) for line in lines) <= WIDTH
    assert "\x1b[" not in text
    for bus in report.buses:
        assert any(line.strip().startswith(bus.id) for line in lines), bus.id
        for device in bus.devices:
            assert any(device.id in line for line in lines), device.id
    [th1_line] = [line for line in lines if line.lstrip().startswith("✗ th-1 ")]
    assert "OFFLINE" in th1_line and th1.last_error[:15] in th1_line
    [alarm_line] = [line for line in lines if "fire.smoke_detector" in line]
    assert "MAJOR" in alarm_line and "active, unacked" in alarm_line
    assert "gw-ops-test (ops-lab)" in lines[0] and "DEGRADED" in text
    assert "Uplink: not configured" in text

    colored = render_status(report, color=True)
    assert "\x1b[" in colored
    assert ANSI.sub("", colored) == text  # colour adds codes, never moves a column


async def test_long_fields_are_cut_to_the_width(live: Live) -> None:
    report = build_status_report(live.gateway)
    long_error = "timeout " * 40 + "终" * 30
    buses = [dataclasses.replace(bus, devices=[dataclasses.replace(
        d, online=False, last_error=long_error) for d in bus.devices]) for bus in report.buses]
    report = dataclasses.replace(report, buses=buses, name="机房" * 80)
    text = render_status(report, color=True)
    assert max(columns(line) for line in text.splitlines()) <= WIDTH
    assert "…" in text


def test_durations_read_like_a_technician_writes_them() -> None:
    assert [duration(s) for s in (0.25, 42, 192, 7980, 273600)] == [
        "0.2 s", "42 s", "3m 12s", "2h 13m", "3d 04h"]
