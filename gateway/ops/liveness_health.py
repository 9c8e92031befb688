"""The `journal` and `event_loop` health checks: whether the alarm journal gets written, and
whether the event loop that runs the rules and drives the outputs wakes on time (liveness audit
L1: a technician's `sqlite3` session held the journal's lock, every round blocked 10 s and the
siren sounded 22–40 s late, while /healthz said "ok" and the watchdog kept being fed).

- `journal` — **degraded** while the journal's commits fail (another process holds its lock,
  the disk is full or read-only: `alarm journal: 3 events not yet written (database is locked);
  failing for 12 s …`), or while a change has waited `JOURNAL_LATE` seconds or more to be
  written (the disk is slow or stalled: each commit is fsynced). The alarms and outputs do not
  wait for the journal (gateway.alarms.journal_writer); the events wait for it before they go to
  the uplink (gateway.handoff), and a stop now would lose what is unwritten (those alarms are
  evaluated again at the start). It is ok again once everything is written.
- `event_loop` — **degraded** while the loop is blocked: `LATE_COUNT` of the watchdog feeder's
  last wake-ups came `LATE_AFTER` seconds or more late (gateway.service.looplag); the same
  withholds the systemd watchdog, which then restarts the gateway. One late wake-up is named in
  the detail but stays ok. Without the service's watchdog feeder (a gateway run by a test, the
  demo) it is not measured and stays ok.

Neither is **failing**: the safety functions go on in both cases (a blocked loop is mended by
the watchdog's restart, not by whoever reads /healthz).
"""

from __future__ import annotations

from typing import Protocol

from gateway.service.looplag import LoopLag

JOURNAL_LATE = 5.0
"""Seconds a change may wait to be written before the journal counts as degraded (a commit is
written within milliseconds: one fsync)."""


class JournalState(Protocol):
    @property
    def pending_events(self) -> int: ...

    @property
    def durable_seq(self) -> int: ...

    @property
    def last_error(self) -> str | None: ...

    def failing_for(self) -> float | None: ...

    def unwritten_for(self) -> float: ...


def short(text: str | None, limit: int = 120) -> str:
    """An error text as a check's detail shows it: one line, at most `limit` characters (the
    other health checks use it too)."""
    text = " ".join((text or "unknown").split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def journal_trouble(journal: JournalState) -> tuple[bool, str]:
    """(degraded, detail) of the `journal` check (gateway.ops.health wraps it)."""
    n = journal.pending_events
    events = f"{n} event{'s' * (n != 1)} not yet written"
    failing = journal.failing_for()
    if failing is not None:
        return True, (f"alarm journal: {events} ({short(journal.last_error or '?')}); "
                      f"failing for {failing:.0f} s, retried — alarms and outputs go on, the "
                      "events go to the uplink once written")
    waiting = journal.unwritten_for()
    if waiting >= JOURNAL_LATE:
        return True, (f"alarm journal: {events}; a write has waited {waiting:.0f} s (the "
                      "disk is slow or stalled)")
    last = journal.durable_seq
    return False, f"everything written (last event {last})" if last else "nothing to write yet"


def loop_trouble(lag: LoopLag) -> tuple[bool, str]:
    """(degraded, detail) of the `event_loop` check (gateway.ops.health wraps it)."""
    problem = lag.problem()
    if problem is not None:
        return True, f"{problem}: rules and outputs are delayed; the watchdog is withheld"
    return False, lag.summary()
