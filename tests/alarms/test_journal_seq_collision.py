"""An event whose sequence number is taken fails its commit instead of replacing the event
journalled before (liveness audit L2): two gateways on one state directory numbered from the
same last seq, and `INSERT OR REPLACE` silently overwrote the first one's events with the
second one's. (One gateway per state directory is now enforced too: gateway.service.instance.)
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from gateway.alarms.events import AlarmEvent, EventKind
from gateway.alarms.journal import Journal
from gateway.alarms.journal_batch import JournalBatch
from gateway.alarms.journal_schema import INSERT_EVENT, event_row
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.clock import ManualClock
from tests.alarms.conftest import MakeManager, ev


def event(seq: int, subject: str) -> AlarmEvent:
    return AlarmEvent(seq=seq, ts=1_000 + seq, kind=EventKind.ALARM, rule="env.temp_high",
                      subject=subject, state=AlarmState.ACTIVE_UNACKNOWLEDGED,
                      previous_state=AlarmState.NORMAL, value=41.0, severity=Severity.MAJOR,
                      actor="system", note=None, first_out=True, room="room1",
                      title="hot")


def subjects(path: Path) -> list[tuple[int, str]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT seq, subject FROM events ORDER BY seq").fetchall()


def test_inserting_a_taken_seq_raises(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "alarms.sqlite", clock=ManualClock())
    journal.close()
    with sqlite3.connect(tmp_path / "alarms.sqlite") as conn:
        conn.execute(INSERT_EVENT, event_row(event(7, "first")))
        try:
            conn.execute(INSERT_EVENT, event_row(event(7, "second")))
        except sqlite3.IntegrityError as exc:
            assert "UNIQUE" in str(exc)
        else:
            raise AssertionError("a second event with seq 7 was accepted")
    assert subjects(tmp_path / "alarms.sqlite") == [(7, "first")]


def test_a_second_writer_numbering_from_the_same_seq_fails_loudly(tmp_path: Path) -> None:
    path = tmp_path / "alarms.sqlite"
    clock = ManualClock()
    first, second = Journal(path, clock=clock), Journal(path, clock=clock)
    try:
        assert first.commit(JournalBatch(events=[event(1, "first")]))
        assert not second.commit(JournalBatch(events=[event(1, "second")]))
        assert second.last_error is not None and "UNIQUE" in second.last_error
        assert second.pending_events == 1  # kept, not lost: retried and logged
        assert subjects(path) == [(1, "first")]
        assert first.commit(JournalBatch(events=[event(2, "first again")]))
        assert subjects(path) == [(1, "first"), (2, "first again")]
    finally:
        first.close()
        second.close()


def test_two_alarm_managers_on_one_journal_do_not_overwrite_each_other(
        make_manager: MakeManager, journal_path: Path) -> None:
    one, other = make_manager(), make_manager()
    assert one.last_seq == other.last_seq == 0
    (raised,) = one.observe([ev(subject="one.temp")])
    (clash,) = other.observe([ev(subject="other.temp")])
    assert raised.seq == clash.seq == 1
    assert subjects(journal_path) == [(1, "one.temp")]
