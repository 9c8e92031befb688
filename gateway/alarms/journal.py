"""The alarm journal: the alarm manager's durable store — SQLite (stdlib), WAL,
synchronous=FULL (see gateway.storage for why), file mode 0600; one transaction per manager
call that changed something (`Journal.commit` of a `JournalBatch`), pruning, the events since a
sequence number for the uplink, and recovery from an unusable file. The schema and row
conversion are `gateway.alarms.journal_schema`, what a restart restores is
`gateway.alarms.journal_replay`, the panel's filtered reading `gateway.alarms.journal_query`.

A journal that cannot be opened or read (garbage, corruption, a newer schema) does not stop the
gateway: it is renamed aside (`<name>.corrupt-<UTC timestamp>`, with its -wal and -shm files), a
fresh one is started and `recovery_note` says so (the manager journals it as an event). If even
that fails the journal runs in memory. Sequence numbers stay increasing across a recovery: a
fresh journal after a recovery starts at the wall-clock time in ms.

Pruning by age (`retention_days`) measures an event's age from the newest journalled event's
time (or now, if that is earlier), never from now alone, and only while the system clock is
synchronised (`gateway.clocksync`): a Pi without an RTC journals with a stale clock (1970, or
fake-hwclock's) until NTP steps it, and a step forward — right or wrong — made every event look
old at once (clock audit K6: a first prune after NTP synced deleted all the history journalled
in 1971, a bad +100 d step deleted every event). An event journalled while the clock was not
synchronised is marked (`clock_unsynced`) and goes only with the first later event that was not
(`_last_surely_older`). `max_events` bounds the size whatever the clock does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence

from gateway import clocksync
from gateway.alarms.events import AlarmEvent
from gateway.alarms.journal_batch import JournalBatch
from gateway.alarms.journal_replay import JournalContents, replay
from gateway.alarms.journal_schema import (
    EVENT_COLUMNS,
    INSERT_EVENT,
    INSERT_SHELF,
    INSERT_SUPPRESSION,
    MARK_UNSYNCED,
    UPSERT_STATE,
    JournalError,
    NewerJournal,
    event_of,
    event_row,
    prepare,
    shelf_row,
    state_row,
    suppression_row,
)
from gateway.alarms.lifecycle import AlarmKey, AlarmRecord, Shelf, Suppression
from gateway.clock import Clock, SystemClock
from gateway.storage import open_sqlite

log = logging.getLogger(__name__)

MEMORY = ":memory:"


class Journal:
    """The SQLite alarm journal. `path` may be `:memory:` (tests, benchmarks)."""

    def __init__(self, path: str | os.PathLike[str], *, retention_days: float = 90.0,
                 max_events: int = 500_000, clock: Clock | None = None,
                 synchronised: Callable[[], bool] | None = None) -> None:
        """`synchronised`: whether the system clock is (pruning by age waits for it; None:
        `gateway.clocksync`'s, looked up at each prune)."""
        if max_events < 1 or retention_days <= 0:
            raise ValueError("max_events must be >= 1 and retention_days > 0")
        self.path = str(path)
        self.retention_days = retention_days
        self.max_events = max_events
        self._clock: Clock = clock or SystemClock()
        self._synchronised = synchronised
        self._age_prune_held = False
        self.recovery_note: str | None = None
        """Set when the file was unusable and moved aside; the manager journals it once."""
        self.needs_snapshot = False
        """Set when a fresh file replaced a broken one at run time: rewrite the whole state."""
        self._pending = JournalBatch()
        self._failing_since: float | None = None
        """Monotonic time of the first failed commit of the current series (None: writing)."""
        self._failures = 0
        self._failure_logged = 0.0
        self.last_error: str | None = None
        """Why the pending events are not yet written (a full disk, a read-only file)."""
        self._last_seq = 0
        self._conn = self._open()

    # opening and recovery ------------------------------------------------------------------

    def _connect(self, path: str) -> sqlite3.Connection:
        conn = open_sqlite(path, synchronous="FULL")  # why FULL: gateway.storage
        try:
            self._last_seq = prepare(conn)
            return conn
        except BaseException:
            conn.close()
            raise

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect(self.path)
        except (sqlite3.Error, JournalError, ValueError) as exc:
            if self.path == MEMORY:
                raise
            return self._recover(exc)

    def _recover(self, exc: BaseException) -> sqlite3.Connection:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock.now_ns() / 1e9))
        aside = f"{self.path}.corrupt-{stamp}"
        if isinstance(exc, NewerJournal):  # a rollback: kept whole for the newer version
            aside = f"{self.path}.schema{max(exc.versions)}-{stamp}"
        note = f"journal {self.path} unusable ({exc}); "
        try:
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.replace(self.path + suffix, aside + suffix)
            note += (f"kept as {aside} for that version (move it back after reinstalling "
                     "it), fresh journal started" if isinstance(exc, NewerJournal)
                     else f"moved aside to {aside}, fresh journal started")
            conn = self._connect(self.path)
        except (OSError, sqlite3.Error, JournalError) as again:
            note += f"cannot start a fresh one ({again}); journalling in memory only"
            self.path = MEMORY
            conn = self._connect(MEMORY)
        log.error("event=alarm_journal_recovered note=%r", note)
        self.recovery_note = note
        # keep sequence numbers increasing past whatever the lost file held
        self._last_seq = max(self._last_seq, self._clock.now_ns() // 1_000_000)
        return conn

    def close(self) -> None:
        """Write what a failed commit left pending (a last try), then close the file."""
        if self._pending:
            self.commit(JournalBatch())
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()

    @property
    def pending_events(self) -> int:
        """Events a failed commit left to write (retried by every commit, also an empty one:
        the alarm manager's next round or tick)."""
        return len(self._pending.events) if self._pending else 0

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    @property
    def last_seq(self) -> int:
        return self._last_seq

    # reading -------------------------------------------------------------------------------

    def load(self) -> JournalContents:
        """Everything a restart restores. An unreadable journal is recovered (moved aside)."""
        try:
            return replay(self._conn, self._last_seq)
        except (sqlite3.DatabaseError, ValueError, TypeError, KeyError) as exc:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = self._recover(exc)
            return JournalContents([], {}, {}, {}, self._last_seq)

    def events_since(self, seq: int, limit: int = 1000) -> list[AlarmEvent]:
        """Events with a sequence number above `seq`, oldest first (for the uplink)."""
        try:
            rows = self._conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit)).fetchall()
        except sqlite3.Error as exc:
            log.error("event=alarm_journal_read_failed error=%r", exc)
            rows = []
        pending = [e for e in self._pending.events if e.seq > seq]
        events = _readable(rows)
        if pending:
            events = sorted({e.seq: e for e in [*events, *pending]}.values(),
                            key=lambda e: e.seq)[:limit]
        return events

    def last_event(self, rule: str, subject: str) -> AlarmEvent | None:
        """The newest event of (`rule`, `subject`) (the `events_key` index: one row read),
        None if there is none or the journal cannot be read now."""
        try:
            rows = self._conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE rule = ? AND subject = ? "
                "ORDER BY seq DESC LIMIT 1", (rule, subject)).fetchall()
        except sqlite3.Error as exc:
            log.error("event=alarm_journal_read_failed error=%r", exc)
            rows = []
        found = [*_readable(rows), *(e for e in self._pending.events
                                     if e.rule == rule and e.subject == subject)]
        return max(found, key=lambda e: e.seq, default=None)

    def count_events(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM events").fetchone()[0])

    # writing -------------------------------------------------------------------------------

    def commit(self, batch: JournalBatch, snapshot: Sequence[AlarmRecord] = (),
               shelves: Iterable[tuple[AlarmKey, Shelf]] = (),
               suppressions: Iterable[Suppression] = ()) -> bool:
        """Write `batch` (plus anything a failed commit left pending) in one transaction.

        When `batch.snapshot` is set, `snapshot`, `shelves` and `suppressions` are the complete
        current state and replace what the file holds. On failure the batch stays pending and is
        retried by the next commit; a corrupt file is moved aside first. Never raises."""
        self._pending.merge(batch)
        pending = self._pending
        if not pending:
            return True
        if pending.events:
            self._last_seq = max(self._last_seq, pending.events[-1].seq)
        try:
            self._write(pending, snapshot, shelves, suppressions)
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            self._failed(exc, len(pending.events))
            if type(exc) is sqlite3.DatabaseError and self.path != MEMORY:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = self._recover(exc)
                self.needs_snapshot = True
            return False
        if self._failing_since is not None:
            log.warning("event=alarm_journal_write_recovered written_events=%d failed_for=%.0fs "
                        "failures=%d", len(pending.events),
                        time.monotonic() - self._failing_since, self._failures)
            self._failing_since, self._failures, self.last_error = None, 0, None
        self._pending = JournalBatch()
        return True

    def _failed(self, exc: sqlite3.Error, pending_events: int) -> None:
        """Log a failed commit: the first of a series, then once a minute with the count (a
        full disk retried at every round would write a line a second)."""
        now = time.monotonic()
        self._failures += 1
        self.last_error = str(exc)
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._failure_logged < 60.0:
            return
        self._failure_logged = now
        log.error("event=alarm_journal_write_failed error=%r pending_events=%d failures=%d",
                  exc, pending_events, self._failures)

    def _write(self, batch: JournalBatch, snapshot: Sequence[AlarmRecord],
               shelves: Iterable[tuple[AlarmKey, Shelf]],
               suppressions: Iterable[Suppression]) -> None:
        conn = self._conn
        conn.execute("BEGIN")
        if batch.events:
            conn.executemany(INSERT_EVENT, [event_row(e) for e in batch.events])
            if not (self._synchronised or clocksync.synchronised)():
                conn.executemany(MARK_UNSYNCED, [(e.seq,) for e in batch.events])
        if batch.snapshot:
            conn.execute("DELETE FROM alarm_state")
            conn.execute("DELETE FROM shelves WHERE ended_ns IS NULL")
            conn.execute("DELETE FROM suppressions WHERE ended_ns IS NULL")
            batch.records.update({r.key: r for r in snapshot})
            conn.executemany(INSERT_SHELF, [shelf_row(key, shelf) for key, shelf in shelves])
            conn.executemany(INSERT_SUPPRESSION, [suppression_row(sup) for sup in suppressions])
        else:
            for sql, params in batch.ops:
                conn.execute(sql, params)
        now = self._clock.now_ns()
        upserts = [state_row(r, now) for r in batch.records.values() if r is not None]
        deletes = [(k.rule, k.subject) for k, r in batch.records.items() if r is None]
        if upserts:
            conn.executemany(UPSERT_STATE, upserts)
        if deletes:
            conn.executemany("DELETE FROM alarm_state WHERE rule = ? AND subject = ?", deletes)
        meta = dict(batch.meta)
        meta["last_seq"] = str(self._last_seq)
        conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                         list(meta.items()))
        conn.execute("COMMIT")
        self.needs_snapshot = False

    def prune(self, now_ns: int) -> int:
        """Delete events beyond `max_events` rows and, while the system clock is synchronised,
        events and closed shelves/suppressions more than `retention_days` older than the newest
        journalled event (or than `now_ns`, if earlier: see the module docstring). Returns the
        events deleted."""
        by_age = (self._synchronised or clocksync.synchronised)()
        if by_age == self._age_prune_held:  # log the change, not every prune
            self._age_prune_held = not by_age
            log.info("event=alarm_journal_age_prune_%s", "resumed (system clock synchronised)"
                     if by_age else "held reason='system clock not synchronised'")
        try:
            conn = self._conn
            conn.execute("BEGIN")
            deleted = 0
            newest = conn.execute("SELECT ts FROM events ORDER BY seq DESC LIMIT 1").fetchone()
            if by_age and newest is not None:
                cutoff = min(now_ns, int(newest[0])) - int(self.retention_days * 86_400e9)
                last = _last_surely_older(conn, cutoff)
                if last is not None:
                    deleted = conn.execute("DELETE FROM events WHERE seq <= ?",
                                           (last,)).rowcount
                conn.execute("DELETE FROM shelves WHERE ended_ns < ?", (cutoff,))
                conn.execute("DELETE FROM suppressions WHERE ended_ns < ?", (cutoff,))
            row = conn.execute("SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?",
                               (self.max_events,)).fetchone()
            if row is not None:
                deleted += conn.execute("DELETE FROM events WHERE seq <= ?", (row[0],)).rowcount
            conn.execute("COMMIT")
            return max(0, deleted)
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            log.error("event=alarm_journal_prune_failed error=%r", exc)
            return 0


def _last_surely_older(conn: sqlite3.Connection, cutoff: int) -> int | None:
    """The highest seq up to which every event is surely older than `cutoff`: the last event,
    in journal order before the first at or after `cutoff`, whose time is trustworthy —
    journalled with the system clock synchronised, not before 2020 (`clocksync.SET_FLOOR_NS`)
    and not below an earlier event's. A Pi without an RTC journals with a stale clock (1970,
    or fake-hwclock's last saved time) from a reboot until NTP steps it; such an event's real
    time is no later than the next event's, so it goes only once a later trustworthy event is
    older than `cutoff` too: an alarm journalled after a power cut, before NTP, is not deleted
    at the first prune for looking old. Reads the events to be deleted and one more."""
    last: int | None = None
    highest = clocksync.SET_FLOOR_NS
    for seq, ts, unsynced in conn.execute(
            "SELECT seq, ts, clock_unsynced FROM events ORDER BY seq"):
        if ts >= cutoff:
            break
        if ts >= highest and not unsynced:
            highest, last = ts, seq
    return last


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

