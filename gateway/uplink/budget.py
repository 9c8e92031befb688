"""The outbox's disk budget: what a row costs on disk, and which rows go when the budget is
exceeded. Used by gateway.uplink.outbox at each commit.

Disk budget (`budget_bytes`, default 256 MiB) is enforced at each commit on the accounted size
of the rows (`stored_size`: the pages a row occupies, as SQLite lays it out). What goes, in
this order, until stored + pending fit:

1. telemetry, oldest first;
2. state snapshots, oldest first;
3. incident records (outbox kind `alarm`, told apart by their topic, `…/incidents`: a local
   classification, nothing changes on the wire), a whole record at a time — every chunk of
   that version still stored or pending —, the oldest record first;
4. alarm events, oldest first, last of all.

So bulk evidence never pushes out an alarm event. A record is refused before it is queued if
its chunks would take more than `RECORD_SHARE` of the budget (`record_fits`,
gateway.uplink.incidents): it could only get in by pushing out everything else. Dropped
counts per kind are persisted and reported in GatewayState (a record's chunks count as
`alarm` there: the persisted counters are per MessageKind); each drop is logged
(`event=outbox_budget_dropped`, at most one line a minute with running totals, and one line
per incident record dropped, naming it).
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

import logging
import re
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

from gateway.contract.vocab import MessageKind
from gateway.ops.connections import RateLimitFilter

log = logging.getLogger("roomwarden.uplink")
DROPS_FILTER = RateLimitFilter(prefix="event=outbox_budget_dropped")
log.addFilter(DROPS_FILTER)  # a line a minute, with the running totals

DEFAULT_BUDGET_BYTES = 256 * 1024 * 1024
ROW_OVERHEAD = 48
"""Bytes per row beyond payload and topic: record header, the other columns, rowid, the
(kind, id) index entry."""
PAGE_SIZE = 4096
RECORD_SHARE = 0.5
"""An incident record whose chunks would take more than this share of the outbox budget is not
queued (refused whole, logged; it stays on the gateway)."""
INCIDENTS_SUFFIX = "/incidents"
"""The topic level of incident chunks (Channel.INCIDENTS): how the budget tells them from
alarm events, both of outbox kind `alarm`."""
_HEADER = 1024
"""Bytes of a chunk's payload that hold its `id` and `sha256` (they precede `data`)."""
_RECORD_RE = re.compile(rb'"id":"([^"]{1,120})".*?"sha256":"([0-9a-f]{64})"', re.DOTALL)


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


def record_limit(budget_bytes: int) -> int:
    """The most an incident record's chunks may take of an outbox of `budget_bytes`."""
    return int(budget_bytes * RECORD_SHARE)


def record_fits(payload_sizes: Iterable[int], topic_bytes: int, budget_bytes: int
                ) -> tuple[bool, int]:
    """Whether chunks of these payload sizes fit the record share of the budget, and what
    they would take (accounted bytes)."""
    need = sum(stored_size(n, topic_bytes) for n in payload_sizes)
    return need <= record_limit(budget_bytes), need


KINDS = tuple(sorted(MessageKind, key=lambda k: k.priority))
"""Send order; the reverse is the drop order."""
KIND_OF = {k.priority: k for k in MessageKind}


class Sized(Protocol):
    @property
    def kind(self) -> MessageKind: ...
    @property
    def size(self) -> int: ...
    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes: ...


P = TypeVar("P", bound=Sized)
Dropped = tuple[str, str, int, int]
"""An incident record version dropped: (id, sha256, chunks, bytes)."""


def is_chunk(kind: MessageKind, topic: str) -> bool:
    """An incident record's chunk (outbox kind `alarm`, the `incidents` topic)."""
    return kind is MessageKind.ALARM and topic.endswith(INCIDENTS_SUFFIX)


def incident_mark(incident_id: str, sha256: str) -> tuple[str, int]:
    """The outbox mark saying which version of an incident record was handed over whole."""
    return f"incident.{incident_id}", int(sha256[:15], 16)


def record_of(payload: bytes) -> tuple[str, str]:
    """(incident id, sha256) of a chunk's payload (('?', '') if it names none)."""
    m = _RECORD_RE.search(payload[:_HEADER])
    if m is None:
        return "?", ""
    return m.group(1).decode("ascii", "replace"), m.group(2).decode("ascii")


def enforce_budget(db: sqlite3.Connection, budget_bytes: int, pending: Sequence[P],
                   count: dict[MessageKind, int], size: dict[MessageKind, int],
                   dropped: dict[MessageKind, int], counters: dict[str, int]) -> list[P]:
    """Inside the commit's transaction: delete the oldest stored rows, then uncommitted
    messages, in the module's order (telemetry, state, incident records whole, alarm events
    last), until stored + pending fit `budget_bytes`. Updates `count`, `size` and `dropped`;
    removes a dropped record version's sent mark from `counters` and the table, so that the
    next start hands the record over again (gateway.uplink.incidents); returns the pending
    messages kept."""
    kept = list(pending)
    excess = sum(size.values()) + sum(p.size for p in kept) - budget_bytes
    if excess <= 0:
        return kept
    before = dict(dropped)
    records: list[Dropped] = []
    for kind in reversed(KINDS):
        if excess <= 0:
            break
        if kind is MessageKind.ALARM:  # incident records first, whole, oldest first
            excess, kept = _drop_records(db, excess, kept, count, size, dropped, records)
            _forget_marks(db, counters, records)
            if excess <= 0:
                break
        excess = _drop_stored(db, kind, excess, count, size, dropped)
        if excess > 0:  # then this kind's uncommitted messages, oldest first
            excess, kept = _drop_pending(kind, excess, kept, dropped)
    _log_drops({k: dropped.get(k, 0) - before.get(k, 0) for k in MessageKind}, records)
    return kept


def _drop_stored(db: sqlite3.Connection, kind: MessageKind, excess: int,
                 count: dict[MessageKind, int], size: dict[MessageKind, int],
                 dropped: dict[MessageKind, int]) -> int:
    """The oldest stored rows of `kind` (alarm: events only, the records went before)."""
    only = f" AND topic NOT LIKE '%{INCIDENTS_SUFFIX}'" if kind is MessageKind.ALARM else ""
    while excess > 0 and count[kind] > 0:
        rows = db.execute(
            f"SELECT id, size FROM messages WHERE kind = ?{only} ORDER BY id LIMIT 256",
            (kind.priority,)).fetchall()
        if not rows:
            break
        last, freed, n = rows[-1][0], 0, 0
        for row_id, sz in rows:
            last, freed, n = row_id, freed + sz, n + 1
            if freed >= excess:
                break
        db.execute(f"DELETE FROM messages WHERE kind = ?{only} AND id <= ?",
                   (kind.priority, last))
        count[kind] -= n
        size[kind] -= freed
        excess -= freed
        dropped[kind] = dropped.get(kind, 0) + n
    return excess


def _drop_pending(kind: MessageKind, excess: int, pending: list[P],
                  dropped: dict[MessageKind, int]) -> tuple[int, list[P]]:
    kept: list[P] = []
    for p in pending:
        if excess > 0 and p.kind is kind and not is_chunk(p.kind, p.topic):
            excess -= p.size
            dropped[kind] = dropped.get(kind, 0) + 1
        else:
            kept.append(p)
    return excess, kept


def _drop_records(db: sqlite3.Connection, excess: int, pending: list[P],
                  count: dict[MessageKind, int], size: dict[MessageKind, int],
                  dropped: dict[MessageKind, int], records: list[Dropped]
                  ) -> tuple[int, list[P]]:
    """Whole incident records, oldest first (stored chunks are older than pending ones),
    until `excess` is freed; `records` gets (id, sha256, chunks, bytes) of each record
    dropped."""
    alarm = MessageKind.ALARM
    # a record version (its sha256) → [id, stored row ids, pending indices, bytes]
    found: dict[str, tuple[str, list[int], list[int], list[int]]] = {}
    for row_id, sz, head in db.execute(
            "SELECT id, size, substr(payload, 1, ?) FROM messages WHERE kind = ? AND "
            f"topic LIKE '%{INCIDENTS_SUFFIX}' ORDER BY id", (_HEADER, alarm.priority)):
        incident, sha = record_of(bytes(head))
        entry = found.setdefault(sha or f"row.{row_id}", (incident, [], [], [0]))
        entry[1].append(row_id)
        entry[3][0] += sz
    for i, p in enumerate(pending):
        if is_chunk(p.kind, p.topic):
            incident, sha = record_of(p.payload)
            entry = found.setdefault(sha or f"pending.{i}", (incident, [], [], [0]))
            entry[2].append(i)
    gone: set[int] = set()
    for sha, (incident, rows, queued, stored) in found.items():
        if excess <= 0:
            break
        for start in range(0, len(rows), 500):
            part = rows[start:start + 500]
            db.execute(f"DELETE FROM messages WHERE id IN ({','.join('?' * len(part))})",
                       part)
        count[alarm] -= len(rows)
        size[alarm] -= stored[0]
        freed = stored[0] + sum(pending[i].size for i in queued)
        excess -= freed
        dropped[alarm] = dropped.get(alarm, 0) + len(rows) + len(queued)
        records.append((incident, sha, len(rows) + len(queued), freed))
        gone.update(queued)
    if not gone:
        return excess, pending
    return excess, [p for i, p in enumerate(pending) if i not in gone]


def _forget_marks(db: sqlite3.Connection, counters: dict[str, int],
                  records: list[Dropped]) -> None:
    """A dropped record version is no longer sent: its mark goes (a newer version's stays)."""
    for incident, sha, _, _ in records:
        if len(sha) != 64:
            continue
        name, value = incident_mark(incident, sha)
        if counters.get(f"mark.{name}") == value:
            del counters[f"mark.{name}"]
            db.execute("DELETE FROM counters WHERE name = ?", (f"mark.{name}",))


_totals: Counter[str] = Counter()
_totals_lock = threading.Lock()


def _log_drops(by_kind: dict[MessageKind, int], records: list[Dropped]) -> None:
    """One line per record dropped; the rest counted, at most a line a minute (running
    totals since start in each)."""
    chunks = sum(n for _, _, n, _ in records)
    now = {"telemetry": by_kind.get(MessageKind.TELEMETRY, 0),
           "state": by_kind.get(MessageKind.STATE, 0),
           "incident_chunks": chunks,
           "alarm_events": by_kind.get(MessageKind.ALARM, 0) - chunks}
    with _totals_lock:
        _totals.update({k: v for k, v in now.items() if v})
        _totals["incident_records"] += len(records)
        totals = dict(_totals)
    for name, _, n, nbytes in records:
        log.warning("event=incident_dropped id=%s chunks=%d bytes=%d reason=outbox_budget "
                    "(the record stays on the gateway: roomwarden incident export %s)",
                    name, n, nbytes, name)
    if not any(now.values()):
        return
    tally = " ".join(f"{k}={v}" for k, v in now.items())
    since = " ".join(f"{k}={totals.get(k, 0)}" for k in (*now, "incident_records"))
    if now["alarm_events"]:
        log.error("event=outbox_budget_dropped_alarm_events %s since_start: %s", tally, since)
    else:
        log.warning("event=outbox_budget_dropped %s since_start: %s", tally, since)
