"""The daemon's alarm log lines (gateway.alarmlog): one per event, but in a flood only the
critical ones and the flood's start and end, with a summary a minute (the wear audit: a storm
wrote 667 lines a minute into journald, on the gateway's SD card)."""

from __future__ import annotations

import logging

import pytest

from gateway.alarmlog import SUMMARY_EVERY, AlarmLogLines
from gateway.alarms.events import AlarmEvent, EventKind
from gateway.clock import ManualClock
from gateway.contract.enums import AlarmState, Severity

LOGGER = "roomwarden.test_alarmlog"


def event(seq: int, kind: EventKind = EventKind.ALARM,
          severity: Severity | None = Severity.MAJOR) -> AlarmEvent:
    return AlarmEvent(seq=seq, ts=seq, kind=kind, rule="env.temp_high", subject=f"th-{seq}.t",
                      state=AlarmState.ACTIVE_UNACKNOWLEDGED, previous_state=AlarmState.NORMAL,
                      value=40.0, severity=severity, actor="system", note=None,
                      first_out=False, room="tx-3f", title="High temperature")


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_every_event_is_logged_outside_a_flood(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    writer = AlarmLogLines(logging.getLogger(LOGGER), lambda: False, ManualClock().monotonic)
    writer.write([event(i) for i in range(20)])
    assert len(lines(caplog)) == 20
    assert all(line.startswith("event=alarm_alarm rule=env.temp_high") for line in lines(caplog))


def test_a_flood_logs_critical_events_its_start_and_end_and_a_summary_a_minute(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = ManualClock()
    flooding = [True]
    writer = AlarmLogLines(logging.getLogger(LOGGER), lambda: flooding[0], clock.monotonic)
    writer.write([event(0, EventKind.FLOOD_START, None)])
    for minute in range(3):
        for second in range(0, 60, 15):  # a storm: 100 events every 15 s
            writer.write([event(1000 * minute + 10 * second + i) for i in range(100)])
            clock.advance(15.0)
    writer.write([event(9999, severity=Severity.CRITICAL)])  # a fire is never held back
    flooding[0] = False
    writer.write([event(10_000, EventKind.FLOOD_END, None)])
    got = lines(caplog)
    assert got[0].startswith("event=alarm_flood_start")
    summaries = [line for line in got if line.startswith("event=alarm_log_summary")]
    assert len(summaries) == 3, got  # a minute apart, each counting what it held back
    assert sum(int(s.split("not_logged=")[1].split()[0]) for s in summaries) == 1200
    assert any("severity=critical" in line for line in got)
    assert got[-1].startswith("event=alarm_flood_end")
    assert len(got) == 1 + 3 + 1 + 1  # start, summaries, the critical event, end
    assert writer.held_back == 0 and writer.held_back_total == 1200
    assert SUMMARY_EVERY == 60.0


def test_what_a_short_flood_held_back_is_summed_up_when_it_ends(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = ManualClock()
    flooding = [True]
    writer = AlarmLogLines(logging.getLogger(LOGGER), lambda: flooding[0], clock.monotonic)
    writer.write([event(i) for i in range(40)])
    clock.advance(10.0)
    assert lines(caplog) == []
    flooding[0] = False
    writer.write([event(100, EventKind.FLOOD_END, None)])
    got = lines(caplog)
    assert got[0].startswith("event=alarm_flood_end")
    assert got[1].startswith("event=alarm_log_summary not_logged=40 flood=False")
    writer.write([event(101)])  # and every event is logged again
    assert lines(caplog)[-1].startswith("event=alarm_alarm")
