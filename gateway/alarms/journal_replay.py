"""Start-up replay of the alarm journal: what a restart restores from the file (`replay`) —
every alarm that is not plain normal with its acknowledgement note, the open shelves and
suppressions, the meta keys (flood detector, first-outs) and the last sequence number.
"""

from __future__ import annotations

import sqlite3

from gateway.alarms.journal_schema import STATE_COLUMNS, record_of
from gateway.alarms.lifecycle import AlarmKey, AlarmRecord, Shelf, Suppression
from gateway.records import dataclass


@dataclass(slots=True)
class JournalContents:
    """What a restart restores."""

    records: list[AlarmRecord]
    shelves: dict[AlarmKey, Shelf]
    suppressions: dict[str, Suppression]
    meta: dict[str, str]
    last_seq: int


def replay(conn: sqlite3.Connection, last_seq: int) -> JournalContents:
    """Read the restorable state from `conn` (sqlite3.Error, ValueError, TypeError or KeyError
    when a row cannot be read back)."""
    shelves = {
        AlarmKey(r[0], r[1]): Shelf(r[2], r[3], r[4], r[5]) for r in conn.execute(
            "SELECT rule, subject, actor, reason, since_ns, until_ns FROM shelves "
            "WHERE ended_ns IS NULL ORDER BY id")}
    suppressions = {
        r[0]: Suppression(r[0], r[1], r[2], r[3], r[4]) for r in conn.execute(
            "SELECT scope, actor, reason, since_ns, until_ns FROM suppressions "
            "WHERE ended_ns IS NULL ORDER BY id")}
    records = [record_of(r, shelves) for r in conn.execute(
        f"SELECT {STATE_COLUMNS} FROM alarm_state")]
    for rec in records:  # the acknowledgement's note lives in its event (same actor, time)
        if rec.acked_by is not None:
            row = conn.execute(
                "SELECT note FROM events WHERE rule = ? AND subject = ? AND actor = ? "
                "AND ts = ? ORDER BY seq DESC LIMIT 1",
                (rec.key.rule, rec.key.subject, rec.acked_by, rec.acked_ns)).fetchone()
            rec.acked_note = row[0] if row else None
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    return JournalContents(records, shelves, suppressions, meta, last_seq)
