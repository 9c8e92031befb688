"""How long held telemetry waits in memory for its acknowledgement before the committer
(gateway.uplink.committer) commits it — the outbox's telemetry in steady state never touches
the disk (issue 15's SD card, DESIGN principle 6: writes scale with change, not with time).

- While a session is up and the central side acknowledges in time: `telemetry_hold` (default
  10 s) after it was put. The ingest's watermark (or, in `puback` mode, the broker's PUBACK)
  normally comes within a second or two, and removes it from memory (gateway.uplink.outbox_held).
- While no session is up, or once held telemetry had to be committed for want of an
  acknowledgement (the ingest away, stalled or slow): `commit_interval`, as every other
  message — until an acknowledgement removes held telemetry again. So what a power cut loses is
  at most the last `telemetry_hold` seconds of telemetry the central side had not acknowledged,
  and no more than `commit_interval` of it while nothing acknowledges.

The writer's other deadline of the same kind: rows the central side confirmed wait for a
commit that happens anyway, at most `delete_wait` (gateway.uplink.outbox_acks; `deletes`).

State under the committer's condition variable; the outbox's own clock measures the ages
(`Outbox.held_age`, `Outbox.deferred_age`), the committer's deadlines are real time
(`time.monotonic`).
"""

from __future__ import annotations

import threading
import time

from gateway.uplink.outbox import Outbox
from gateway.uplink.outbox_acks import DELETE_WAIT


class TelemetryHold:
    def __init__(self, hold: float, interval: float, delete_wait: float = DELETE_WAIT) -> None:
        self.hold = hold
        self.interval = interval
        self.delete_wait = delete_wait
        self.deletes: float | None = None
        """When the confirmed rows' deletes are due on their own (None: none wait)."""
        self.connected = False
        self.prompt = True
        """The central side acknowledged held telemetry in time (or nothing said otherwise)."""
        self.oldest: float | None = None
        """When the oldest held message was put (monotonic, as the writer last saw it)."""

    def limit(self) -> float:
        """Seconds held telemetry waits now."""
        return self.hold if self.connected and self.prompt else self.interval

    def due(self) -> float | None:
        """When the oldest held message is to be committed (None: none held)."""
        return None if self.oldest is None else self.oldest + self.limit()

    def connect(self) -> None:
        self.connected = self.prompt = True

    def settle(self, outbox: Outbox, removed: int) -> int:
        """`removed` held messages were just acknowledged: settle what waited too long (to be
        committed); returns how many."""
        if removed:
            self.prompt = True
        limit = self.limit()
        settled = outbox.settle(limit)
        if settled and limit >= self.hold:
            self.prompt = False  # not acknowledged in time: commit sooner until it is
        return settled

    def seen(self, outbox: Outbox, cond: threading.Condition) -> None:
        """The oldest held message's age and the deletes' wait, as the writer saw them at the
        end of its work."""
        age, waited = outbox.held_age(), outbox.deferred_age()
        with cond:
            now = time.monotonic()
            self.oldest = None if age is None else now - age
            self.deletes = None if waited is None else now - waited + self.delete_wait
