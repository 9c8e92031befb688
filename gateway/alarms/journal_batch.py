"""What one alarm-manager call changed, gathered for the alarm journal to write in one
transaction (`JournalBatch`): events, alarm rows to write or delete, shelf and suppression
rows, meta keys. A batch a failed commit left pending absorbs the next one, within a bound.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from gateway.alarms.events import AlarmEvent
from gateway.alarms.journal_schema import (
    INSERT_SHELF,
    INSERT_SUPPRESSION,
    shelf_row,
    suppression_row,
)
from gateway.alarms.lifecycle import AlarmKey, AlarmRecord, Shelf, Suppression

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

    def merge(self, newer: JournalBatch) -> None:
        self.events.extend(newer.events)
        self.records.update(newer.records)
        self.ops.extend(newer.ops)
        self.meta.update(newer.meta)
        self.snapshot = self.snapshot or newer.snapshot
        if len(self.events) > MAX_PENDING_EVENTS:
            dropped = len(self.events) - MAX_PENDING_EVENTS
            log.error("event=alarm_journal_pending_overflow dropped=%d", dropped)
            del self.events[:dropped]

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
