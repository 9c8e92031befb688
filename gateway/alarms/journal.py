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

Pruning: gateway.alarms.journal_prune (by age only with times it can trust).

Off the event loop (liveness audit L1: a technician's `sqlite3` session holding a write
transaction on the file held every round of the rules 10 s, the siren 22–40 s late). While the
gateway runs, the journal's writer thread writes it (`start_writer`,
gateway.alarms.journal_writer): `commit` turns the batch into rows (`freeze`) and hands it over,
so neither an fsync nor another connection's lock ever holds a round of the rules or an output
write; the loop reads through a connection of its own (WAL: a reader neither waits for the
writer nor blocks it) and sees what is not yet written merged in. `durable_seq` is the highest
event sequence number written; the writer tells the loop after each commit, and the daemon
hands an event on to the uplink only then (gateway.handoff). Before the writer runs (the
start, tests, offline drills) a commit is written at once on the caller's thread, waiting at
most `SYNC_BUSY` for another connection's lock; one that failed stays pending and is retried by
the next commit (with the writer: after a back-off).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from gateway import clocksync
from gateway.alarms.journal_batch import JournalBatch, WriteBatch, freeze
from gateway.alarms.journal_prune import prune_events
from gateway.alarms.journal_read import JournalReads
from gateway.alarms.journal_replay import JournalContents, replay
from gateway.alarms.journal_schema import (
    INSERT_EVENT,
    INSERT_SHELF,
    INSERT_SUPPRESSION,
    MARK_UNSYNCED,
    UPSERT_STATE,
    JournalError,
    NewerJournal,
    event_row,
    prepare,
)
from gateway.alarms.journal_writer import WRITER_BUSY, JournalWriter
from gateway.alarms.lifecycle import AlarmKey, AlarmRecord, Shelf, Suppression
from gateway.clock import Clock, SystemClock
from gateway.storage import open_sqlite

log = logging.getLogger(__name__)

MEMORY = ":memory:"
SYNC_BUSY = 0.05
"""Seconds a statement on the caller's thread (a commit before the writer runs, a read) waits
for another connection's lock before it fails: the caller may be the event loop."""
LOAD_WAIT = 1.0
"""Seconds `load` waits, with the writer running and writing, for what was handed over to be
written (a config apply's new alarm manager reads what its predecessor journalled last)."""


class Journal(JournalReads):
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
        self._lock = threading.Condition()
        """Guards `_queued`, `_pending` and `_last_seq`; the writer thread waits on it."""
        self._queued = WriteBatch()
        """Handed over (`commit`), not yet taken by a write."""
        self._pending = WriteBatch()
        """Taken by a write that has not succeeded yet (a failed one is retried)."""
        self._failing_since: float | None = None
        """Monotonic time of the first failed commit of the current series (None: writing)."""
        self._failures = 0
        self._failure_logged = 0.0
        self.last_error: str | None = None
        """Why the pending events are not yet written (a full disk, a read-only file)."""
        self._last_seq = 0
        self._durable_seq = 0
        self._conn_lock = threading.Lock()
        """Held while `_conn` is in use (it is the writer's while the writer runs)."""
        self._writer: JournalWriter | None = None
        self._reader: sqlite3.Connection | None = None
        """The loop's own connection for reading, while the writer runs (opened on use)."""
        self._read_lock = threading.Lock()
        self._generation = 0
        """Counts the files this journal has written (a recovery starts a fresh one)."""
        self._reader_generation = -1
        self._conn = self._open()

    # opening and recovery ------------------------------------------------------------------

    def _connect(self, path: str) -> sqlite3.Connection:
        conn = open_sqlite(path, synchronous="FULL",  # why FULL: gateway.storage
                           busy_timeout=WRITER_BUSY if self._writer else SYNC_BUSY)
        try:
            last = prepare(conn)
            written = conn.execute("SELECT max(seq) FROM events").fetchone()[0] or 0
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self._last_seq = max(self._last_seq, last)
            self._durable_seq = max(self._durable_seq, written)
        self._generation += 1
        return conn

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
        with self._lock:  # sequence numbers go on increasing past whatever the lost file held
            self.recovery_note = note
            self._last_seq = max(self._last_seq, self._clock.now_ns() // 1_000_000)
        return conn

    def take_recovery_note(self) -> str | None:
        """The note of a recovery not yet journalled (the alarm manager journals it), once."""
        with self._lock:
            note, self.recovery_note = self.recovery_note, None
        return note

    def close(self) -> None:
        """Write what is not yet written (a last try, bounded: with the writer running, at most
        `journal_writer.CLOSE_WAIT` — a stop while another process holds the file's lock must
        not hang), then close the file. What is still unwritten is logged: the alarms it
        concerns are evaluated again at the next start."""
        writer = self._writer
        if writer is not None:
            writer.stop()
        else:
            if self.unwritten:
                self._attempt()
            self.close_file()
        with self._read_lock, contextlib.suppress(sqlite3.Error):
            if self._reader is not None:
                self._reader.close()
        if self.unwritten:
            log.error("event=alarm_journal_unwritten_at_close events=%d error=%r",
                      self.pending_events, self.last_error or "the write did not finish")

    def close_file(self) -> None:
        """Close the writing connection (the writer's, as its thread ends)."""
        with self._conn_lock, contextlib.suppress(sqlite3.Error):
            self._conn.close()

    @property
    def has_pending(self) -> bool:
        """Before the writer runs: a failed commit waits for the next one to retry it."""
        return self._writer is None and self.unwritten

    def failing_for(self) -> float | None:
        """Seconds since the first failed commit of the current series (None: not failing)."""
        since = self._failing_since
        return None if since is None else max(0.0, time.monotonic() - since)

    @property
    def last_seq(self) -> int:
        """The last sequence number handed over (or in the file)."""
        return self._last_seq

    @property
    def durable_seq(self) -> int:
        """The highest event sequence number the file holds (committed)."""
        return self._durable_seq

    # the writer thread ---------------------------------------------------------------------

    def start_writer(self, loop: asyncio.AbstractEventLoop,
                     on_written: Callable[[], None]) -> None:
        """From now on write on a thread of its own (gateway.alarms.journal_writer), telling
        `on_written` on `loop` after each commit. Once only (a later call changes nothing)."""
        if self._writer is not None:
            return
        with self._conn_lock, contextlib.suppress(sqlite3.Error):
            self._conn.execute(f"PRAGMA busy_timeout = {int(WRITER_BUSY * 1000)}")
        self._writer = JournalWriter(self, loop, on_written)

    async def settled(self, timeout: float) -> bool:
        """Wait, at most `timeout` seconds, until nothing handed over is left unwritten."""
        if self._writer is None:
            return not self.unwritten
        return await self._writer.settled(timeout)

    def busy_timeout(self, seconds: float) -> None:
        """How long the writing connection waits for another's lock (the writer's last try)."""
        with self._conn_lock, contextlib.suppress(sqlite3.Error):
            self._conn.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")

    # reading -------------------------------------------------------------------------------

    def load(self) -> JournalContents:
        """Everything a restart restores. An unreadable journal is recovered (moved aside) —
        with the writer running (a config apply's new alarm manager), it waits (bounded) for
        what was handed over to be written, and a read that fails restores nothing."""
        if self._writer is not None:
            self._writer.wait_written(LOAD_WAIT)
            try:
                with self._reading() as conn:
                    return replay(conn, self._last_seq)
            except (sqlite3.DatabaseError, ValueError, TypeError, KeyError) as exc:
                log.error("event=alarm_journal_read_failed error=%r", exc)
                return JournalContents([], {}, {}, {}, self._last_seq)
        try:
            return replay(self._conn, self._last_seq)
        except (sqlite3.DatabaseError, ValueError, TypeError, KeyError) as exc:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = self._recover(exc)
            return JournalContents([], {}, {}, {}, self._last_seq)

    # writing -------------------------------------------------------------------------------

    def commit(self, batch: JournalBatch, snapshot: Sequence[AlarmRecord] = (),
               shelves: Iterable[tuple[AlarmKey, Shelf]] = (),
               suppressions: Iterable[Suppression] = ()) -> bool:
        """Write `batch` (plus anything not yet written) in one transaction — with the writer
        running, hand it to the writer and return at once (True).

        When `batch.snapshot` is set, `snapshot`, `shelves` and `suppressions` are the complete
        current state and replace what the file holds. On failure the batch stays pending and is
        retried (by the next commit; with the writer, after a back-off); a corrupt file is moved
        aside first. Never raises."""
        if batch:
            frozen = freeze(batch, self._clock.now_ns(), time.monotonic(), snapshot, shelves,
                            suppressions)
            with self._lock:
                if frozen.events:
                    self._last_seq = max(self._last_seq, frozen.last_event_seq)
                self._queued.merge(frozen)
                self._lock.notify_all()
        if self._writer is not None:
            return True
        return self._attempt()

    def attempt(self) -> bool:
        """Write what is handed over, now, on this thread (the writer's: gateway.alarms.
        journal_writer); False if it failed (it stays pending)."""
        return self._attempt()

    def _attempt(self) -> bool:
        with self._lock:
            if self._queued:
                self._pending.merge(self._queued)
                self._queued = WriteBatch()
            pending, last_seq = self._pending, self._last_seq
        if not pending:
            return True
        with self._conn_lock:
            try:
                self._write(pending, last_seq)
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                self._failed(exc, len(pending.events))
                if type(exc) is sqlite3.DatabaseError and self.path != MEMORY:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.close()
                    self._conn = self._recover(exc)
                    self.needs_snapshot = True
                with self._lock:
                    self._lock.notify_all()  # a waiter for the write learns it failed
                return False
        if self._failing_since is not None:
            log.warning("event=alarm_journal_write_recovered written_events=%d failed_for=%.0fs "
                        "failures=%d", len(pending.events),
                        time.monotonic() - self._failing_since, self._failures)
            self._failing_since, self._failures, self.last_error = None, 0, None
        with self._lock:
            self._pending = WriteBatch()
            self._durable_seq = max(self._durable_seq, pending.last_event_seq)
            self._lock.notify_all()
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

    def _write(self, batch: WriteBatch, last_seq: int) -> None:
        conn = self._conn
        conn.execute("BEGIN")
        if batch.events:
            conn.executemany(INSERT_EVENT, [event_row(e) for e in batch.events])
            if not (self._synchronised or clocksync.synchronised)():
                conn.executemany(MARK_UNSYNCED, [(e.seq,) for e in batch.events])
        if batch.snapshot is not None:
            conn.execute("DELETE FROM alarm_state")
            conn.execute("DELETE FROM shelves WHERE ended_ns IS NULL")
            conn.execute("DELETE FROM suppressions WHERE ended_ns IS NULL")
            conn.executemany(INSERT_SHELF, batch.snapshot[0])
            conn.executemany(INSERT_SUPPRESSION, batch.snapshot[1])
        for sql, params in batch.ops:
            conn.execute(sql, params)
        upserts = [row for row in batch.rows.values() if row is not None]
        deletes = [(k.rule, k.subject) for k, row in batch.rows.items() if row is None]
        if upserts:
            conn.executemany(UPSERT_STATE, upserts)
        if deletes:
            conn.executemany("DELETE FROM alarm_state WHERE rule = ? AND subject = ?", deletes)
        meta = dict(batch.meta)
        meta["last_seq"] = str(last_seq)
        conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                         list(meta.items()))
        conn.execute("COMMIT")
        if batch.snapshot is not None:
            self.needs_snapshot = False

    def prune(self, now_ns: int) -> int:
        """Delete events beyond `max_events` rows and, while the system clock is synchronised,
        events and closed shelves/suppressions more than `retention_days` older than the newest
        journalled event (or than `now_ns`, if earlier: see the module docstring). Returns the
        events deleted — with the writer running, 0: the writer prunes (and logs it)."""
        if self._writer is not None:
            self._writer.prune(now_ns)
            return 0
        return self.prune_now(now_ns)

    def prune_now(self, now_ns: int) -> int:
        """`prune` on this thread (the writer's, or the caller's before it runs)."""
        with self._conn_lock:
            return self._prune(now_ns)

    def _prune(self, now_ns: int) -> int:
        by_age = (self._synchronised or clocksync.synchronised)()
        if by_age == self._age_prune_held:  # log the change, not every prune
            self._age_prune_held = not by_age
            log.info("event=alarm_journal_age_prune_%s", "resumed (system clock synchronised)"
                     if by_age else "held reason='system clock not synchronised'")
        try:
            return prune_events(self._conn, now_ns, by_age=by_age,
                                retention_s=self.retention_days * 86_400,
                                max_events=self.max_events)
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            log.error("event=alarm_journal_prune_failed error=%r", exc)
            return 0
