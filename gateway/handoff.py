"""Alarm events to the uplink once the alarm journal holds them (DESIGN principle 5; liveness
audit L1).

Every alarm event is journalled (gateway.alarms.journal); while the gateway runs, the journal's
writer thread commits it off the event loop. A round drives the outputs from its decision at
once — it never waits for its commit (a crash in between: the alarm is evaluated again at the
restart) — but the uplink gets an event only once the journal's commit holds it
(`Journal.durable_seq`): `hand_on` keeps a round's events, and the active set the round left,
until then; `release` hands on what is written, called by the journal's writer after each
commit and by each `hand_on`. So the outbox never holds an event the journal does not: a
restart's `resend_unsent` (events the journal holds beyond the outbox's mark: the process died
between the two commits) finds every event, and no sequence number the outbox sent is ever
handed out again.

While the journal cannot write (another process holds its lock, the disk is full) the events
wait here, in order, at most `MAX_HELD` (then the oldest go, logged; the journal keeps no more
either), and /healthz shows the journal degraded (gateway.ops.liveness_health). Before the
writer runs (a start, tests) a commit is written at once, so `hand_on` hands on at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.alarms.events import AlarmEvent, AlarmView
from gateway.alarms.journal_batch import MAX_PENDING_EVENTS

if TYPE_CHECKING:
    from gateway.alarms.journal import Journal
    from gateway.uplink.publisher import Uplink

log = logging.getLogger("roomwarden.daemon")

MAX_HELD = MAX_PENDING_EVENTS
"""Events held for the journal at most."""
STOP_SETTLE = 1.0
"""At a clean stop, how long the uplink's close waits for the journal to write the last events
(not written by then: they go out at the next start, `resend_unsent`)."""


class AlarmHandOn:
    """The daemon's alarm events to its uplink, each once the journal holds it."""

    def __init__(self, journal: Callable[[], Journal], uplink: Callable[[], Uplink | None],
                 active: Callable[[], list[AlarmView]]) -> None:
        """Each a look-up at the time of use: a config apply replaces the core (whose journal
        passes on) and may replace the uplink."""
        self._journal = journal
        self._uplink = uplink
        self._active = active
        self._held: list[AlarmEvent] = []
        """In sequence order, each once."""
        self._snapshot: tuple[list[AlarmView], int] | None = None
        """The active set after the newest round held, and its last event's seq."""
        self._released = 0
        """The highest sequence number handed on."""
        self.dropped = 0

    @property
    def held(self) -> int:
        return len(self._held)

    def hand_on(self, events: list[AlarmEvent]) -> None:
        """A round's (or command's) events, journalled: to the uplink once written, with the
        active set as it is now."""
        if not events or self._uplink() is None:
            return
        self._hold([e for e in events if e.seq > self._released])
        self._snapshot = (self._active(), max(e.seq for e in events))
        self.release()

    def _hold(self, events: list[AlarmEvent]) -> None:
        if not events:
            return
        if self._held and events[0].seq <= self._held[-1].seq:  # out of order (a resend)
            events = list({e.seq: e for e in [*self._held, *events]}.values())
            self._held = sorted(events, key=lambda e: e.seq)
        else:
            self._held.extend(events)
        if len(self._held) > MAX_HELD:
            dropped = len(self._held) - MAX_HELD
            self.dropped += dropped
            log.error("event=alarm_events_dropped count=%d reason=%r", dropped,
                      "the alarm journal has not written them for too long")
            del self._held[:dropped]

    def release(self) -> None:
        """Hand on the held events the journal has written (and the active set, once the
        events it follows are); on the loop, after each of the journal's commits."""
        uplink = self._uplink()
        if uplink is None:
            self._held.clear()
            self._snapshot = None
            return
        durable = self._journal().durable_seq
        held = self._held
        n = 0
        while n < len(held) and held[n].seq <= durable:
            n += 1
        if n:
            uplink.on_alarm_events(held[:n])
            self._released = max(self._released, held[n - 1].seq)
            del held[:n]
        if self._snapshot is not None and self._snapshot[1] <= durable:
            uplink.set_active_alarms(*self._snapshot)
            self._snapshot = None

    def resend_unsent(self) -> int:
        """Alarm events journalled but never committed to the outbox (the process died
        between the two commits, a few milliseconds) go to the uplink, in order — those
        not yet written once they are: the central side gets every event. A new outbox starts
        at the journal's present end. Returns how many."""
        uplink = self._uplink()
        if uplink is None:
            return 0
        stored = uplink.alarm_events_stored()
        journal = self._journal()
        if stored is None:
            uplink.note_alarm_events_stored(journal.last_seq)
            return 0
        events = journal.events_since(stored, limit=100_000)
        if not events:
            return 0
        log.warning("event=alarm_events_resent count=%d after_seq=%d", len(events), stored)
        durable = journal.durable_seq
        written = [e for e in events if e.seq <= durable]
        if written:
            uplink.on_alarm_events(written)
            self._released = max(self._released, written[-1].seq)
        self._hold([e for e in events if e.seq > durable])
        return len(events)

    async def settle(self, timeout: float = STOP_SETTLE) -> bool:
        """Wait (at most `timeout`) for the journal to write what it was handed, then hand on
        what it wrote: before the uplink's close at a stop. False if some wait still."""
        journal = self._journal()
        settled = await journal.settled(timeout)
        if not settled:
            log.warning("event=alarm_events_unwritten_at_stop events=%d held=%d reason=%r",
                        journal.pending_events, len(self._held),
                        journal.last_error or "the journal's writes have not finished")
        self.release()
        return settled
