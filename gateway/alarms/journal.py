"""The alarm journal: SQLite (stdlib), WAL, synchronous=FULL (see gateway.storage for why), file
mode 0600; one transaction per manager call that changed something.

Schema (version 1, table `schema_version`):

* `events` — every event (`AlarmEvent`; `drill` 1 for a live drill's), key `seq`; indices on
  `ts` and `(rule, subject, seq)`. Pruned to `retention_days` and `max_events` rows.
* `alarm_state` — the current state of every alarm that is not plain normal (state, base state,
  condition, chattering, latest evaluation, activation, acknowledgement, out-of-service), so a
  restart restores it exactly; a row is deleted when its alarm is back to normal.
* `shelves` — every shelve with who, why, since and until; open while `ended_ns` is NULL, then
  closed with who ended it and why (`unshelved`, `expired`, `out_of_service`).
* `suppressions` — every suppression of a scope (device, room or rule id) with who, why, since,
  until; open while `ended_ns` is NULL.
* `meta` — key/value: `last_seq`, the flood detector and the per-room first-outs.

A journal that cannot be opened or read (garbage, corruption, a newer schema) does not stop the
gateway: it is renamed aside (`<name>.corrupt-<UTC timestamp>`, with its -wal and -shm files), a
fresh one is started and `recovery_note` says so (the manager journals it as an event). If even
that fails the journal runs in memory. Sequence numbers stay increasing across a recovery: a
fresh journal after a recovery starts at the wall-clock time in ms.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.alarms.events import AlarmEvent, EventKind
from gateway.alarms.lifecycle import (
    AlarmKey,
    AlarmRecord,
    AlarmState,
    OutOfService,
    Shelf,
    Suppression,
)
from gateway.alarms.types import Evaluation, Severity
from gateway.clock import Clock, SystemClock
from gateway.field.sample import Value
from gateway.storage import open_sqlite

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MEMORY = ":memory:"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
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
    drill INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS events_key ON events (rule, subject, seq);
CREATE TABLE IF NOT EXISTS alarm_state (
    rule TEXT NOT NULL,
    subject TEXT NOT NULL,
    state TEXT NOT NULL,
    base_state TEXT NOT NULL,
    condition INTEGER NOT NULL,
    chattering INTEGER NOT NULL,
    value TEXT,
    severity TEXT NOT NULL,
    title TEXT NOT NULL,
    room TEXT,
    actions TEXT NOT NULL,
    latching INTEGER NOT NULL,
    eval_ts INTEGER NOT NULL,
    activated_ns INTEGER,
    acked_by TEXT,
    acked_ns INTEGER,
    suppression TEXT,
    oos_actor TEXT,
    oos_reason TEXT,
    oos_since_ns INTEGER,
    updated_ns INTEGER NOT NULL,
    PRIMARY KEY (rule, subject)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alarm_state_room ON alarm_state (room);
CREATE TABLE IF NOT EXISTS shelves (
    id INTEGER PRIMARY KEY,
    rule TEXT NOT NULL,
    subject TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    since_ns INTEGER NOT NULL,
    until_ns INTEGER NOT NULL,
    ended_ns INTEGER,
    ended_by TEXT,
    end_reason TEXT
);
CREATE INDEX IF NOT EXISTS shelves_open ON shelves (rule, subject) WHERE ended_ns IS NULL;
CREATE INDEX IF NOT EXISTS shelves_ended ON shelves (ended_ns);
CREATE TABLE IF NOT EXISTS suppressions (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    since_ns INTEGER NOT NULL,
    until_ns INTEGER NOT NULL,
    ended_ns INTEGER,
    ended_by TEXT,
    end_reason TEXT
);
CREATE INDEX IF NOT EXISTS suppressions_open ON suppressions (scope) WHERE ended_ns IS NULL;
CREATE INDEX IF NOT EXISTS suppressions_ended ON suppressions (ended_ns);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_EVENT_COLUMNS = ("seq, ts, kind, rule, subject, state, previous_state, value, severity, actor, "
                  "note, first_out, room, title, chattering, drill")
_STATE_COLUMNS = ("rule, subject, state, base_state, condition, chattering, value, severity, "
                  "title, room, actions, latching, eval_ts, activated_ns, acked_by, acked_ns, "
                  "suppression, oos_actor, oos_reason, oos_since_ns, updated_ns")
_MAX_PENDING_EVENTS = 100_000


class JournalError(Exception):
    """The journal file is unusable (raised internally; the journal recovers from it)."""


@dataclass(slots=True)
class JournalBatch:
    """Everything one manager call changed; written in one transaction."""

    events: list[AlarmEvent] = field(default_factory=list)
    records: dict[AlarmKey, AlarmRecord | None] = field(default_factory=dict)
    """Alarms to write (None: delete the row, the alarm is back to plain normal)."""
    ops: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    """Shelf and suppression rows, in order."""
    meta: dict[str, str] = field(default_factory=dict)
    snapshot: bool = False
    """Replace all alarm_state rows and open shelves/suppressions (after a recovery)."""

    def __bool__(self) -> bool:
        return bool(self.events or self.records or self.ops or self.meta or self.snapshot)

    def merge(self, newer: JournalBatch) -> None:
        self.events.extend(newer.events)
        self.records.update(newer.records)
        self.ops.extend(newer.ops)
        self.meta.update(newer.meta)
        self.snapshot = self.snapshot or newer.snapshot
        if len(self.events) > _MAX_PENDING_EVENTS:
            dropped = len(self.events) - _MAX_PENDING_EVENTS
            log.error("event=alarm_journal_pending_overflow dropped=%d", dropped)
            del self.events[:dropped]

    # row builders for shelves and suppressions ---------------------------------------------

    def shelf_opened(self, key: AlarmKey, shelf: Shelf) -> None:
        self.ops.append((
            "INSERT INTO shelves (rule, subject, actor, reason, since_ns, until_ns) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (key.rule, key.subject, shelf.actor, shelf.reason, shelf.since_ns, shelf.until_ns)))

    def shelf_closed(self, key: AlarmKey, ended_ns: int, actor: str, why: str) -> None:
        self.ops.append((
            "UPDATE shelves SET ended_ns = ?, ended_by = ?, end_reason = ? "
            "WHERE rule = ? AND subject = ? AND ended_ns IS NULL",
            (ended_ns, actor, why, key.rule, key.subject)))

    def suppression_opened(self, sup: Suppression) -> None:
        self.ops.append((
            "INSERT INTO suppressions (scope, actor, reason, since_ns, until_ns) "
            "VALUES (?, ?, ?, ?, ?)",
            (sup.scope, sup.actor, sup.reason, sup.since_ns, sup.until_ns)))

    def suppression_closed(self, scope: str, ended_ns: int, actor: str, why: str) -> None:
        self.ops.append((
            "UPDATE suppressions SET ended_ns = ?, ended_by = ?, end_reason = ? "
            "WHERE scope = ? AND ended_ns IS NULL",
            (ended_ns, actor, why, scope)))


@dataclass(slots=True)
class JournalContents:
    """What a restart restores."""

    records: list[AlarmRecord]
    shelves: dict[AlarmKey, Shelf]
    suppressions: dict[str, Suppression]
    meta: dict[str, str]
    last_seq: int


class Journal:
    """The SQLite alarm journal. `path` may be `:memory:` (tests, benchmarks)."""

    def __init__(self, path: str | os.PathLike[str], *, retention_days: float = 90.0,
                 max_events: int = 500_000, clock: Clock | None = None) -> None:
        if max_events < 1 or retention_days <= 0:
            raise ValueError("max_events must be >= 1 and retention_days > 0")
        self.path = str(path)
        self.retention_days = retention_days
        self.max_events = max_events
        self._clock: Clock = clock or SystemClock()
        self.recovery_note: str | None = None
        """Set when the file was unusable and moved aside; the manager journals it once."""
        self.needs_snapshot = False
        """Set when a fresh file replaced a broken one at run time: rewrite the whole state."""
        self._pending = JournalBatch()
        self._last_seq = 0
        self._conn = self._open()

    # opening and recovery ------------------------------------------------------------------

    def _connect(self, path: str) -> sqlite3.Connection:
        conn = open_sqlite(path, synchronous="FULL")  # why FULL: gateway.storage
        try:
            row = conn.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                raise JournalError(f"integrity check failed: {row[0] if row else 'no answer'}")
            conn.executescript(_SCHEMA)
            columns = {r[1] for r in conn.execute("PRAGMA table_info(events)")}
            if "drill" not in columns:  # a journal of before live drills (issue 12)
                conn.execute("ALTER TABLE events ADD COLUMN drill INTEGER NOT NULL DEFAULT 0")
            versions = [r[0] for r in conn.execute("SELECT version FROM schema_version")]
            if not versions:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)",
                             (SCHEMA_VERSION,))
            elif versions != [SCHEMA_VERSION]:
                raise JournalError(f"unsupported schema version {versions}")
            row = conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
            self._last_seq = int(row[0]) if row else 0
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
        note = f"journal {self.path} unusable ({exc}); "
        try:
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.replace(self.path + suffix, aside + suffix)
            note += f"moved aside to {aside}, fresh journal started"
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
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()

    @property
    def last_seq(self) -> int:
        return self._last_seq

    # reading -------------------------------------------------------------------------------

    def load(self) -> JournalContents:
        """Everything a restart restores. An unreadable journal is recovered (moved aside)."""
        try:
            return self._load()
        except (sqlite3.DatabaseError, ValueError, TypeError, KeyError) as exc:
            self.close()
            self._conn = self._recover(exc)
            return JournalContents([], {}, {}, {}, self._last_seq)

    def _load(self) -> JournalContents:
        conn = self._conn
        shelves = {
            AlarmKey(r[0], r[1]): Shelf(r[2], r[3], r[4], r[5]) for r in conn.execute(
                "SELECT rule, subject, actor, reason, since_ns, until_ns FROM shelves "
                "WHERE ended_ns IS NULL ORDER BY id")}
        suppressions = {
            r[0]: Suppression(r[0], r[1], r[2], r[3], r[4]) for r in conn.execute(
                "SELECT scope, actor, reason, since_ns, until_ns FROM suppressions "
                "WHERE ended_ns IS NULL ORDER BY id")}
        records = [_record_of(r, shelves) for r in conn.execute(
            f"SELECT {_STATE_COLUMNS} FROM alarm_state")]
        for rec in records:  # the acknowledgement's note lives in its event (same actor, time)
            if rec.acked_by is not None:
                row = conn.execute(
                    "SELECT note FROM events WHERE rule = ? AND subject = ? AND actor = ? "
                    "AND ts = ? ORDER BY seq DESC LIMIT 1",
                    (rec.key.rule, rec.key.subject, rec.acked_by, rec.acked_ns)).fetchone()
                rec.acked_note = row[0] if row else None
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        return JournalContents(records, shelves, suppressions, meta, self._last_seq)

    def events_since(self, seq: int, limit: int = 1000) -> list[AlarmEvent]:
        """Events with a sequence number above `seq`, oldest first (for the uplink)."""
        try:
            rows = self._conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit)).fetchall()
        except sqlite3.Error as exc:
            log.error("event=alarm_journal_read_failed error=%r", exc)
            rows = []
        pending = [e for e in self._pending.events if e.seq > seq]
        events = [_event_of(r) for r in rows]
        if pending:
            events = sorted({e.seq: e for e in [*events, *pending]}.values(),
                            key=lambda e: e.seq)[:limit]
        return events

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
            log.error("event=alarm_journal_write_failed error=%r pending_events=%d",
                      exc, len(pending.events))
            if type(exc) is sqlite3.DatabaseError and self.path != MEMORY:
                self.close()
                self._conn = self._recover(exc)
                self.needs_snapshot = True
            return False
        self._pending = JournalBatch()
        return True

    def _write(self, batch: JournalBatch, snapshot: Sequence[AlarmRecord],
               shelves: Iterable[tuple[AlarmKey, Shelf]],
               suppressions: Iterable[Suppression]) -> None:
        conn = self._conn
        conn.execute("BEGIN")
        if batch.events:
            conn.executemany(
                f"INSERT OR REPLACE INTO events ({_EVENT_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_event_row(e) for e in batch.events])
        if batch.snapshot:
            conn.execute("DELETE FROM alarm_state")
            conn.execute("DELETE FROM shelves WHERE ended_ns IS NULL")
            conn.execute("DELETE FROM suppressions WHERE ended_ns IS NULL")
            batch.records.update({r.key: r for r in snapshot})
            for key, shelf in shelves:
                conn.execute(
                    "INSERT INTO shelves (rule, subject, actor, reason, since_ns, until_ns) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (key.rule, key.subject, shelf.actor, shelf.reason, shelf.since_ns,
                     shelf.until_ns))
            for sup in suppressions:
                conn.execute(
                    "INSERT INTO suppressions (scope, actor, reason, since_ns, until_ns) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (sup.scope, sup.actor, sup.reason, sup.since_ns, sup.until_ns))
        else:
            for sql, params in batch.ops:
                conn.execute(sql, params)
        now = self._clock.now_ns()
        upserts = [_state_row(r, now) for r in batch.records.values() if r is not None]
        deletes = [(k.rule, k.subject) for k, r in batch.records.items() if r is None]
        if upserts:
            conn.executemany(
                f"INSERT OR REPLACE INTO alarm_state ({_STATE_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", upserts)
        if deletes:
            conn.executemany("DELETE FROM alarm_state WHERE rule = ? AND subject = ?", deletes)
        meta = dict(batch.meta)
        meta["last_seq"] = str(self._last_seq)
        conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                         list(meta.items()))
        conn.execute("COMMIT")
        self.needs_snapshot = False

    def prune(self, now_ns: int) -> int:
        """Delete events older than `retention_days` and beyond `max_events` rows, and closed
        shelves/suppressions older than the retention. Returns the events deleted."""
        cutoff = now_ns - int(self.retention_days * 86_400e9)
        try:
            conn = self._conn
            conn.execute("BEGIN")
            deleted = conn.execute("DELETE FROM events WHERE ts < ?", (cutoff,)).rowcount
            row = conn.execute("SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?",
                               (self.max_events,)).fetchone()
            if row is not None:
                deleted += conn.execute("DELETE FROM events WHERE seq <= ?", (row[0],)).rowcount
            conn.execute("DELETE FROM shelves WHERE ended_ns < ?", (cutoff,))
            conn.execute("DELETE FROM suppressions WHERE ended_ns < ?", (cutoff,))
            conn.execute("COMMIT")
            return max(0, deleted)
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            log.error("event=alarm_journal_prune_failed error=%r", exc)
            return 0


# row conversion ------------------------------------------------------------------------------

def _json_value(value: Value) -> str:
    return json.dumps(value)


def _value_of(text: str | None) -> Value:
    if text is None:
        return None
    value = json.loads(text)
    return value if isinstance(value, float | int | bool | str) else None


def _event_row(e: AlarmEvent) -> tuple[Any, ...]:
    return (e.seq, e.ts, str(e.kind), e.rule, e.subject, str(e.state), str(e.previous_state),
            _json_value(e.value), None if e.severity is None else str(e.severity), e.actor,
            e.note, int(e.first_out), e.room, e.title, int(e.chattering), int(e.drill))


def _event_of(r: Sequence[Any]) -> AlarmEvent:
    return AlarmEvent(
        seq=r[0], ts=r[1], kind=EventKind(r[2]), rule=r[3], subject=r[4], state=AlarmState(r[5]),
        previous_state=AlarmState(r[6]), value=_value_of(r[7]),
        severity=None if r[8] is None else Severity(r[8]), actor=r[9], note=r[10],
        first_out=bool(r[11]), room=r[12], title=r[13], chattering=bool(r[14]),
        drill=bool(r[15]))


def _state_row(rec: AlarmRecord, now_ns: int) -> tuple[Any, ...]:
    ev, oos = rec.ev, rec.oos
    return (rec.key.rule, rec.key.subject, str(rec.state), str(rec.base), int(rec.condition),
            int(rec.chattering), _json_value(ev.value), str(ev.severity), ev.title, ev.room,
            json.dumps(list(ev.actions)), int(ev.latching), ev.ts, rec.activated_ns,
            rec.acked_by, rec.acked_ns, rec.suppression,
            None if oos is None else oos.actor, None if oos is None else oos.reason,
            None if oos is None else oos.since_ns, now_ns)


def _record_of(r: Sequence[Any], shelves: dict[AlarmKey, Shelf]) -> AlarmRecord:
    key = AlarmKey(r[0], r[1])
    ev = Evaluation(rule=r[0], subject=r[1], active=bool(r[4]), value=_value_of(r[6]),
                    severity=Severity(r[7]), ts=r[12], title=r[8], room=r[9],
                    actions=tuple(json.loads(r[10])), latching=bool(r[11]))
    oos = None if r[17] is None else OutOfService(r[17], r[18] or "", r[19] or 0)
    return AlarmRecord(key=key, ev=ev, base=AlarmState(r[3]), condition=bool(r[4]),
                       chattering=bool(r[5]), shelf=shelves.get(key), suppression=r[16],
                       oos=oos, activated_ns=r[13], acked_by=r[14], acked_ns=r[15])
