"""What the outbox does when SQLite says its file is damaged: a part of gateway.uplink.outbox's
`Outbox`, kept apart by idea (the file moved aside and a fresh one started, keeping what is in
memory: gateway.uplink.outbox_recovery)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from gateway.clock import Clock
from gateway.uplink import outbox_recovery as recovery
from gateway.uplink.outbox_cursors import TELEMETRY, Cursors
from gateway.uplink.outbox_figures import Figures
from gateway.uplink.outbox_recovery import carried_counters
from gateway.uplink.outbox_table import OutboxError


class Damage(Figures):
    """The damage part of `Outbox` (which sets these attributes)."""

    _synchronous: str
    _clock: Clock
    _last_id: int
    _dirty_counters: set[str]
    _cursors: Cursors
    recovery_note: str | None
    recoveries: int

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """SQLite errors as OutboxError; a damaged file is replaced first (under the lock)."""
        try:
            yield
        except sqlite3.Error as exc:
            if recovery.is_corrupt(exc):
                self._recover(exc)
            raise OutboxError(f"outbox {what} failed: {exc}") from exc

    def _recover(self, exc: BaseException) -> None:
        """The file is damaged: move it aside and go on in a fresh one, keeping the stream,
        counters, pending and held messages (alarm events first) and watermark (module doc of
        gateway.uplink.outbox_recovery); the messages the file held count as dropped."""
        with self._lock:
            lost = dict(self._count)
            with contextlib.suppress(sqlite3.Error):
                self._db.close()  # (rolls back an open transaction)
            opened, note = recovery.reopen(self.path, self._synchronous, self._clock, exc, lost,
                                           self._last_id)
            self._db, self._last_id = opened.db, opened.last_id
            self.recovery_note, self.recoveries = note, self.recoveries + 1
            self._counters = carried_counters(self._counters, lost)
            self._dirty_counters = set(self._counters)
            self._count, self._bytes = recovery.zero_totals()
            self._deferred.clear()
            self._pending.sort(key=lambda p: p.kind.priority)  # alarm events first
            telemetry = self._cursors.live[TELEMETRY]  # (held ones above it are not sent yet)
            self._cursors = Cursors(self._last_id, backlog=False)
            self._cursors.live[TELEMETRY] = min(telemetry, self._last_id)
