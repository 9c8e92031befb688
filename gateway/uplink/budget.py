"""The outbox's disk budget: what a row costs on disk, and which rows go when the budget is
exceeded. Used by gateway.uplink.outbox at each commit.

Disk budget (`budget_bytes`, default 256 MiB) is enforced at each commit on the accounted size
of the rows (`stored_size`: the pages a row occupies, as SQLite lays it out): the oldest
telemetry is dropped first, then state, alarm events last. Dropped counts per kind are
persisted and reported in GatewayState.
SQLite reuses freed pages, so the file stays near the budget; the WAL is truncated to
`journal_size_limit` (4 MiB) after each checkpoint.

Sizing — a typical site, 24 h outage (tests/uplink/test_outbox_sizing.py measures it):
200 points, 60 % of them reported every 10 s after the exception filter, the rest only on the
5-minute heartbeat, one batch per 10-s poll cycle: 120 + 80 × 10/300 ≈ 123 samples per batch,
8,640 batches, ≈ 1.06 M samples a day. Measured: a stored sample costs ≈ 57 bytes of
payload (a JSON row ≈ 50 bytes — scaled register values such as 23.400000000000002 print long
— plus the batch header spread over its rows) and ≈ 68.5 bytes on disk (SQLite pages, WAL
checkpointed), i.e. ≈ 69 MiB a day: the default 256 MiB holds about 3.7 days.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Protocol, TypeVar

from gateway.contract.wire import MessageKind

DEFAULT_BUDGET_BYTES = 256 * 1024 * 1024
ROW_OVERHEAD = 48
"""Bytes per row beyond payload and topic: record header, the other columns, rowid, the
(kind, id) index entry."""
PAGE_SIZE = 4096


def stored_size(payload_bytes: int, topic_bytes: int, page_size: int = PAGE_SIZE) -> int:
    """What a row costs on disk, as SQLite lays it out: small rows share a leaf page; a row
    larger than a page keeps part of itself in the leaf (which then holds few rows) and the
    rest in whole overflow pages. Accounting pages, not payload bytes, keeps the budget honest
    for telemetry batches of several KiB (the sizing test compares it with the file)."""
    n = payload_bytes + topic_bytes + ROW_OVERHEAD
    usable = page_size
    max_local = usable - 35
    if n <= max_local:
        local, overflow = n, 0
    else:
        min_local = (usable - 12) * 32 // 255 - 23
        surplus = min_local + (n - min_local) % (usable - 4)
        local = surplus if surplus <= max_local else min_local
        overflow = -(-(n - local) // (usable - 4))
    per_leaf = max(1, (usable - 8) // (local + 8))
    return -(-usable // per_leaf) + overflow * usable


KINDS = tuple(sorted(MessageKind, key=lambda k: k.priority))
"""Send order; the reverse is the drop order."""
KIND_OF = {k.priority: k for k in MessageKind}


class Sized(Protocol):
    @property
    def kind(self) -> MessageKind: ...
    @property
    def size(self) -> int: ...


P = TypeVar("P", bound=Sized)


def enforce_budget(db: sqlite3.Connection, budget_bytes: int, pending: Sequence[P],
                   count: dict[MessageKind, int], size: dict[MessageKind, int],
                   dropped: dict[MessageKind, int]) -> list[P]:
    """Inside the commit's transaction: delete the oldest stored rows (telemetry first, alarm
    events last), then drop uncommitted messages of the same kind, until stored + pending fit
    `budget_bytes`. Updates `count`, `size` and `dropped`; returns the pending messages kept."""
    kept_all = list(pending)
    excess = sum(size.values()) + sum(p.size for p in kept_all) - budget_bytes
    for kind in reversed(KINDS):  # telemetry first, alarms last
        if excess <= 0:
            break
        while excess > 0 and count[kind] > 0:  # oldest stored rows of this kind
            rows = db.execute(
                "SELECT id, size FROM messages WHERE kind = ? ORDER BY id LIMIT 256",
                (kind.priority,)).fetchall()
            if not rows:
                break
            last, freed, n = rows[-1][0], 0, 0
            for row_id, sz in rows:
                last, freed, n = row_id, freed + sz, n + 1
                if freed >= excess:
                    break
            db.execute("DELETE FROM messages WHERE kind = ? AND id <= ?",
                             (kind.priority, last))
            count[kind] -= n
            size[kind] -= freed
            excess -= freed
            dropped[kind] = dropped.get(kind, 0) + n
        if excess > 0:  # then this kind's uncommitted messages, oldest first
            kept: list[P] = []
            for p in kept_all:
                if excess > 0 and p.kind is kind:
                    excess -= p.size
                    dropped[kind] = dropped.get(kind, 0) + 1
                else:
                    kept.append(p)
            kept_all = kept
    return kept_all

