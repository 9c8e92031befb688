"""Replay memory for operator commands: every command id a key used, kept on disk until the
command could no longer be valid, so a command is carried out once — also across restarts.

`STATE_DIR/operator/commands.sqlite` (`gateway.storage.open_sqlite`: 0600, WAL,
synchronous=FULL — an id is on disk before its command is carried out, so a power cut cannot
make a command new again; one fsync per command, and only commands that passed their
signature check get this far). Bounded: rows go
once their command expired (plus the clock-skew allowance), and beyond `limit` rows the oldest
go early and the *horizon* moves past them. The horizon is when this memory began (or the
issue time of the newest row dropped early): a command issued before it cannot be told apart
from a replay and is refused. A corrupt file is moved aside and a new memory begins — with a
new horizon, so nothing issued before it is accepted.

Every method blocks on the disk (an fsync; up to the 5 s busy timeout while another process
holds the file's lock) and may be called from any thread, one call at a time (a lock): the
command inbox calls `first_use` and `note_outcome` in a worker thread, off the event loop
(gateway.operator.command_queue).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from pathlib import Path

from gateway.clock import Clock
from gateway.storage import open_sqlite, private_dir

log = logging.getLogger("roomwarden.operator")

DEFAULT_LIMIT = 20_000
"""Rows kept at most (a command a second for 5 hours); each is about 100 bytes."""


def iso(ns: int) -> str:
    """A time (ns) for a message: `2026-12-05T18:00:00Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))


class ReplayMemoryError(Exception):
    """The memory cannot record a command (disk trouble): refuse the command."""


class ReplayMemory:
    def __init__(self, path: Path, clock: Clock, *, skew_ns: int,
                 limit: int = DEFAULT_LIMIT) -> None:
        self.path = path
        self.clock = clock
        self.skew_ns = skew_ns
        self.limit = limit
        self._db: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        """One call at a time: the connection is shared by the threads that call."""
        self.horizon_ns = 0
        try:
            self._open()
        except (sqlite3.DatabaseError, OSError, ValueError, TypeError) as exc:  # (a horizon
            # no version wrote — text, NULL — made a start fail: the memory is set aside)
            log.error("event=replay_memory_unusable path=%s error=%r", path, str(exc))
            self._set_aside()
            with contextlib.suppress(sqlite3.DatabaseError, OSError):
                self._open()

    def _open(self) -> None:
        private_dir(self.path.parent)
        db = open_sqlite(self.path, synchronous="FULL")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS seen (key TEXT NOT NULL, id TEXT NOT NULL, "
                       "ts INTEGER NOT NULL, expires INTEGER NOT NULL, received INTEGER NOT "
                       "NULL, outcome TEXT, PRIMARY KEY (key, id))")
            db.execute("CREATE INDEX IF NOT EXISTS seen_expires ON seen (expires)")
            db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER)")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('horizon', ?)", (self.clock.now_ns(),))
            row = db.execute("SELECT value FROM meta WHERE name = 'horizon'").fetchone()
            (verdict,) = db.execute("PRAGMA quick_check").fetchone()
            if verdict != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {verdict}")
            horizon = int(row[0])
        except BaseException:
            db.close()
            raise
        self.horizon_ns = horizon
        self._db = db
        self.current_horizon()

    def current_horizon(self) -> int:
        """When this memory began — pulled back to now if that is ahead of the clock by more
        than the skew allowance: a memory begun while the clock ran ahead (a Pi without an
        RTC, before NTP stepped it back) refused every command, also freshly signed ones,
        until real time caught up (the clock audit). Nothing issued before now was
        carried out under the memory's own ids, which it keeps."""
        with self._lock:
            now = self.clock.now_ns()
            if self.horizon_ns > now + self.skew_ns and self._db is not None:
                log.warning("event=replay_horizon_ahead horizon=%d now=%d (the clock was ahead "
                            "when the replay memory began: it begins again now)",
                            self.horizon_ns, now)
                self.horizon_ns = now
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("UPDATE meta SET value = ? WHERE name = 'horizon'",
                                     (now,))
            return self.horizon_ns

    def _set_aside(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            part = self.path.with_name(self.path.name + suffix)
            if part.exists():
                aside = part.with_name(f"{part.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
                with contextlib.suppress(OSError):
                    part.rename(aside)

    def seen(self, key: str, cid: str) -> tuple[int, str | None] | None:
        """(when received, ns; outcome) if `key` used `cid` before, else None."""
        with self._lock:
            db = self._need()
            try:
                row = db.execute("SELECT received, outcome FROM seen WHERE key = ? AND id = ?",
                                 (key, cid)).fetchone()
            except sqlite3.Error as exc:
                raise ReplayMemoryError(f"replay memory: {exc}") from None
        return None if row is None else (int(row[0]), row[1])

    def first_use(self, key: str, cid: str, ts: int, expires: int, *,
                  what: str = "command") -> str | None:
        """Record (durably, before it is carried out) that `key` uses `cid` and return None; or
        why it may not: `cid` was used before, or was issued before this memory began (it
        cannot be told from a replay). ReplayMemoryError on disk trouble."""
        with self._lock:
            seen = self.seen(key, cid)
            if seen is not None:
                received, outcome = seen
                return (f"{what} {cid} was used before, received at {iso(received)} "
                        f"({outcome or 'no outcome'})")
            horizon = self.current_horizon()
            if ts < horizon:
                return (f"issued before this gateway's replay memory began ({iso(horizon)}): "
                        "send it anew")
            self.record(key, cid, ts, expires)
            return None

    def record(self, key: str, cid: str, ts: int, expires: int) -> None:
        """Remember (durably, before it is carried out) that `key` used `cid`."""
        with self._lock:
            db = self._need()
            now = self.clock.now_ns()
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    self._forget_expired(db, now - self.skew_ns)
                    db.execute("INSERT INTO seen VALUES (?, ?, ?, ?, ?, NULL)",
                               (key, cid, ts, expires, now))
                    self._bound(db)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise ReplayMemoryError(f"replay memory: {exc}") from None

    def _forget_expired(self, db: sqlite3.Connection, before: int) -> None:
        """Forget the ids expired by `before` (wall clock), and move the horizon past the
        newest of them: a command issued then is refused as older than the memory, not taken
        for new — the clock audit stepped the wall clock forward (the id forgotten as expired)
        and back (the command valid again), and a captured command was carried out twice."""
        (newest,) = db.execute("SELECT max(ts) FROM seen WHERE expires < ?",
                               (before,)).fetchone()
        if newest is None:
            return
        db.execute("DELETE FROM seen WHERE expires < ?", (before,))
        if int(newest) + 1 > self.horizon_ns:
            self.horizon_ns = int(newest) + 1
            db.execute("UPDATE meta SET value = ? WHERE name = 'horizon'", (self.horizon_ns,))

    def _bound(self, db: sqlite3.Connection) -> None:
        (count,) = db.execute("SELECT count(*) FROM seen").fetchone()
        excess = int(count) - self.limit
        if excess <= 0:
            return
        (newest,) = db.execute("SELECT max(ts) FROM (SELECT ts FROM seen ORDER BY ts "
                               "LIMIT ?)", (excess,)).fetchone()
        db.execute("DELETE FROM seen WHERE rowid IN (SELECT rowid FROM seen ORDER BY ts "
                   "LIMIT ?)", (excess,))
        self.horizon_ns = max(self.horizon_ns, int(newest) + 1)
        db.execute("UPDATE meta SET value = ? WHERE name = 'horizon'", (self.horizon_ns,))

    def note_outcome(self, key: str, cid: str, outcome: str) -> None:
        """What became of a recorded command (`ok` or a refusal code), for a replay's answer.
        Best effort: a failure here changes nothing about the command."""
        with self._lock, contextlib.suppress(sqlite3.Error, ReplayMemoryError):
            self._need().execute("UPDATE seen SET outcome = ? WHERE key = ? AND id = ?",
                                 (outcome, key, cid))

    def _need(self) -> sqlite3.Connection:
        if self._db is None:
            raise ReplayMemoryError(f"replay memory {self.path} could not be opened")
        return self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
                self._db = None
