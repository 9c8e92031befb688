"""What one alarm-manager call changed, gathered for the alarm journal to write in one
transaction (`JournalBatch`): events, alarm rows to write or delete, shelf and suppression
rows, meta keys.

The journal writes a `WriteBatch`: a `JournalBatch` turned into rows when it is handed over
(`freeze`, on the caller's thread), so that the writer thread (gateway.alarms.journal_writer)
reads nothing the event loop goes on changing — an `AlarmRecord` changes with every transition.
Batches not yet written (a commit in progress, or one that failed) absorb the next ones, within a
bound: events in order, each alarm's newest row, the newest meta values.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from gateway.alarms.events import AlarmEvent
from gateway.alarms.journal_schema import (
    INSERT_SHELF,
    INSERT_SUPPRESSION,
    shelf_row,
    state_row,
    suppression_row,
)
from gateway.alarms.lifecycle import AlarmKey, AlarmRecord, Shelf, Suppression
from gateway.records import dataclass, field

log = logging.getLogger(__name__)

MAX_PENDING_EVENTS = 100_000
"""Events a pending batch keeps at most (the oldest go first, with an error logged)."""


@dataclass(slots=True)
class JournalBatch:
    """Everything one manager call changed; written in one transaction."""

    events: list[AlarmEvent] = field(default_factory=list)
    records: dict[AlarmKey, AlarmRecord | None] = field(default_factory=dict)
    """Alarms to write (None: delete the row, the alarm is back to plain normal)."""
    ops: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    """Shelf and suppression rows, in order."""
    meta: dict[str, str] = field(default_factory=dict)
    snapshot: bool = False
    """Replace all alarm_state rows and open shelves/suppressions (after a recovery)."""

    def __bool__(self) -> bool:
        return bool(self.events or self.records or self.ops or self.meta or self.snapshot)

    # row builders for shelves and suppressions ---------------------------------------------

    def shelf_opened(self, key: AlarmKey, shelf: Shelf) -> None:
        self.ops.append((INSERT_SHELF, shelf_row(key, shelf)))

    def shelf_closed(self, key: AlarmKey, ended_ns: int, actor: str, why: str) -> None:
        self.ops.append((
            "UPDATE shelves SET ended_ns = ?, ended_by = ?, end_reason = ? "
            "WHERE rule = ? AND subject = ? AND ended_ns IS NULL",
            (ended_ns, actor, why, key.rule, key.subject)))

    def suppression_opened(self, sup: Suppression) -> None:
        self.ops.append((INSERT_SUPPRESSION, suppression_row(sup)))

    def suppression_closed(self, scope: str, ended_ns: int, actor: str, why: str) -> None:
        self.ops.append((
            "UPDATE suppressions SET ended_ns = ?, ended_by = ?, end_reason = ? "
            "WHERE scope = ? AND ended_ns IS NULL",
            (ended_ns, actor, why, scope)))


Row = tuple[Any, ...]


@dataclass(slots=True)
class WriteBatch:
    """One transaction's worth for the journal, as rows (`freeze`)."""

    events: list[AlarmEvent] = field(default_factory=list)
    ops: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    """Shelf and suppression rows, in order (after the snapshot's, if any)."""
    rows: dict[AlarmKey, Row | None] = field(default_factory=dict)
    """alarm_state rows to write (None: delete the alarm's row)."""
    meta: dict[str, str] = field(default_factory=dict)
    snapshot: tuple[list[Row], list[Row]] | None = None
    """(open shelves, open suppressions) replacing the file's, with every alarm's row in
    `rows`: the whole state, rewritten after a recovery."""
    since: float | None = None
    """When its oldest part was handed over (time.monotonic())."""

    def __bool__(self) -> bool:
        return bool(self.events or self.ops or self.rows or self.meta
                    or self.snapshot is not None)

    @property
    def last_event_seq(self) -> int:
        return max((e.seq for e in self.events), default=0)

    def merge(self, newer: WriteBatch) -> None:
        """Take `newer` (handed over later) on top: a newer snapshot replaces what came
        before it (it is the whole state)."""
        self.events.extend(newer.events)
        if newer.snapshot is not None:
            self.snapshot, self.ops, self.rows = newer.snapshot, list(newer.ops), {}
        else:
            self.ops.extend(newer.ops)
        self.rows.update(newer.rows)
        self.meta.update(newer.meta)
        if self.since is None:
            self.since = newer.since
        if len(self.events) > MAX_PENDING_EVENTS:
            dropped = len(self.events) - MAX_PENDING_EVENTS
            log.error("event=alarm_journal_pending_overflow dropped=%d", dropped)
            del self.events[:dropped]


def freeze(batch: JournalBatch, now_ns: int, since: float,
           snapshot: Sequence[AlarmRecord] = (),
           shelves: Iterable[tuple[AlarmKey, Shelf]] = (),
           suppressions: Iterable[Suppression] = ()) -> WriteBatch:
    """`batch` as rows, at `now_ns` (each row's `updated_ns`). When `batch.snapshot` is set,
    `snapshot`, `shelves` and `suppressions` are the complete current state (its own shelf
    and suppression changes are in that state already)."""
    rows: dict[AlarmKey, Row | None] = {
        key: None if rec is None else state_row(rec, now_ns)
        for key, rec in batch.records.items()}
    whole = None
    ops = list(batch.ops)
    if batch.snapshot:
        rows.update({rec.key: state_row(rec, now_ns) for rec in snapshot})
        whole = ([shelf_row(key, shelf) for key, shelf in shelves],
                 [suppression_row(sup) for sup in suppressions])
        ops = []
    return WriteBatch(events=list(batch.events), ops=ops, rows=rows, meta=dict(batch.meta),
                      snapshot=whole, since=since)
