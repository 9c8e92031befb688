"""The outbox's SQLite table: its schema, opening it, and the rows written, read and deleted.

gateway.uplink.outbox keeps the in-memory state (pending and held messages, acknowledgements,
the watermark, cursors, counters) and calls these inside its one lock and transaction; nothing
here holds state of its own.

Row ids are given by the outbox from one counter in memory (from the highest stored at
opening), in put order for held telemetry: they are only ever used within the process (the
publisher's in-flight map, the delivery tracker, the cursors), so a counter that grows for the
process's life is what keeps a late PUBACK from acknowledging another message. That was
AUTOINCREMENT's job, at the cost of a `sqlite_sequence` page in every commit: dropped
(`UPGRADE_ROWS` for older files).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from gateway.contract.vocab import MessageKind
from gateway.records import dataclass
from gateway.storage import open_sqlite
from gateway.uplink.budget import KIND_OF

log = logging.getLogger("roomwarden.uplink")

_MESSAGES = """
CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY,                -- given by the outbox (`Outbox._last_id`)
    kind INTEGER NOT NULL,                 -- MessageKind.priority
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,               -- 0, 1; 2: retained, never superseded (a final)
    created_ns INTEGER NOT NULL,
    size INTEGER NOT NULL,                 -- accounted bytes
    dseq INTEGER                           -- delivery sequence (NULL: leaves on PUBACK)
);
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS messages_kind_id ON messages (kind, id);
CREATE INDEX IF NOT EXISTS messages_topic ON messages (topic) WHERE retain = 1;
"""
_SCHEMA = _MESSAGES.format(name="messages") + _INDEXES + """
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
UPGRADE_ROWS = 10_000
"""A file from before 2026-12-07 (ids by AUTOINCREMENT, which wrote `sqlite_sequence` at every
commit) is copied into the new table at opening when it holds at most this many rows (a
moment); a larger backlog is left as it is until a later start finds it small (the ids given
are the same either way, only the extra page a commit writes differs)."""
_DSEQ_INDEX = ("CREATE INDEX IF NOT EXISTS messages_dseq ON messages (dseq) "
               "WHERE dseq IS NOT NULL")
_CHUNK = 500
"""Ids per `IN (…)` statement (SQLite's bound-parameter limit)."""

Totals = dict[MessageKind, int]


class OutboxError(RuntimeError):
    """The outbox cannot store (disk gone, database unusable)."""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: int
    kind: MessageKind
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created_ns: int
    backlog: bool
    """Stored before the current session began (replayed, paced)."""
    dseq: int | None = None
    """Delivery sequence: leaves when the ingest's watermark covers it (None: on PUBACK)."""


@dataclass(slots=True)
class Pending:
    """A message put and not committed yet."""

    kind: MessageKind
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created_ns: int
    replace: bool
    size: int
    since: float
    dseq: int | None
    final: bool = False
    """Never superseded (stored with retain = 2, which `delete_retained` spares)."""
    id: int | None = None
    """Given at the put for held telemetry (gateway.uplink.outbox_held), else at the commit."""
    seq: int | None = None
    """A telemetry batch's `seq` (it goes out only once that number is reserved on disk)."""


def open_table(path: Path, synchronous: str) -> sqlite3.Connection:
    """The outbox database, created or upgraded (an outbox from before end-to-end
    acknowledgement gains its `dseq` column)."""
    try:
        db = open_sqlite(path, synchronous=synchronous, journal_size_limit=4194304)
        db.executescript(_SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
        if "dseq" not in columns:
            db.execute("ALTER TABLE messages ADD COLUMN dseq INTEGER")
        db.execute(_DSEQ_INDEX)
        _drop_autoincrement(db)
    except sqlite3.Error as exc:
        raise OutboxError(f"cannot open outbox {path}: {exc}") from exc
    return db


def _autoincrement(db: sqlite3.Connection) -> bool:
    row = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND "
                     "name = 'messages'").fetchone()
    return row is not None and "AUTOINCREMENT" in str(row[0]).upper()


def _drop_autoincrement(db: sqlite3.Connection) -> None:
    """The messages table of an older file without AUTOINCREMENT (see UPGRADE_ROWS), in one
    transaction."""
    if not _autoincrement(db) or db.execute(
            "SELECT COUNT(*) FROM messages").fetchone()[0] > UPGRADE_ROWS:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(_MESSAGES.format(name="messages_new"))
        db.execute("INSERT INTO messages_new (id, kind, topic, payload, qos, retain, "
                   "created_ns, size, dseq) SELECT id, kind, topic, payload, qos, retain, "
                   "created_ns, size, dseq FROM messages")
        db.execute("DROP TABLE messages")
        db.execute("ALTER TABLE messages_new RENAME TO messages")
        for statement in (*_INDEXES.strip().splitlines(), _DSEQ_INDEX):
            db.execute(statement)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def drop_unknown_kinds(db: sqlite3.Connection, path: Path) -> None:
    """Delete the messages of a kind this version does not know (written by a newer one before
    a downgrade: it could not publish them), logged — not a reason to move the whole outbox
    aside with everything else it holds."""
    unknown = f"FROM messages WHERE kind NOT IN ({', '.join(str(k) for k in sorted(KIND_OF))})"
    if db.execute(f"SELECT EXISTS (SELECT 1 {unknown})").fetchone()[0]:  # reads first
        dropped = db.execute(f"DELETE {unknown}").rowcount
        log.warning("event=outbox_unknown_kinds_dropped path=%s messages=%d (written by "
                    "another version)", path, dropped)


def read_counters(db: sqlite3.Connection) -> dict[str, int]:
    return {str(name): int(value)
            for name, value in db.execute("SELECT name, value FROM counters")}


def read_totals(db: sqlite3.Connection) -> tuple[Totals, Totals]:
    """Messages and accounted bytes stored, per kind."""
    count, size = dict.fromkeys(MessageKind, 0), dict.fromkeys(MessageKind, 0)
    for kind, n, sz in db.execute(
            "SELECT kind, COUNT(*), COALESCE(SUM(size), 0) FROM messages GROUP BY kind"):
        count[KIND_OF[kind]], size[KIND_OF[kind]] = n, sz
    return count, size


def max_id(db: sqlite3.Connection) -> int:
    """The highest id stored (an AUTOINCREMENT file's: the highest it ever gave)."""
    highest = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[0])
    if _autoincrement(db):
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
        highest = max(highest, int(row[0]) if row else 0)
    return highest


def _deleted(rows: Iterable[tuple[int, int]], count: Totals, size: Totals) -> None:
    for kind, sz in rows:
        count[KIND_OF[kind]] -= 1
        size[KIND_OF[kind]] -= sz


def delete_ids(db: sqlite3.Connection, ids: Sequence[int], count: Totals, size: Totals) -> None:
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start:start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        _deleted(db.execute(f"DELETE FROM messages WHERE id IN ({marks}) RETURNING kind, size",
                            chunk).fetchall(), count, size)


def delete_covered(db: sqlite3.Connection, covered: int, count: Totals, size: Totals) -> None:
    _deleted(db.execute("DELETE FROM messages WHERE dseq IS NOT NULL AND dseq <= ? "
                        "RETURNING kind, size", (covered,)).fetchall(), count, size)


def delete_retained(db: sqlite3.Connection, topic: str, count: Totals, size: Totals) -> None:
    _deleted(db.execute("DELETE FROM messages WHERE topic = ? AND retain = 1 "
                        "RETURNING kind, size", (topic,)).fetchall(), count, size)


def insert(db: sqlite3.Connection, pending: Sequence[Pending], ids: Sequence[int],
           count: Totals, size: Totals) -> None:
    """The messages, with these ids (given by the outbox)."""
    db.executemany(
        "INSERT INTO messages (id, kind, topic, payload, qos, retain, created_ns, size, dseq) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(i, p.kind.priority, p.topic, p.payload, p.qos, 2 if p.final else int(p.retain),
          p.created_ns, p.size, p.dseq) for p, i in zip(pending, ids, strict=True)])
    for p in pending:
        count[p.kind] += 1
        size[p.kind] += p.size


def write_counters(db: sqlite3.Connection, counters: dict[str, int], names: set[str]) -> None:
    db.executemany("INSERT INTO counters (name, value) VALUES (?, ?) "
                   "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                   [(name, counters[name]) for name in sorted(names) if name in counters])


def coalesce(pending: list[Pending]) -> list[Pending]:
    """Of `replace` messages to one retained topic only the newest is kept (and `final`
    ones)."""
    if not any(p.replace for p in pending):
        return list(pending)
    newest: dict[str, int] = {}
    for i, p in enumerate(pending):
        if p.replace:
            newest[p.topic] = i
    return [p for i, p in enumerate(pending)
            if not p.replace or p.final or newest[p.topic] == i]


def select(db: sqlite3.Connection, kind: MessageKind, after: int, upto: int | None,
           limit: int, *, backlog: bool, covered: int) -> tuple[list[OutboxMessage], bool]:
    """Up to `limit` messages of `kind` with `after` < id (≤ `upto`), not covered, in id order,
    and whether the rows ran out (fewer than `limit` stored, covered ones included)."""
    if upto is not None and after >= upto:
        return [], True
    sql = ("SELECT id, topic, payload, qos, retain, created_ns, dseq FROM messages "
           "WHERE kind = ? AND id > ?" + (" AND id <= ?" if upto is not None else "")
           + " ORDER BY id LIMIT ?")
    args: tuple[int, ...] = ((kind.priority, after, upto, limit) if upto is not None
                             else (kind.priority, after, limit))
    rows = db.execute(sql, args).fetchall()
    return [OutboxMessage(row_id, kind, topic, payload, qos, bool(retain), created, backlog,
                          dseq)
            for row_id, topic, payload, qos, retain, created, dseq in rows
            if dseq is None or dseq > covered], len(rows) < limit


def fetch(db: sqlite3.Connection, ids: Iterable[int], covered: int) -> list[OutboxMessage]:
    """The messages with these ids still stored and not covered, as backlog, in id order."""
    wanted = sorted(set(ids))
    out: list[OutboxMessage] = []
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start:start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for row_id, kind, topic, payload, qos, retain, created, dseq in db.execute(
                "SELECT id, kind, topic, payload, qos, retain, created_ns, dseq FROM "
                f"messages WHERE id IN ({marks}) ORDER BY id", chunk):
            if dseq is None or dseq > covered:
                out.append(OutboxMessage(row_id, KIND_OF[kind], topic, payload, qos,
                                         bool(retain), created, True, dseq))
    return out


def lowest_dseq(db: sqlite3.Connection, covered: int) -> int | None:
    row = db.execute("SELECT MIN(dseq) FROM messages WHERE dseq > ?", (covered,)).fetchone()
    return int(row[0]) if row and row[0] is not None else None


_OLDEST = "SELECT MIN(c) FROM (" + " UNION ALL ".join(
    f"SELECT (SELECT created_ns FROM messages WHERE kind = {kind.priority:d} ORDER BY id "
    "LIMIT 1) AS c" for kind in MessageKind) + ")"
"""Each kind's first row by the (kind, id) index, in one statement."""


def oldest_created(db: sqlite3.Connection, skip: set[int] | None = None) -> list[int]:
    """The creation time of the oldest of each kind's first stored message not in `skip`
    (rows confirmed and waiting for their delete; empty: none)."""
    if not skip:
        row = db.execute(_OLDEST).fetchone()
        return [] if row is None or row[0] is None else [int(row[0])]
    firsts = []
    for kind in MessageKind:  # past the skipped ones (the oldest, as a rule) by the index
        for row_id, created in db.execute("SELECT id, created_ns FROM messages WHERE kind = ? "
                                          "ORDER BY id", (kind.priority,)):
            if row_id not in skip:
                firsts.append(int(created))
                break
    return [min(firsts)] if firsts else []


def has_retained(db: sqlite3.Connection, topic: str) -> bool:
    """A replaceable retained message on `topic` is stored."""
    row = db.execute("SELECT EXISTS (SELECT 1 FROM messages WHERE topic = ? AND retain = 1)",
                     (topic,)).fetchone()
    return bool(row[0])
