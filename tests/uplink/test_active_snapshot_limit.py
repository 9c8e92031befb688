"""The active-alarm snapshot never drops everything (the alarm lifecycle audit, F5: with 2,061
alarms not normal — suppressions had listed every binding they covered — the snapshot broke the
contract's limit of 2,000 and was rejected whole, so the central side got none, not even the
real critical fire). More alarms than the limit: the most important are sent (annunciated
before overlaid, a real alarm before a drill's, then severity, then the most recent), the
snapshot says how many were left out (`omitted`) and the gateway logs it, at most once a
minute."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alarms.events import AlarmView
from gateway.alarms.journal import Journal
from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.alarms.manager import AlarmManager
from gateway.alarms.types import Evaluation, Severity
from gateway.clock import ManualClock
from gateway.contract import wire as c
from gateway.uplink.items import Item
from gateway.uplink.state import StatePublisher, most_important
from tests.uplink import strategies as s

SITE, GATEWAY = "bench", "gw-1"
LIMIT = c.MAX_ACTIVE_ALARMS


def publisher(clock: ManualClock, sent: list[Item], rejected: list[str]) -> StatePublisher:
    catalog = c.CatalogReport.build(site=SITE, gateway=GATEWAY, produced=0, points={})

    def no_delivery() -> c.DeliveryTerms:
        raise AssertionError("not asked for the snapshot")

    return StatePublisher(
        SITE, GATEWAY, clock, catalog, interval=60.0, send=sent.append,
        outbox=lambda: (c.OutboxFigures(depth=0, bytes=0, budget=0), {}),
        delivery=no_delivery, on_reject=rejected.append)


def evaluation(rule: str, subject: str, room: str, severity: Severity, ts: int,
               active: bool = True) -> Evaluation:
    return Evaluation(rule=rule, subject=subject, active=active, value=1.0, severity=severity,
                      ts=ts, title=f"{rule} on {subject}", room=room, actions=("siren",),
                      latching=False)


def test_more_alarms_than_the_limit_send_the_most_important(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A critical fire (the oldest activation), 40 annunciated major alarms, and 2,100 minor
    ones active and then suppressed for maintenance: 2,141 alarms not normal."""
    clock = ManualClock()
    manager = AlarmManager(Journal(tmp_path / "alarms.sqlite", clock=clock), clock)
    fire = AlarmKey("fire.smoke_coincidence", "batt-1")
    manager.observe([evaluation(fire.rule, fire.subject, "batt-1", Severity.CRITICAL,
                                clock.now_ns())])
    clock.advance(1)
    manager.observe([evaluation("sensor_health.implausible", f"th-{i}.t", "hall",
                                Severity.MINOR, clock.now_ns()) for i in range(2100)])
    manager.suppress("hall", "op", "sensor recalibration", clock.now_ns() + 3600 * 10**9)
    clock.advance(1)
    manager.observe([evaluation("env.temp_high", f"th-{i}.t", "aisle", Severity.MAJOR,
                                clock.now_ns()) for i in range(40)])
    views = manager.active()
    assert len(views) == 2141 and views[0].key == fire

    sent: list[Item] = []
    rejected: list[str] = []
    up = publisher(clock, sent, rejected)
    with caplog.at_level(logging.WARNING, logger="roomwarden.uplink"):
        up.set_active_alarms(views, seq=manager.last_seq)
    snap = up.snapshot
    assert snap is not None and rejected == [], rejected
    assert [item.payload for item in sent] == [snap]
    assert len(snap.alarms) == LIMIT and snap.omitted == 2141 - LIMIT
    assert snap.alarms[0].rule == fire.rule and snap.alarms[0].subject == fire.subject
    assert snap.alarms[0].state is AlarmState.ACTIVE_UNACKNOWLEDGED
    kept = {(a.rule, a.subject) for a in snap.alarms}
    annunciated = [v for v in views if v.state.annunciated]
    assert len(annunciated) == 41 and all(v.key in kept for v in annunciated)
    assert all(v.state is AlarmState.SUPPRESSED for v in views if v.key not in kept)
    # in the order of the alarm list, as before
    assert [(a.rule, a.subject) for a in snap.alarms] == [v.key for v in views
                                                          if v.key in kept]
    # the contract's own parser (the ingest's, a dashboard's) takes it
    topic = c.Topic(SITE, GATEWAY, c.Channel.ALARMS_ACTIVE)
    decoded = c.decode(topic, snap.encode())  # (the uplink's bytes: the model's, issue 15)
    assert isinstance(decoded, c.ActiveAlarmsSnapshot) and c.encode(decoded) == snap.encode()
    assert [(a.rule, a.subject) for a in decoded.alarms] == [(a.rule, a.subject)
                                                             for a in snap.alarms]
    (line,) = [r.getMessage() for r in caplog.records]
    assert "event=uplink_active_alarms_truncated" in line and "omitted=141" in line
    manager.close()


def test_a_snapshot_within_the_limit_is_as_before() -> None:
    clock = ManualClock()
    sent: list[Item] = []
    up = publisher(clock, sent, [])
    up.set_active_alarms([], seq=3)
    assert up.snapshot is not None and up.snapshot.omitted is None
    assert b"omitted" not in up.snapshot.encode()


def test_the_left_out_alarms_are_logged_at_most_once_a_minute(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    views = [AlarmView(key=AlarmKey("r", f"s{i}"), state=AlarmState.SUPPRESSED, condition=True,
                       value=1.0, severity=Severity.MINOR, title="t", room=None, actions=(),
                       latching=False, chattering=False, activated_ns=None, acked_by=None,
                       acked_ns=None, shelf=None, suppression="x", out_of_service=None,
                       first_out=False, flood_first_out=False, demanded_roles=frozenset(),
                       acknowledgeable=False) for i in range(LIMIT + 5)]
    sent: list[Item] = []
    up = publisher(clock, sent, [])
    with caplog.at_level(logging.WARNING, logger="roomwarden.uplink"):
        for step in (0.0, 30.0, 29.0, 2.0):  # at 0, 30, 59 and 61 s
            clock.advance(step)
            up.set_active_alarms(views, seq=2)
    assert len(sent) == 4, "a snapshot every time"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all("omitted=5" in line for line in lines), lines


def rank(a: c.ActiveAlarm) -> tuple[bool, bool, int, int]:
    """The documented order of importance, written out again."""
    return (not a.state.annunciated, a.drill, a.severity.level, -(a.activated or 0))


@settings(max_examples=300)
@given(alarms=st.lists(s.active_alarm.flatmap(
           lambda a: st.booleans().map(lambda d: a.model_copy(update={"drill": d}))),
           max_size=12),
       limit=st.integers(0, 12))
def test_most_important_keeps_the_limit_in_order_and_the_best(
        alarms: list[c.ActiveAlarm], limit: int) -> None:
    kept, omitted = most_important(alarms, limit)
    assert len(kept) == min(limit, len(alarms)) and omitted == len(alarms) - len(kept)
    # a subsequence of the input, in its order
    it = iter(range(len(alarms)))
    positions = [next(i for i in it if alarms[i] is a) for a in kept]
    dropped = [a for i, a in enumerate(alarms) if i not in positions]
    assert not kept or not dropped or max(map(rank, kept)) <= min(map(rank, dropped))
