"""One commit of the outbox (gateway.uplink.outbox's `flush`): a single transaction that deletes
what was delivered, supersedes older snapshots, keeps to the disk budget, inserts the new
messages with the ids the outbox gives and writes the counters that changed — then one fsync.
Pure SQL over the state the outbox passes in; the outbox adopts the results only when the
transaction committed (a failed one changes nothing in memory)."""

from __future__ import annotations

import contextlib
import sqlite3

from gateway.contract.vocab import MessageKind
from gateway.records import dataclass
from gateway.uplink import outbox_table as table
from gateway.uplink.budget import enforce_budget
from gateway.uplink.outbox_table import OutboxError, Pending, Totals


@dataclass(slots=True)
class Committed:
    """What a commit did: the messages stored (their kinds), the highest id given, and the
    counters and totals as they are now on disk."""

    stored: list[MessageKind]
    last_id: int
    counters: dict[str, int]
    count: Totals
    size: Totals


def commit(db: sqlite3.Connection, *, budget_bytes: int, pending: list[Pending],
           acked: set[int], covered: int | None, counters: dict[str, int], dirty: set[str],
           count: Totals, size: Totals, last_id: int) -> Committed:
    """`pending`: the messages to store, in put order (held telemetry that was settled keeps
    its id; the rest get ids above `last_id`); `acked`: stored ids to delete; `covered`: delete
    the rows the watermark covers (None: no new watermark). OutboxError if SQLite fails (the
    transaction rolled back)."""
    pending = [p for p in table.coalesce(pending)  # (a settled message may be done already)
               if p.id not in acked and (covered is None or p.dseq is None or p.dseq > covered)]
    count, size, counters, dirty = dict(count), dict(size), dict(counters), set(dirty)
    dropped: dict[MessageKind, int] = {}
    try:
        db.execute("BEGIN IMMEDIATE")
        if acked:
            table.delete_ids(db, sorted(acked), count, size)
        if covered is not None:
            table.delete_covered(db, covered, count, size)
        for topic in {p.topic for p in pending if p.replace}:
            table.delete_retained(db, topic, count, size)
        pending = enforce_budget(db, budget_bytes, pending, count, size, dropped, counters)
        ids = []
        for p in pending:
            if p.id is None:
                last_id += 1
            ids.append(last_id if p.id is None else p.id)
        table.insert(db, pending, ids, count, size)
        for kind, n in dropped.items():
            counters[f"dropped.{kind.value}"] = counters.get(f"dropped.{kind.value}", 0) + n
            dirty.add(f"dropped.{kind.value}")
        table.write_counters(db, counters, dirty)
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        with contextlib.suppress(sqlite3.Error):  # (a damaged file may refuse it)
            if db.in_transaction:
                db.execute("ROLLBACK")
        raise OutboxError(f"outbox commit failed: {exc}") from exc
    return Committed([p.kind for p in pending], last_id, counters, count, size)
