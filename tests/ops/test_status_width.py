"""`roomwarden status` fits 80 columns and uses a wider terminal (issue 14): an alarm's time
and age are never cut, whatever the width."""

from __future__ import annotations

import dataclasses

from gateway.ops.status_report import build_status_report
from gateway.ops.status_text import render_status
from gateway.sim.signals import Constant
from tests.ops.conftest import Live, until
from tests.ops.test_status_report import columns


async def test_alarm_age_is_whole_at_80_and_200_columns(live: Live) -> None:
    gw = live.gateway
    live.site.set_signal("smoke-1.alarm", Constant(value=True))
    await until(lambda: any(v.key.rule == "fire.smoke_detector"
                            for v in gw.core.alarms.active()), "the smoke alarm")
    report = build_status_report(gw)
    for width in (80, 200):
        lines = render_status(report, color=False, width=width).splitlines()
        assert max(columns(line) for line in lines) <= width
        [index] = [i for i, line in enumerate(lines) if "fire.smoke_detector" in line]
        when = lines[index + 1].strip().split(" · ")[0]  # since MM-DD HH:MM:SS TZ (age)
        assert when.startswith("since ") and when.endswith(")") and "…" not in when, when
    long = dataclasses.replace(report, name="Guangzhou Tianhe exchange " * 6)
    narrow = render_status(long, color=False, width=80).splitlines()
    wide = render_status(long, color=False, width=200).splitlines()
    assert max(columns(line) for line in narrow) <= 80
    assert 80 < max(columns(line) for line in wide) <= 200  # a wide terminal is used
