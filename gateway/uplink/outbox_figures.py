"""What the outbox reports about itself: its depth, bytes, oldest message and drops (the
uplink's status and GatewayState.outbox) and its delivery floor (GatewayState.delivery.floor) —
over the file's rows and what waits in memory (pending and held). A part of
gateway.uplink.outbox's `Outbox`, kept apart by idea; every figure is read under its lock."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from gateway.contract.outbound import OutboxFigures
from gateway.contract.vocab import MessageKind
from gateway.uplink import outbox_table as table
from gateway.uplink.outbox_acks import Deferred
from gateway.uplink.outbox_held import Held
from gateway.uplink.outbox_numbers import Numbers
from gateway.uplink.outbox_table import Pending, Totals
from gateway.uplink.outbox_volatile import Volatile


class Figures:
    """The figures' part of `Outbox` (which sets these attributes)."""

    path: Path
    budget_bytes: int
    _lock: threading.RLock
    _db: sqlite3.Connection
    _count: Totals
    _bytes: Totals
    _pending: list[Pending]
    _pending_bytes: int
    _held: Held
    _volatile: Volatile
    _deferred: Deferred
    _counters: dict[str, int]
    _numbers: Numbers
    _covered: int
    _now_ns: Callable[[], int]
    _reading: Callable[[str], contextlib.AbstractContextManager[None]]

    def floor(self) -> int:
        """The lowest dseq still stored, or held and not covered, or the next one to be given:
        every number below it is done (delivered, dropped to stay within the budget, or lost
        from memory by an unclean stop). A covered row counts until its delete is committed:
        a process killed before that sends it again, and the ingest recognises it by the
        identity it keeps for numbers from the floor on (gateway.uplink.outbox_acks)."""
        with self._lock:
            pending = [p.dseq for p in self._pending if p.dseq is not None]
            with self._reading("read"):
                stored = table.lowest_dseq(self._db, 0)
            candidates = [v for v in (self._held.lowest_dseq(), *pending)
                          if v is not None and v > self._covered]
            if stored is not None:
                candidates.append(stored)
            if candidates:
                return int(min(candidates))
            return max(self._covered, self._numbers.issued.get("delivery", 0)) + 1

    def depth(self, kind: MessageKind | None = None) -> int:
        """Messages not yet removed (committed, pending and held; acks of rows count at their
        commit)."""
        with self._lock:
            kinds = list(MessageKind) if kind is None else [kind]
            return sum(self._count[k] - self._deferred.count[k] for k in kinds) + sum(
                1 for p in self._pending if p.kind in kinds) + self._held.count(kinds) \
                + self._volatile.count(kinds)

    def held(self) -> int:
        """Messages held in memory (not committed)."""
        with self._lock:
            return len(self._held)

    def stored_bytes(self) -> int:
        with self._lock:
            return sum(self._bytes.values()) - sum(self._deferred.size.values()) \
                + self._pending_bytes + self._held.bytes + self._volatile.bytes

    def oldest_age(self) -> float | None:
        """Seconds since the oldest message still here was created; None when empty."""
        with self._lock:
            with self._reading("read"):
                stored = table.oldest_created(self._db, self._deferred.ids)
            memory = [m for m in (self._held.oldest_created(), self._volatile.oldest_created())
                      if m is not None]
            oldest = [p.created_ns for p in self._pending[:1]] + stored + memory
            if not oldest:
                return None
            return max(0.0, (self._now_ns() - min(oldest)) / 1e9)

    def dropped(self) -> dict[MessageKind, int]:
        """Messages dropped to keep within the budget, per kind, since the outbox was created."""
        with self._lock:
            return {k: self._counters.get(f"dropped.{k.value}", 0) for k in MessageKind}

    def status(self) -> OutboxFigures:
        return OutboxFigures(depth=self.depth(), bytes=self.stored_bytes(),
                            budget=self.budget_bytes, oldest_age_s=self.oldest_age())

    def disk_bytes(self) -> int:
        """The database file and its WAL, as on disk."""
        return sum(p.stat().st_size for p in
                   (self.path, self.path.with_name(self.path.name + "-wal"))
                   if p.exists())
