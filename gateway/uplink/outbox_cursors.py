"""Which committed outbox rows a session has handed out: per kind a live cursor (rows stored
since the session began) and a backlog cursor (rows stored before), read live first, then
backlog, each in priority order (alarm, state, telemetry) — gateway.uplink.outbox's
`next_batch`. No state but the cursors; the SQL is gateway.uplink.outbox_table's."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from gateway.contract.wire import MessageKind
from gateway.uplink import outbox_table as table
from gateway.uplink.budget import KINDS
from gateway.uplink.outbox_table import OutboxMessage


class Cursors:
    def __init__(self, boundary: int, *, backlog: bool = True) -> None:
        """A session: rows with an id up to `boundary` are backlog (`backlog` false: there is
        none, e.g. a fresh file whose ids continue above a damaged one's)."""
        self.boundary = boundary
        self.live = dict.fromkeys(MessageKind, boundary)
        self.backlog = dict.fromkeys(MessageKind, 0)
        self.unread = set(MessageKind)
        """Kinds whose live rows may go beyond the live cursor: a select that ran out of rows
        reached the end, a commit storing one of the kind opens it again (no query per kind
        and window for what cannot be there)."""
        self.backlog_read: set[MessageKind] = set() if backlog else set(MessageKind)
        """Kinds whose backlog this session has read to its end (it only shrinks)."""

    def stored(self, kinds: Iterable[MessageKind]) -> None:
        """A commit stored rows of these kinds."""
        self.unread.update(kinds)

    def highest(self) -> int:
        return max(self.boundary, *self.live.values())

    def next_batch(self, db: sqlite3.Connection, covered: int, limit: int,
                   backlog_limit: int | None) -> list[OutboxMessage]:
        out: list[OutboxMessage] = []
        for kind in KINDS:
            if len(out) >= limit:
                break
            if kind not in self.unread:
                continue
            start = max(self.live[kind], self.boundary)
            rows, ended = table.select(db, kind, start, None, limit - len(out), backlog=False,
                                       covered=covered)
            if rows:
                self.live[kind] = rows[-1].id
            if ended:
                self.unread.discard(kind)
            out += rows
        room = limit - len(out)
        if backlog_limit is not None:
            room = min(room, backlog_limit)
        for kind in KINDS:
            if room <= 0:
                break
            if kind in self.backlog_read:
                continue
            rows, ended = table.select(db, kind, self.backlog[kind], self.boundary, room,
                                       backlog=True, covered=covered)
            if rows:
                self.backlog[kind] = rows[-1].id
            if ended:
                self.backlog_read.add(kind)
            out += rows
            room -= len(rows)
        return out
