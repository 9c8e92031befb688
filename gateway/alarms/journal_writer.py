"""The alarm journal's writer thread: every commit of a running gateway's journal, off the event
loop (liveness audit L1).

The audit held a write transaction on the journal from another process (a technician's `sqlite3`
session): each commit on the event loop waited SQLite's 5 s for the lock, twice a round, so every
round of the rules took 10 s and a confirmed fire's siren sounded 22–40 s late; a slow fsync
(3 s) delayed it by one fsync per round. Now `Journal.commit` only hands the round's rows over
(`Journal.commit` → `_queued`, under the journal's lock, O(changes)) and this thread, asleep until
then, writes them — several rounds in one transaction if they came while it wrote. The outputs
never wait for it; the events wait for it before they go to the uplink (gateway.handoff).

A failed commit stays pending (new rounds merge into it) and is retried after a back-off:
`RETRY_FIRST`, doubling to `RETRY_MAX` — not at every round: a locked file costs this thread a
`WRITER_BUSY` wait per attempt and the loop nothing. The first failure of a series and then one a
minute are logged (`event=alarm_journal_write_failed`), the recovery once
(`alarm_journal_write_recovered`); /healthz shows the journal degraded meanwhile
(gateway.ops.liveness_health). A damaged file is moved aside and a fresh one started, as at a
start (gateway.alarms.journal). Pruning, a write too, runs here when the manager asks for it.

`stop` (a clean stop, SIGTERM) makes one last attempt — waiting at most `FINAL_BUSY` for the
lock — and waits for the thread at most `CLOSE_WAIT`: a stop while another process holds the
file's lock took 15 s before. What stays unwritten is logged; the alarms it concerns are
evaluated again at the next start.

After each successful commit the thread tells the loop (`call_soon_threadsafe`): the daemon's
`on_written` hands the written events on, and `settled` (a config apply, a stop) wakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.alarms.journal import Journal

log = logging.getLogger("gateway.alarms.journal")

WRITER_BUSY = 0.5
"""Seconds a write on this thread waits for another connection's lock before it fails."""
FINAL_BUSY = 0.5
"""The same for the last attempt at a stop."""
RETRY_FIRST = 0.5
"""Seconds after a failed commit before the next attempt (doubling while it fails)…"""
RETRY_MAX = 5.0
"""…to at most this: once the lock is free, the events are written within about this long."""
CLOSE_WAIT = 3.0
"""A stop waits at most this long for the thread (its attempt, then the last one)."""


class JournalWriter:
    """The thread that writes `journal` (started by `Journal.start_writer`)."""

    def __init__(self, journal: Journal, loop: asyncio.AbstractEventLoop,
                 on_written: Callable[[], None]) -> None:
        self._journal = journal
        self._cond = journal._lock
        self._loop = loop
        self._on_written = on_written
        self._written = asyncio.Event()
        """Set on the loop after each successful commit (`settled` clears it)."""
        self._closing = False
        self._prune_ns: int | None = None
        self._retry_at: float | None = None
        self._delay = RETRY_FIRST
        self.wakeups = 0
        """How often the thread woke (asleep while there is nothing to write)."""
        self.commits = 0
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self._thread.start()

    # the loop's side ----------------------------------------------------------------------

    def prune(self, now_ns: int) -> None:
        """Prune the journal as at `now_ns` (`Journal.prune`), soon."""
        with self._cond:
            self._prune_ns = now_ns
            self._cond.notify_all()

    def stop(self, timeout: float = CLOSE_WAIT) -> bool:
        """One last attempt at what is unwritten, then the thread ends; waits at most
        `timeout` for it. False if it has not ended (a write that hangs in the kernel)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("event=alarm_journal_writer_stuck waited_s=%.1f", timeout)
            return False
        return True

    def wait_written(self, timeout: float) -> bool:
        """Block (at most `timeout`) until what is handed over is written — unless the writes
        fail (then at once: the caller must not wait out a lock). True if nothing is left."""
        deadline = time.monotonic() + timeout
        journal = self._journal
        with self._cond:
            while journal.unwritten and journal.failing_for() is None \
                    and self._thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return not journal.unwritten

    async def settled(self, timeout: float) -> bool:
        """Wait on the loop (at most `timeout`) until nothing handed over is unwritten."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._journal.unwritten:
            left = deadline - loop.time()
            if left <= 0 or not self._thread.is_alive():
                return False
            self._written.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._written.wait()
        return True

    def _on_loop(self) -> None:
        self._written.set()
        try:
            self._on_written()
        except Exception:  # the hand-on must not keep `settled` from waking
            log.exception("event=alarm_journal_on_written_failed")

    # the thread ---------------------------------------------------------------------------

    def _due(self) -> float | None:
        """Seconds until there is work (0: now; None: nothing until told). Under the lock."""
        if self._closing or self._prune_ns is not None:
            return 0.0
        if not self._journal.unwritten:
            return None
        if self._retry_at is None:
            return 0.0
        return max(0.0, self._retry_at - time.monotonic())

    def _run(self) -> None:
        journal = self._journal
        try:
            while True:
                with self._cond:
                    while (wait := self._due()) != 0.0:
                        self._cond.wait(wait)
                        self.wakeups += 1
                    closing, prune, self._prune_ns = self._closing, self._prune_ns, None
                if closing:
                    journal.busy_timeout(FINAL_BUSY)
                self._work(prune)
                if closing:
                    return
        finally:
            journal.close_file()

    def _work(self, prune: int | None) -> None:
        journal = self._journal
        try:
            written = journal.attempt()
        except Exception:  # a bug: logged, retried after the back-off; the thread goes on
            log.exception("event=alarm_journal_writer_error")
            written = False
        if prune is not None:
            try:
                pruned = journal.prune_now(prune)
            except Exception:
                log.exception("event=alarm_journal_writer_error")
            else:
                if pruned:
                    log.info("event=alarm_journal_pruned events=%d", pruned)
        if not written:
            self._retry_at = time.monotonic() + self._delay
            self._delay = min(RETRY_MAX, self._delay * 2)
            return
        self._retry_at, self._delay = None, RETRY_FIRST
        self.commits += 1
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
            self._loop.call_soon_threadsafe(self._on_loop)
