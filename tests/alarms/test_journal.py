"""The SQLite journal: restart without storms, batched commits, recovery, pruning."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.alarms.events import EventKind
from gateway.alarms.journal import Journal
from gateway.alarms.journal_batch import JournalBatch
from gateway.alarms.journal_schema import SCHEMA_VERSION
from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.alarms.manager import AlarmManager
from gateway.clock import ManualClock
from tests.alarms.conftest import MakeManager, ev

AU = AlarmState.ACTIVE_UNACKNOWLEDGED
AA = AlarmState.ACTIVE_ACKNOWLEDGED
K = AlarmKey("env.temp_high", "th-1.temp")
HOUR = 3600 * 10**9


def test_schema_and_pragmas(manager: AlarmManager, journal_path: Path) -> None:
    conn = sqlite3.connect(journal_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"events", "alarm_state", "shelves", "suppressions", "meta"} <= tables
    indices = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"events_ts", "events_key", "shelves_open", "suppressions_open"} <= indices


def test_restart_restores_without_refiring(make_manager: MakeManager,
                                           clock: ManualClock) -> None:
    first = make_manager()
    evaluations = [ev(subject="acked"), ev(subject="unacked"), ev(subject="returned"),
                   ev(subject="shelved"), ev("r2", "dev9.x", room="room9"),
                   ev(subject="oos"), ev(subject="latched", latching=True),
                   ev(subject="quiet", active=False)]
    first.observe(evaluations)
    first.acknowledge(("env.temp_high", "acked"), "alice")
    first.shelve(("env.temp_high", "shelved"), "bob", clock.now_ns() + HOUR, "noisy")
    first.suppress("room9", "carol", "hot work", clock.now_ns() + HOUR)
    first.set_out_of_service(("env.temp_high", "oos"), "dave", "broken")
    evaluations[2] = ev(subject="returned", active=False)
    evaluations[6] = ev(subject="latched", latching=True, active=False)
    first.observe(evaluations)
    before = {v.key: v for v in first.active()}
    last = first.last_seq
    first.close()

    second = make_manager()
    assert {v.key: v for v in second.active()} == before
    assert second.last_seq == last
    assert second.observe(evaluations) == []
    assert {v.key: v for v in second.active()} == before
    view = second.get(("env.temp_high", "acked"))
    assert view.state is AA and view.acked_by == "alice"
    assert second.get(("env.temp_high", "shelved")).shelf is not None
    assert [s.scope for s in second.suppressions()] == ["room9"]
    # commands keep working on restored alarms, and the sequence continues
    (e,) = second.acknowledge(("env.temp_high", "unacked"), "alice")
    assert e.seq == last + 1
    clock.advance(3600)
    kinds = [e.kind for e in second.tick()]
    assert EventKind.SUPPRESSION_END in kinds


def test_one_transaction_per_call(manager: AlarmManager) -> None:
    commits: list[JournalBatch] = []
    journal: Journal = manager._journal
    original = journal.commit

    def spy(batch: JournalBatch, *args: object, **kwargs: object) -> bool:
        commits.append(batch)
        return original(batch, *args, **kwargs)  # type: ignore[arg-type]

    journal.commit = spy  # type: ignore[method-assign]
    events = manager.observe([ev(subject=f"p{i}") for i in range(50)])
    assert sum(e.kind is EventKind.ALARM for e in events) == 50  # and the flood start
    assert len(commits) == 1
    manager.observe([ev(subject=f"p{i}") for i in range(50)])
    assert len(commits) == 1  # nothing changed: no commit at all


def test_corrupt_journal_is_moved_aside(journal_path: Path, clock: ManualClock) -> None:
    journal_path.write_bytes(b"this is not a database" * 500)
    manager = AlarmManager(Journal(journal_path, clock=clock), clock)
    aside = list(journal_path.parent.glob("alarms.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
    (e,) = manager.events_since(0)
    assert e.kind is EventKind.JOURNAL and "moved aside" in (e.note or "")
    seq = e.seq
    assert seq > 1_000_000  # stays above anything the lost file may have held
    (a,) = manager.observe([ev()])
    assert a.seq == seq + 1
    manager.close()


def test_corrupt_pages_are_detected(make_manager: MakeManager, journal_path: Path) -> None:
    manager = make_manager()
    manager.observe([ev(subject=f"p{i}", title="x" * 200) for i in range(300)])
    manager.close()
    data = bytearray(journal_path.read_bytes())
    for offset in range(4096, len(data), 4096):  # scribble over every page but the header
        data[offset + 8: offset + 64] = b"\xff" * 56
    journal_path.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        Path(str(journal_path) + suffix).unlink(missing_ok=True)
    again = make_manager()
    assert any(e.kind is EventKind.JOURNAL for e in again.events_since(0))
    assert again.active() == []


def test_unusable_directory_falls_back_to_memory(tmp_path: Path, clock: ManualClock) -> None:
    target = tmp_path / "missing-dir" / "alarms.sqlite"
    manager = AlarmManager(Journal(target, clock=clock), clock)
    (e,) = manager.events_since(0)
    assert e.kind is EventKind.JOURNAL and "memory" in (e.note or "")
    assert len(manager.observe([ev()])) == 1


def test_runtime_corruption_recovers_and_rewrites_state(make_manager: MakeManager,
                                                       journal_path: Path,
                                                       clock: ManualClock) -> None:
    manager = make_manager()
    manager.observe([ev(subject="a"), ev(subject="b")])
    manager.acknowledge(("env.temp_high", "a"), "op")
    journal: Journal = manager._journal

    def broken(*args: object) -> None:
        raise sqlite3.DatabaseError("database disk image is malformed")

    original = journal._write
    journal._write = broken  # type: ignore[assignment,method-assign]
    events = manager.observe([ev(subject="c")])
    assert len(events) == 1  # the alarm is not delayed by the journal
    journal._write = original  # type: ignore[method-assign]
    assert journal.needs_snapshot
    manager.observe([ev(subject="d")])  # journals the recovery, rewrites the state
    kinds = [e.kind for e in manager.events_since(0)]
    assert EventKind.JOURNAL in kinds
    before = {v.key: v.state for v in manager.active()}
    manager.close()
    again = make_manager()
    assert {v.key: v.state for v in again.active()} == before
    assert list(journal_path.parent.glob("alarms.sqlite.corrupt-*"))


def test_pruning(journal_path: Path, clock: ManualClock) -> None:
    """By age (the system clock synchronised: tests/alarms/test_journal_clock.py for when it
    is not) and by count; age is measured from the newest event, so the newest is kept."""
    journal = Journal(journal_path, clock=clock, retention_days=1, max_events=5,
                      synchronised=lambda: True)
    manager = AlarmManager(journal, clock, prune_interval=10.0)
    for i in range(4):
        manager.observe([ev(subject=f"old{i}")])
    clock.advance(2 * 86_400)
    for i in range(8):
        manager.observe([ev(subject=f"new{i}")])
    clock.advance(11)
    manager.tick()
    subjects = [e.subject for e in manager.events_since(0)]
    assert subjects == [f"new{i}" for i in range(3, 8)]
    assert journal.count_events() == 5
    # the newest event is a day older than the next: the older ones go, the sequence survives
    clock.advance(3 * 86_400)
    manager.observe([ev(subject="newest")])
    clock.advance(11)
    manager.tick()
    assert [e.subject for e in manager.events_since(0)] == ["newest"]
    last = manager.last_seq
    manager.close()
    again = AlarmManager(Journal(journal_path, clock=clock), clock)
    assert again.last_seq == last
    again.close()


def test_a_commit_that_failed_is_written_by_the_next_flush_or_at_close(
        make_manager: MakeManager, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The storage audit filled the disk: a panel acknowledgement silenced the siren but was
    never journalled — its batch waited for a next non-empty commit that never came — so after
    a restart the alarm was unacknowledged again and the siren sounded, unexplained. A failed
    commit is now retried at every flush (a round, a tick) and at close, and logged once a
    series (not once a round), then when it is written."""
    key = AlarmKey("env.temp_high", "th-1.temp")
    first = make_manager()
    first.observe([ev()])
    real_write = Journal._write
    full = sqlite3.OperationalError("database or disk is full")

    def disk_full(self: Journal, *args: object) -> None:
        raise full

    monkeypatch.setattr(Journal, "_write", disk_full)
    first.acknowledge(key, "op", "checked")
    for _ in range(5):
        first.tick()  # rounds while the disk is full: retried, logged once
    journal = first._journal
    assert journal.pending_events == 1 and journal.last_error == str(full)
    assert caplog.text.count("event=alarm_journal_write_failed") == 1
    monkeypatch.setattr(Journal, "_write", real_write)
    first.tick()  # space again: nothing new to journal, the pending ack is written
    assert journal.pending_events == 0 and "event=alarm_journal_write_recovered" in caplog.text
    first.close()
    assert make_manager().get(key).state is AlarmState.ACTIVE_ACKNOWLEDGED

    again = make_manager()
    monkeypatch.setattr(Journal, "_write", disk_full)
    again.observe([ev(active=False)])  # returns to normal (acknowledged): a pending event
    monkeypatch.setattr(Journal, "_write", real_write)
    again.close()  # no round came: the close writes it
    assert make_manager().active() == [], "back to normal, as journalled at the close"


def test_an_event_of_a_kind_this_version_does_not_know_is_skipped_not_a_crash(
        make_manager: MakeManager, journal_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A journal written by a newer version (an event kind added later), then a rollback to
    this one: the events it can read are handed on, the other is logged and skipped — the
    upgrade audit's rollback exited 1 on `ValueError: 'output' is not a valid EventKind` at
    every start, sending the journalled-but-unsent events."""
    first = make_manager()
    first.observe([ev(subject="a"), ev(subject="b")])
    last = first.last_seq
    first.close()
    with sqlite3.connect(journal_path) as db:
        db.execute("UPDATE events SET kind = 'future_kind', state = 'future_state' "
                   "WHERE seq = ?", (last - 1,))
    second = make_manager()
    with caplog.at_level("WARNING", logger="gateway.alarms.journal"):
        events = second.events_since(0)
    assert [e.seq for e in events] == [last]
    assert [e.subject for e in events] == ["b"]
    assert "event=alarm_journal_events_unreadable count=1" in caplog.text
    assert second.get(("env.temp_high", "a")).state is AU  # the alarm itself is restored


def test_a_journal_of_a_newer_schema_is_kept_whole_not_taken_for_damage(
        make_manager: MakeManager, journal_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A rollback to this version after a newer one bumped the schema: the file is kept under
    a name saying whose it is (the upgrade audit saw it named `corrupt`), a fresh one runs."""
    first = make_manager()
    first.observe([ev(subject="a")])
    first.close()
    with sqlite3.connect(journal_path) as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    second = make_manager()
    kept = [p for p in journal_path.parent.glob(f"alarms.sqlite.schema{SCHEMA_VERSION + 1}-*")
            if not p.name.endswith(("-wal", "-shm"))]  # (its -wal and -shm go with it)
    assert len(kept) == 1 and not list(journal_path.parent.glob("alarms.sqlite.corrupt-*"))
    notes = [r.getMessage() for r in caplog.records if "alarm_journal_recovered" in
             r.getMessage()]
    assert len(notes) == 1 and "newer RoomWarden" in notes[0] and str(kept[0]) in notes[0]
    assert second.last_seq > 0  # a fresh journal, numbers still increasing
    with sqlite3.connect(kept[0]) as db:  # whole: its events are all there
        assert db.execute("SELECT count(*) FROM events").fetchone()[0] >= 1

