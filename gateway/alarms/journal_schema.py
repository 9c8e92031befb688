"""The alarm journal's SQLite schema: its tables, the version check on opening, and the
conversion of events and alarm states to rows and back (`gateway.alarms.journal` writes and
reads through it).

Schema (version 1, table `schema_version`):

* `events` — every event (`AlarmEvent`; `drill` 1 for a live drill's, `clock_unsynced` 1 for
  one journalled while the system clock was not synchronised — read by the writer when it
  writes, for pruning —, `clock_synced` the event's own mark: whether the clock was
  synchronised when the manager stamped it, 1 or 0, NULL for an event journalled before the
  mark, 6 Dec 2026: sent upstream as `AlarmEvent.clock_synced`), key `seq`; indices on `ts`
  and `(rule, subject, seq)`. Pruned to `retention_days` and `max_events` rows.
* `alarm_state` — the current state of every alarm that is not plain normal (state, base state,
  condition, chattering, latest evaluation, activation, acknowledgement, out-of-service), so a
  restart restores it exactly; a row is deleted when its alarm is back to normal.
* `shelves` — every shelve with who, why, since and until; open while `ended_ns` is NULL, then
  closed with who ended it and why (`unshelved`, `expired`, `out_of_service`).
* `suppressions` — every suppression of a scope (device, room or rule id) with who, why, since,
  until; open while `ended_ns` is NULL.
* `meta` — key/value: `last_seq`, the flood detector, the per-room first-outs, the outputs held
  until reset (`output_holds`), the live drill begun and not yet ended (`drill_open`) and the
  coils config applies released and not yet confirmed off (`coil_releases`, kept for
  gateway.actions.release: `AlarmLedger.keep`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
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
from gateway.field.sample import Value

SCHEMA_VERSION = 1

SCHEMA = """
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
    drill INTEGER NOT NULL DEFAULT 0,
    clock_unsynced INTEGER NOT NULL DEFAULT 0,
    clock_synced INTEGER
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

EVENT_COLUMNS = ("seq, ts, kind, rule, subject, state, previous_state, value, severity, actor, "
                 "note, first_out, room, title, chattering, drill, clock_synced")
STATE_COLUMNS = ("rule, subject, state, base_state, condition, chattering, value, severity, "
                 "title, room, actions, latching, eval_ts, activated_ns, acked_by, acked_ns, "
                 "suppression, oos_actor, oos_reason, oos_since_ns, updated_ns")
INSERT_EVENT = (f"INSERT INTO events ({EVENT_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
"""A plain INSERT: an event whose seq is taken fails (IntegrityError: the commit fails, loudly,
and its events stay pending) rather than silently replacing the event journalled before —
two writers numbering from the same last seq (two gateways on one state directory: liveness
audit L2) overwrote each other's events with REPLACE."""
UPSERT_STATE = (f"INSERT OR REPLACE INTO alarm_state ({STATE_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
MARK_UNSYNCED = "UPDATE events SET clock_unsynced = 1 WHERE seq = ?"
"""An event journalled while the system clock was not synchronised (its time may be stale)."""
INSERT_SHELF = ("INSERT INTO shelves (rule, subject, actor, reason, since_ns, until_ns) "
                "VALUES (?, ?, ?, ?, ?, ?)")
INSERT_SUPPRESSION = ("INSERT INTO suppressions (scope, actor, reason, since_ns, until_ns) "
                      "VALUES (?, ?, ?, ?, ?)")


class JournalError(Exception):
    """The journal file is unusable (raised internally; the journal recovers from it)."""


class NewerJournal(JournalError):
    """The journal was written by a newer version (a schema this one does not know): kept
    under a name that says so, not taken for damage."""

    def __init__(self, versions: list[int]) -> None:
        super().__init__(f"written by a newer RoomWarden (schema version {versions})")
        self.versions = versions


def prepare(conn: sqlite3.Connection) -> int:
    """Check `conn`'s file and bring its schema up to date; the last sequence number it holds.
    JournalError (or sqlite3.Error) when the file is corrupt or of another schema version."""
    row = conn.execute("PRAGMA quick_check").fetchone()
    if row is None or row[0] != "ok":
        raise JournalError(f"integrity check failed: {row[0] if row else 'no answer'}")
    conn.executescript(SCHEMA)
    columns = {r[1] for r in conn.execute("PRAGMA table_info(events)")}
    if "drill" not in columns:  # a journal of before live drills (issue 12)
        conn.execute("ALTER TABLE events ADD COLUMN drill INTEGER NOT NULL DEFAULT 0")
    if "clock_unsynced" not in columns:  # a journal of before 5 Dec 2026
        conn.execute("ALTER TABLE events ADD COLUMN clock_unsynced INTEGER NOT NULL DEFAULT 0")
    if "clock_synced" not in columns:  # before the events' own mark: theirs is NULL, unknown
        conn.execute("ALTER TABLE events ADD COLUMN clock_synced INTEGER")
    versions = [r[0] for r in conn.execute("SELECT version FROM schema_version")]
    if not versions:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
    elif versions != [SCHEMA_VERSION]:
        if all(isinstance(v, int) and v > SCHEMA_VERSION for v in versions):
            raise NewerJournal(versions)
        raise JournalError(f"unsupported schema version {versions}")
    row = conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
    return int(row[0]) if row else 0


# row conversion ------------------------------------------------------------------------------

def shelf_row(key: AlarmKey, shelf: Shelf) -> tuple[Any, ...]:
    """The parameters of INSERT_SHELF."""
    return (key.rule, key.subject, shelf.actor, shelf.reason, shelf.since_ns, shelf.until_ns)


def suppression_row(sup: Suppression) -> tuple[Any, ...]:
    """The parameters of INSERT_SUPPRESSION."""
    return (sup.scope, sup.actor, sup.reason, sup.since_ns, sup.until_ns)


def _json_value(value: Value) -> str:
    return json.dumps(value)


def _value_of(text: str | None) -> Value:
    if text is None:
        return None
    value = json.loads(text)
    return value if isinstance(value, float | int | bool | str) else None


def event_row(e: AlarmEvent) -> tuple[Any, ...]:
    """The parameters of INSERT_EVENT."""
    return (e.seq, e.ts, str(e.kind), e.rule, e.subject, str(e.state), str(e.previous_state),
            _json_value(e.value), None if e.severity is None else str(e.severity), e.actor,
            e.note, int(e.first_out), e.room, e.title, int(e.chattering), int(e.drill),
            None if e.clock_synced is None else int(e.clock_synced))


def event_of(r: Sequence[Any]) -> AlarmEvent:
    """The event of a row of EVENT_COLUMNS."""
    return AlarmEvent(
        seq=r[0], ts=r[1], kind=EventKind(r[2]), rule=r[3], subject=r[4], state=AlarmState(r[5]),
        previous_state=AlarmState(r[6]), value=_value_of(r[7]),
        severity=None if r[8] is None else Severity(r[8]), actor=r[9], note=r[10],
        first_out=bool(r[11]), room=r[12], title=r[13], chattering=bool(r[14]),
        drill=bool(r[15]), clock_synced=None if r[16] is None else bool(r[16]))


def state_row(rec: AlarmRecord, now_ns: int) -> tuple[Any, ...]:
    """The parameters of UPSERT_STATE."""
    ev, oos = rec.ev, rec.oos
    return (rec.key.rule, rec.key.subject, str(rec.state), str(rec.base), int(rec.condition),
            int(rec.chattering), _json_value(ev.value), str(ev.severity), ev.title, ev.room,
            json.dumps(list(ev.actions)), int(ev.latching), ev.ts, rec.activated_ns,
            rec.acked_by, rec.acked_ns, rec.suppression,
            None if oos is None else oos.actor, None if oos is None else oos.reason,
            None if oos is None else oos.since_ns, now_ns)


def record_of(r: Sequence[Any], shelves: dict[AlarmKey, Shelf]) -> AlarmRecord:
    """The alarm of a row of STATE_COLUMNS (with its open shelf, if any)."""
    key = AlarmKey(r[0], r[1])
    ev = Evaluation(rule=r[0], subject=r[1], active=bool(r[4]), value=_value_of(r[6]),
                    severity=Severity(r[7]), ts=r[12], title=r[8], room=r[9],
                    actions=tuple(json.loads(r[10])), latching=bool(r[11]))
    oos = None if r[17] is None else OutOfService(r[17], r[18] or "", r[19] or 0)
    return AlarmRecord(key=key, ev=ev, base=AlarmState(r[3]), condition=bool(r[4]),
                       chattering=bool(r[5]), shelf=shelves.get(key), suppression=r[16],
                       oos=oos, activated_ns=r[13], acked_by=r[14], acked_ns=r[15])
