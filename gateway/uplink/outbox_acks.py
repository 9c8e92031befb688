"""Acknowledged rows waiting for their delete: the outbox's stored messages the central side has
confirmed (the ingest's watermark, or a PUBACK where that is delivery) are deleted by the next
commit that happens anyway — an alarm event, a command result, settled telemetry, a reservation
of numbers — not by a commit of their own (DESIGN principle 6: the delete records nothing new;
issue 15's SD card), and at the latest `wait` seconds after the first of them was confirmed, or
at once when `many` wait (a replayed backlog is deleted as it goes).

What a crash before the delete costs: the rows are still in the file, so the next process sends
them again. The ingest recognises each as already stored (gateway.ingest.watermark: at or below
its watermark, `AckStore.covers`; after the watermark went back for the new process's boot, by
the (kind, seq, time) identity it kept for the number, `AckStore.resent` — so the gateway's
`floor`, from which the ingest keeps those identities, counts these rows as still held until
they are deleted: gateway.uplink.outbox_figures), and PUBACK-delivered rows are snapshots and
command results the central side takes again as the same message. So nothing is stored twice.

Meanwhile the rows are not handed out again (the watermark filters covered rows; acknowledged
ids are deleted before a new session's cursors begin) and do not count in the outbox's figures
(depth, bytes, oldest: `Deferred.count`, `.size`, `.ids`). No lock of its own: the outbox
calls it inside its lock, with its connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from gateway.contract.vocab import MessageKind
from gateway.uplink.budget import KIND_OF
from gateway.uplink.outbox_table import Totals

DELETE_WAIT = 30.0
"""Seconds a confirmed row waits at most for a commit that happens anyway."""
_CHUNK = 500


class Deferred:
    def __init__(self, wait: float, many: int) -> None:
        self.wait, self.many = wait, many
        self.acked: set[int] = set()
        """Stored ids a PUBACK delivered (deleted by id)."""
        self.cover_pending = False
        """Rows the watermark covers wait (deleted by `dseq`)."""
        self.ids: set[int] = set()
        """Every waiting row's id (acknowledged or covered)."""
        self.count: Totals = dict.fromkeys(MessageKind, 0)
        self.size: Totals = dict.fromkeys(MessageKind, 0)
        self.since: float | None = None
        """When the first of them was confirmed (the outbox clock's monotonic seconds)."""

    def __bool__(self) -> bool:
        return bool(self.acked or self.cover_pending)

    def due(self, now: float) -> bool:
        """A commit is due for the deletes alone."""
        return bool(self) and (len(self.ids) >= self.many
                               or self.since is None or now - self.since >= self.wait)

    def age(self, now: float) -> float | None:
        return None if self.since is None else max(0.0, now - self.since)

    def ack(self, db: sqlite3.Connection, ids: Iterable[int], now: float) -> None:
        """PUBACKs of these ids (held and volatile ones already removed): the stored ones wait."""
        wanted = sorted(set(ids) - self.ids)
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start:start + _CHUNK]
            rows = db.execute(f"SELECT id, kind, size FROM messages WHERE id IN "
                              f"({','.join('?' * len(chunk))})", chunk).fetchall()
            self._add(rows, now)
            self.acked.update(int(r[0]) for r in rows)

    def unread(self, ids: Iterable[int], now: float) -> None:
        """PUBACKs of ids the file could not be asked about: deleted by id all the same."""
        self.acked.update(ids)
        self.since = now if self.since is None else self.since

    def cover(self, db: sqlite3.Connection, covered: int, upto: int, now: float) -> None:
        """The watermark moved from `covered` to `upto`: the stored rows it covers wait."""
        rows = db.execute("SELECT id, kind, size FROM messages WHERE dseq > ? AND dseq <= ?",
                          (covered, upto)).fetchall()
        if rows:
            self.cover_pending = True
            self._add([r for r in rows if int(r[0]) not in self.ids], now)

    def _add(self, rows: list[tuple[int, int, int]], now: float) -> None:
        for row_id, kind, size in rows:
            self.ids.add(int(row_id))
            self.count[KIND_OF[kind]] += 1
            self.size[KIND_OF[kind]] += int(size)
        if rows and self.since is None:
            self.since = now

    def clear(self) -> None:
        """Deleted (a commit), or gone with a damaged file."""
        self.acked, self.ids, self.cover_pending, self.since = set(), set(), False, None
        self.count, self.size = dict.fromkeys(MessageKind, 0), dict.fromkeys(MessageKind, 0)
