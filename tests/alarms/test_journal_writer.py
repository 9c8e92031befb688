"""The alarm journal's writer thread (gateway.alarms.journal_writer; liveness audit L1), on a
real file with a second connection holding `BEGIN IMMEDIATE` on it — what a technician's
`sqlite3` session does: the manager's calls return at once, what waits to be written is read
back and shown, it is written (and the loop told) once the lock goes, a close under the lock is
bounded, and a new alarm manager on the journal (a config apply) reads what was just handed
over."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.alarms import journal_writer
from gateway.alarms.journal import Journal
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.manager import AlarmManager
from gateway.clock import ManualClock
from tests.alarms.conftest import ev
from tests.helpers import Locker


def in_file(path: Path) -> list[int]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT seq FROM events ORDER BY seq")]


async def wait_for(condition: Callable[[], object], seconds: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_locked_file_holds_no_call_and_is_written_once_free(
        journal: Journal, journal_path: Path, clock: ManualClock) -> None:
    told: list[int] = []
    manager = AlarmManager(journal, clock)
    journal.start_writer(asyncio.get_running_loop(), lambda: told.append(journal.durable_seq))
    locker = Locker(journal_path)
    try:
        began = time.monotonic()
        (raised,) = manager.observe([ev()])
        (acked,) = manager.acknowledge(("env.temp_high", "th-1.temp"), "op", "seen")
        assert time.monotonic() - began < 0.2  # handed over: SQLite's lock not waited for
        await wait_for(lambda: journal.failing_for() is not None, 5)
        assert journal.last_error == "database is locked"
        assert journal.pending_events == 2 and journal.durable_seq == 0
        assert [e.seq for e in journal.events_since(0)] == [raised.seq, acked.seq]
        assert in_file(journal_path) == [] and told == []
    finally:
        locker.release()
    await wait_for(lambda: journal.durable_seq == acked.seq, journal_writer.RETRY_MAX + 3)
    await wait_for(lambda: told, 2)
    assert told[-1] == acked.seq and journal.pending_events == 0
    assert journal.failing_for() is None and journal.unwritten_for() == 0
    assert in_file(journal_path) == [raised.seq, acked.seq]


async def test_a_close_under_the_lock_is_bounded_and_says_what_is_lost(
        journal: Journal, journal_path: Path, clock: ManualClock,
        caplog: pytest.LogCaptureFixture) -> None:
    manager = AlarmManager(journal, clock)
    journal.start_writer(asyncio.get_running_loop(), lambda: None)
    locker = Locker(journal_path)
    try:
        manager.observe([ev()])
        await wait_for(lambda: journal.failing_for() is not None, 5)
        began = time.monotonic()
        await asyncio.to_thread(manager.close)
        took = time.monotonic() - began
    finally:
        locker.release()
    assert took < journal_writer.CLOSE_WAIT
    assert "event=alarm_journal_unwritten_at_close events=1" in caplog.text
    assert in_file(journal_path) == []  # (the alarm is evaluated again at the next start)


async def test_a_new_manager_on_the_journal_reads_what_was_just_handed_over(
        journal: Journal, clock: ManualClock) -> None:
    """A config apply builds the new core's alarm manager on the running journal: it must
    find the alarm the old manager journalled a moment ago (gateway.safety `take_over`)."""
    old = AlarmManager(journal, clock)
    journal.start_writer(asyncio.get_running_loop(), lambda: None)
    (raised,) = old.observe([ev()])
    new = AlarmManager(journal, clock)  # loads from the file, the writer's work included
    assert new.get(("env.temp_high", "th-1.temp")).state is AlarmState.ACTIVE_UNACKNOWLEDGED
    assert new.last_seq == raised.seq


async def test_pruning_runs_on_the_writer(journal: Journal, clock: ManualClock,
                                          caplog: pytest.LogCaptureFixture) -> None:
    journal.max_events = 2
    manager = AlarmManager(journal, clock, prune_interval=10.0)
    journal.start_writer(asyncio.get_running_loop(), lambda: None)
    caplog.set_level(logging.INFO, logger="gateway.alarms.journal")
    for i in range(4):
        manager.observe([ev(subject=f"p{i}")])
    clock.advance(11)
    manager.tick()
    await wait_for(lambda: "event=alarm_journal_pruned events=2" in caplog.text, 5)
    assert journal.count_events() == 2
