"""Reading the alarm journal on the caller's thread (a mixin of `gateway.alarms.journal.Journal`):
the events since a sequence number (the uplink's resend, the flight recorder), an alarm's last
event, the count — each with what is handed over and not yet written merged in.

Before the writer thread runs the journal reads through its own connection; with the writer
running, through a connection of its own (`_reading`; opened on first use, and again after a
recovery replaced the file): in WAL mode a reader neither waits for the writer nor blocks it, so
a read on the event loop never waits for another process's write lock (liveness audit L1). A
journal kept in memory reads through the writer's connection under its lock (no disk to wait
for).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from gateway.alarms.events import AlarmEvent
from gateway.alarms.journal_batch import WriteBatch
from gateway.alarms.journal_schema import EVENT_COLUMNS, event_of
from gateway.storage import MEMORY, open_sqlite

if TYPE_CHECKING:
    from gateway.alarms.journal_writer import JournalWriter

log = logging.getLogger("gateway.alarms.journal")

READ_BUSY = 0.05
"""Seconds a read waits for a lock before it fails (in WAL mode only a recovery of the file
by another connection makes a reader wait)."""


class JournalReads:
    """Reading for `Journal` (the attributes below are the journal's)."""

    path: str
    _conn: sqlite3.Connection
    _conn_lock: threading.Lock
    _lock: threading.Condition
    _queued: WriteBatch
    _pending: WriteBatch
    _writer: JournalWriter | None
    _reader: sqlite3.Connection | None
    _read_lock: threading.Lock
    _generation: int
    _reader_generation: int

    @property
    def pending_events(self) -> int:
        """Events handed over and not yet written (a commit under way, or failed)."""
        with self._lock:
            return len(self._pending.events) + len(self._queued.events)

    @property
    def unwritten(self) -> bool:
        """Something handed over is not yet written."""
        with self._lock:
            return bool(self._pending or self._queued)

    def unwritten_for(self) -> float:
        """Seconds the oldest change not yet written has waited (0: none waits)."""
        with self._lock:
            since = self._pending.since if self._pending else self._queued.since
        return 0.0 if since is None else max(0.0, time.monotonic() - since)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A connection to read with: the journal's own before the writer runs (or in memory,
        under the writer's lock: no disk to wait for), else the reader (opened on use, again
        after a recovery replaced the file)."""
        if self._writer is None or self.path == MEMORY:
            with self._conn_lock:
                yield self._conn
            return
        with self._read_lock:
            if self._reader is None or self._reader_generation != self._generation:
                if self._reader is not None:
                    with contextlib.suppress(sqlite3.Error):
                        self._reader.close()
                    self._reader = None
                self._reader = open_sqlite(self.path, synchronous="NORMAL",
                                           busy_timeout=READ_BUSY)
                self._reader.execute("PRAGMA query_only=ON")
                self._reader_generation = self._generation
            try:
                yield self._reader
            except sqlite3.Error:
                self._reader_generation = -1  # opened afresh at the next read
                raise

    def _unwritten_events(self) -> list[AlarmEvent]:
        with self._lock:
            return [*self._pending.events, *self._queued.events]

    def events_since(self, seq: int, limit: int = 1000) -> list[AlarmEvent]:
        """Events with a sequence number above `seq`, oldest first (for the uplink), those not
        yet written included. What waits is read before the file: an event the writer thread
        commits meanwhile is in one or the other (it leaves the list only once committed)."""
        pending = [e for e in self._unwritten_events() if e.seq > seq]
        try:
            with self._reading() as conn:
                rows = conn.execute(
                    f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                    (seq, limit)).fetchall()
        except sqlite3.Error as exc:
            log.error("event=alarm_journal_read_failed error=%r", exc)
            rows = []
        events = _readable(rows)
        if pending:
            events = sorted({e.seq: e for e in [*events, *pending]}.values(),
                            key=lambda e: e.seq)[:limit]
        return events

    def last_event(self, rule: str, subject: str) -> AlarmEvent | None:
        """The newest event of (`rule`, `subject`) (the `events_key` index: one row read),
        None if there is none or the journal cannot be read now (what waits read first, as in
        `events_since`)."""
        pending = [e for e in self._unwritten_events() if e.rule == rule and e.subject == subject]
        try:
            with self._reading() as conn:
                rows = conn.execute(
                    f"SELECT {EVENT_COLUMNS} FROM events WHERE rule = ? AND subject = ? "
                    "ORDER BY seq DESC LIMIT 1", (rule, subject)).fetchall()
        except sqlite3.Error as exc:
            log.error("event=alarm_journal_read_failed error=%r", exc)
            rows = []
        found = [*_readable(rows), *pending]
        return max(found, key=lambda e: e.seq, default=None)

    def count_events(self) -> int:
        with self._reading() as conn:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def _readable(rows: Sequence[Sequence[object]]) -> list[AlarmEvent]:
    """The events of `rows`, without those this version cannot read (a kind or state a newer
    version journalled before a downgrade): logged and skipped, never a crash at start-up."""
    events: list[AlarmEvent] = []
    unreadable: list[tuple[object, str]] = []
    for row in rows:
        try:
            events.append(event_of(row))
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            unreadable.append((row[0] if row else None, str(exc)[:100]))
    if unreadable:
        log.warning("event=alarm_journal_events_unreadable count=%d first_seq=%s reason=%r "
                    "(journalled by another version: skipped)", len(unreadable),
                    unreadable[0][0], unreadable[0][1])
    return events
