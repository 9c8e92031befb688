"""Each alarm event says whether the gateway's wall clock was synchronised when it stamped it
(`AlarmEvent.clock_synced`), so the central ingest can tell a genuine backlog (an uplink down
for days, the clock right) from a clock restored to an old time (tests/ingest/
test_clock_backlog.py). The answer comes from `gateway.clocksync.synchronised` through a
`SyncedCache`: read again at most every `REFRESH_S` seconds, and at once after a wall-clock
step (NTP's first step after a boot), not at every event. The mark is journalled (a new
column: a journal written before it opens, migrates, and reads its events' mark as unknown)
and carried on the wire. Real SQLite journal files."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

import gateway.contract.wire as c
from gateway import clocksync
from gateway.alarms.journal import Journal
from gateway.alarms.manager import AlarmManager
from gateway.clock import ManualClock
from gateway.uplink.records import event_message, event_of
from tests.alarms.conftest import ev

H2 = ("explosion.h2_alarm", "h2-1.h2")


class SyncState:
    """`gateway.clocksync.synchronised` stood in: what it answers, and how often it is asked."""

    def __init__(self, synced: bool) -> None:
        self.synced = synced
        self.asked = 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.synced


@pytest.fixture
def sync(monkeypatch: pytest.MonkeyPatch) -> SyncState:
    state = SyncState(False)
    monkeypatch.setattr(clocksync, "synchronised", state)
    return state


def test_an_event_says_whether_the_clock_was_synchronised_when_it_was_stamped(
        tmp_path: Path, sync: SyncState) -> None:
    """Not synchronised at the raise: false. NTP synchronises and steps the clock: the next
    event says true at once. In between, the answer is cached — no read per event."""
    clock = ManualClock()
    journal = Journal(tmp_path / "alarms.sqlite", clock=clock,
                      synchronised=lambda: True)  # (its own question, for pruning: not counted)
    manager = AlarmManager(journal, clock)
    [raised] = manager.observe([ev(*H2)])
    assert raised.clock_synced is False
    asked = sync.asked
    sync.synced = True  # synchronised without a step (the clock was within 0.2 s)
    clock.advance(5.0)
    [acked] = manager.acknowledge([H2], "zhang", "checked")
    assert acked.clock_synced is False and sync.asked == asked  # cached, not asked again
    clock.advance(clocksync.REFRESH_S)
    [cleared] = manager.observe([ev(*H2, active=False)])
    assert cleared.clock_synced is True  # read again after REFRESH_S

    sync.synced = False  # `date -s`: the kernel sets STA_UNSYNC, the clock steps
    clock.step_wall(-3600.0)
    clock.advance(1.0)
    [again] = manager.observe([ev(*H2)])
    assert again.clock_synced is False  # the step made it ask at once
    sync.synced = True  # NTP's first synchronisation steps it back
    clock.step_wall(3600.0)
    [acked_again] = manager.acknowledge([H2], "zhang", "checked")
    assert acked_again.clock_synced is True

    journalled = manager.events_since(0)  # as the uplink reads them: from the journal
    assert [e.clock_synced for e in journalled[-5:]] == [False, False, True, False, True]
    manager.close()


def test_the_mark_travels_on_the_wire_and_an_old_gateways_message_has_none() -> None:
    clock = ManualClock()
    manager = AlarmManager(Journal(":memory:", clock=clock), clock,
                           clock_synced=lambda: True)
    [event] = manager.observe([ev(*H2)])
    for synced in (True, False, None):
        sent = dataclasses.replace(event, clock_synced=synced)
        payload = c.encode(event_message(sent, site="s", gateway="g"))
        assert (b'"clock_synced"' in payload) is (synced is not None)  # absent: unknown
        decoded = c.decode("roomwarden/s/g/alarms", payload)
        assert isinstance(decoded, c.AlarmEventMessage) and decoded.clock_synced is synced
        assert event_of(decoded) == sent
    manager.close()


BASE_EVENTS_DDL = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (1);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    rule TEXT NOT NULL,
    subject TEXT NOT NULL,
    state TEXT NOT NULL,
    previous_state TEXT NOT NULL,
    value TEXT,
    severity TEXT,
    actor TEXT NOT NULL,
    note TEXT,
    first_out INTEGER NOT NULL DEFAULT 0,
    room TEXT,
    title TEXT NOT NULL DEFAULT '',
    chattering INTEGER NOT NULL DEFAULT 0,
    drill INTEGER NOT NULL DEFAULT 0,
    clock_unsynced INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_ts ON events (ts);
CREATE INDEX events_key ON events (rule, subject, seq);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('last_seq', '2');
"""
"""The alarm journal's `events` table as the release before the mark made it (commit 11abe39,
gateway/alarms/journal_schema.py), with its schema version and last sequence number."""
BASE_INSERT = ("INSERT INTO events (seq, ts, kind, rule, subject, state, previous_state, value, "
               "severity, actor, note, first_out, room, title, chattering, drill, "
               "clock_unsynced) VALUES (?, ?, 'alarm', ?, ?, ?, ?, '30.0', 'critical', "
               "'system', NULL, 1, 'battery-1', 'Hydrogen', 0, 0, ?)")


def test_a_journal_of_the_release_before_opens_and_reads_its_events_mark_as_unknown(
        tmp_path: Path, sync: SyncState) -> None:
    path = tmp_path / "alarms.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(BASE_EVENTS_DDL)
        db.execute(BASE_INSERT, (1, 1_700_000_000 * 10**9, *H2, "active_unacknowledged",
                                 "normal", 0))
        db.execute(BASE_INSERT, (2, 1_700_000_100 * 10**9, *H2, "normal",
                                 "active_unacknowledged", 1))  # journalled unsynchronised
    db.close()
    clock = ManualClock(start_ns=1_700_000_200 * 10**9)
    journal = Journal(path, clock=clock)
    assert journal.recovery_note is None  # migrated, not taken for damage
    manager = AlarmManager(journal, clock)
    old = manager.events_since(0)
    assert [(e.seq, e.clock_synced) for e in old] == [(1, None), (2, None)]
    sent = c.decode("roomwarden/s/g/alarms", c.encode(event_message(old[0], site="s",
                                                                   gateway="g")))
    assert isinstance(sent, c.AlarmEventMessage) and sent.clock_synced is None  # without it
    sync.synced = True
    clock.step_wall(60.0)  # (NTP's step: the cached answer is read again)
    [new] = manager.observe([ev(*H2)])
    assert new.seq == 3 and new.clock_synced is True
    manager.close()

    with sqlite3.connect(path) as db:  # the file as it is now: the old rows NULL, unknown
        rows = db.execute("SELECT seq, clock_unsynced, clock_synced FROM events ORDER BY seq"
                          ).fetchall()
    db.close()
    assert rows == [(1, 0, None), (2, 1, None), (3, 0, 1)]
    again = Journal(path, clock=clock)  # and it opens again, already migrated
    assert again.recovery_note is None
    assert [e.clock_synced for e in again.events_since(0)] == [None, None, True]
    again.close()
