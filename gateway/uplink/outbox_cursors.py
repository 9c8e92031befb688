"""Which outbox messages a session has handed out: per kind a live cursor (messages stored or
held since the session began) and a backlog cursor (rows stored before), read live first, then
backlog, each in priority order (alarm, state, telemetry) — gateway.uplink.outbox's
`next_batch`. Live telemetry comes from the file and from memory (gateway.uplink.outbox_held),
merged by id: ids are given in put order, so the one cursor serves both. No state but the
cursors; the SQL is gateway.uplink.outbox_table's."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable

from gateway.contract.vocab import MessageKind
from gateway.uplink import outbox_table as table
from gateway.uplink.budget import KINDS
from gateway.uplink.outbox_held import Held
from gateway.uplink.outbox_table import OutboxMessage, Pending
from gateway.uplink.outbox_volatile import Volatile

TELEMETRY = MessageKind.TELEMETRY


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

    def next_batch(self, db: sqlite3.Connection, covered: int, limit: int,
                   backlog_limit: int | None, held: Held | None = None,
                   ready: Callable[[Pending], bool] = lambda _m: True,
                   volatile: Volatile | None = None) -> list[OutboxMessage]:
        """`held`: telemetry in memory (handed out as live, if `ready`); `volatile`: snapshots
        in memory (live, before the state rows: gateway.uplink.outbox_volatile)."""
        out: list[OutboxMessage] = []
        for kind in KINDS:
            if len(out) >= limit:
                break
            if kind is MessageKind.STATE and volatile:
                out += volatile.take(limit - len(out))
                if len(out) >= limit:
                    break
            if kind is TELEMETRY and held:
                out += self._live_telemetry(db, covered, limit - len(out), held, ready)
                continue
            if kind not in self.unread:
                continue
            rows, ended = table.select(db, kind, self.live[kind], None, limit - len(out),
                                       backlog=False, covered=covered)
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

    def _live_telemetry(self, db: sqlite3.Connection, covered: int, limit: int, held: Held,
                        ready: Callable[[Pending], bool]) -> list[OutboxMessage]:
        """Live telemetry from the file and from memory, in id order; nothing beyond a held
        message that is not ready (so none is passed by the cursor)."""
        after = self.live[TELEMETRY]
        memory, blocked = held.after(after, limit, ready)
        rows: list[OutboxMessage] = []
        ended = True
        if TELEMETRY in self.unread:
            upto = None if blocked is None else blocked - 1
            rows, ended = table.select(db, TELEMETRY, after, upto, limit, backlog=False,
                                       covered=covered)
        merged = sorted(rows + memory, key=lambda m: m.id)[:limit]
        if merged:
            self.live[TELEMETRY] = merged[-1].id
        if ended and blocked is None and (not rows or rows[-1].id <= self.live[TELEMETRY]):
            self.unread.discard(TELEMETRY)
        return merged
