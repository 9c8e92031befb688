"""A read of the alarm journal while its writer thread commits (CI, 2026-12-06: the panel's
unshelve was answered, and `events_since` then missed its event): the query ran before the
commit and the list of unwritten events was read after it, so the event was in neither. What
waits to be written is read first: an event that has left that list was committed before the
query began, and the query sees it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.alarms import journal_writer
from gateway.alarms.journal import Journal
from gateway.alarms.manager import AlarmManager
from gateway.clock import ManualClock
from tests.alarms.conftest import ev
from tests.helpers import Locker


def commit_after_each_query(journal: Journal, locker: Locker,
                            monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """After the reader's query and before the rest of the read, the other process lets go of
    the file and the journal's writer thread commits what waits."""
    reading = journal._reading
    committed: list[bool] = []

    @contextlib.contextmanager
    def query_then_commit() -> Iterator[object]:
        with reading() as conn:
            yield conn
        if not committed:
            locker.release()
            deadline = time.monotonic() + journal_writer.RETRY_MAX + 3
            while journal.pending_events and time.monotonic() < deadline:
                time.sleep(0.01)
            committed.append(journal.pending_events == 0)

    monkeypatch.setattr(journal, "_reading", query_then_commit)
    return committed


async def test_an_event_committed_during_a_read_is_in_the_read(
        journal: Journal, journal_path: Path, clock: ManualClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    manager = AlarmManager(journal, clock)
    journal.start_writer(asyncio.get_running_loop(), lambda: None)
    locker = Locker(journal_path)  # the writer thread cannot write: the event waits
    (raised,) = manager.observe([ev()])
    assert journal.pending_events == 1
    committed = commit_after_each_query(journal, locker, monkeypatch)
    assert [e.seq for e in journal.events_since(0)] == [raised.seq]
    assert committed == [True]


async def test_the_last_event_committed_during_a_read_is_found(
        journal: Journal, journal_path: Path, clock: ManualClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    manager = AlarmManager(journal, clock)
    journal.start_writer(asyncio.get_running_loop(), lambda: None)
    locker = Locker(journal_path)
    (raised,) = manager.observe([ev()])
    committed = commit_after_each_query(journal, locker, monkeypatch)
    last = journal.last_event("env.temp_high", "th-1.temp")
    assert last is not None and last.seq == raised.seq
    assert committed == [True]
