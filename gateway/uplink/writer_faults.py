"""What the uplink's writer thread (gateway.uplink.committer) does when the outbox fails, so that
a storage error never ends it (issue D2 of the storage audit):

- `Faults`: every failure — a commit, a read for a publish window, anything unexpected — is
  logged (at most a line a minute per kind of failure, with how many were left out: a disk
  that stays full must not fill the log) and retried after a back-off (`commit_interval`,
  doubling to `MAX_RETRY`); `error` says what failed until an attempt succeeds, for /healthz
  (gateway.ops.health: the uplink check is degraded meanwhile). A damaged file is not retried
  forever: the outbox replaces it (gateway.uplink.outbox_recovery).
- `drop_for_room`: the committer's buffer is bounded (`MAX_BUFFERED`): the oldest telemetry
  goes first, then the oldest snapshot or command result, an alarm event (or incident chunk)
  only when nothing else is left — and then counted and logged, never silently.
"""

from __future__ import annotations

import logging
import sys
import time

from gateway.contract.vocab import MessageKind
from gateway.ops.connections import RateLimitFilter
from gateway.uplink.items import Item

log = logging.getLogger("roomwarden.uplink")
for _prefix in ("event=outbox_commit_failed", "event=outbox_read_failed",
                "event=uplink_writer_error", "event=uplink_buffer_alarm_dropped",
                "event=outbox_alarm_dropped"):
    log.addFilter(RateLimitFilter(prefix=_prefix))  # a line a minute each

MAX_BUFFERED = 20_000
"""Items (batches, events, snapshots) waiting for the committer's writer; beyond this the
oldest telemetry is dropped, alarm events last (logged) — only reached if the writer is held
up (the outbox has bounds of its own while commits fail): the one buffer in front of it."""

MAX_RETRY = 30.0
"""Seconds between attempts at most while the outbox keeps failing (alarm events are tried at
once whatever the back-off)."""


class Faults:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._delay = interval
        self.error: str | None = None
        """What failed last, while it keeps failing (None: the last attempt worked)."""
        self.since: float | None = None
        """When it began to fail (monotonic)."""
        self.failures = 0
        """Failed attempts since start."""
        self.retry_at: float | None = None
        """When to try again (monotonic), while it fails."""

    def failed(self, what: str, exc: BaseException) -> None:
        """An attempt failed: log it (rate-limited) and set when to try again."""
        now = time.monotonic()
        self.failures += 1
        self.error = f"outbox {what} failing: {exc}"
        if self.since is None:
            self.since = now
        if what == "commit":
            log.error("event=outbox_commit_failed error=%r retry_in=%.1f", str(exc), self._delay)
        elif what == "read":
            log.error("event=outbox_read_failed error=%r retry_in=%.1f", str(exc), self._delay)
        else:  # a bug: its traceback is logged (the first of each minute)
            log.error("event=uplink_writer_error error=%r retry_in=%.1f", str(exc), self._delay,
                      exc_info=exc)
        self.retry_at = now + self._delay
        self._delay = min(MAX_RETRY, self._delay * 2)

    def ok(self) -> None:
        if self.error is not None:
            log.warning("event=outbox_works_again after_s=%.1f failures=%d",
                        time.monotonic() - (self.since or time.monotonic()), self.failures)
        self.error = self.since = self.retry_at = None
        self._delay = self.interval


def _telemetry(item: Item) -> bool:
    return item.kind is MessageKind.TELEMETRY


def _state(item: Item) -> bool:
    return item.kind is MessageKind.STATE


def _chunk(item: Item) -> bool:
    incidents = sys.modules.get("gateway.contract.incidents")  # (no chunk before it is loaded)
    return incidents is not None and isinstance(item.payload, incidents.IncidentChunk)


def drop_for_room(buffer: list[Item]) -> Item | None:
    """Remove the item that goes first from a full buffer: the oldest telemetry, else the
    oldest snapshot or command result, else the oldest incident chunk, else the oldest alarm
    event (logged). None if empty."""
    for first in (_telemetry, _state, _chunk):
        for n, item in enumerate(buffer):
            if first(item):
                return buffer.pop(n)
    if not buffer:
        return None
    item = buffer.pop(0)
    log.error("event=uplink_buffer_alarm_dropped produced=%d reason=%s", item.produced,
              "the writer has not taken the buffer: it is full of alarm events")
    return item
