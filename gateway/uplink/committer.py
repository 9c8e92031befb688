"""The committer: one bounded buffer in front of the outbox, and the one thread that does all of
the outbox's SQLite work — number, commit, hand out, acknowledge, cover.

The event loop never touches the disk and never hands work to a thread per call. It appends to
the buffer (`add`, O(1); `add_samples` encodes a poll's telemetry rows first, while the samples
are fresh in the cache, into the interval's open telemetry message) and sets requests (`want`,
`ack`, `cover`, `resend`, `start_session`) under one condition variable; the writer thread
sleeps on it until there is something to do — the oldest buffered item `commit_interval` old,
an urgent item (an alarm event), acknowledgements waiting, held telemetry due for its commit,
messages the publisher wants, the replay pacer's next allowance — and then does all of it in
one go: every buffered item encoded and put, at most one transaction, then the next publish
window handed to the loop with `call_soon_threadsafe`. Deadlines are real time
(`time.monotonic`), whatever clock the messages' timestamps come from.

Asleep between commits (issue 15): a request wakes the writer only if it makes work due before
the time it already sleeps to (`_nudge`); after handing out a window it sleeps to
`commit_interval` later (PUBACKs normally arrive long before): at a batch a second it wakes
once a second — the batch put, the acknowledged ones removed, the next window. A take
that finds fewer messages than the publisher wanted says there are no more (`_more` false), so
the publisher's next `want` wakes nobody either. `wakeups` counts how often the writer woke.

Telemetry is put held (gateway.uplink.outbox_held): handed out at once, uncommitted, removed by
its acknowledgement, committed only when not acknowledged in time (gateway.uplink.hold); the
GatewayState is never committed (gateway.uplink.outbox_volatile); deletes wait for a commit
that happens anyway, at most `delete_wait` (gateway.uplink.outbox_acks). Alarm events, alarm
snapshots and command results are committed before they are handed out. Sequence numbers
(`seq`, `dseq`) are taken in the writer before the put, from blocks reserved on disk
(gateway.uplink.outbox_numbers). A storage error never ends the writer
(gateway.uplink.writer_faults: logged, retried with a back-off, on /healthz); a damaged file
is replaced (gateway.uplink.outbox_recovery)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable

from gateway.clock import Clock
from gateway.contract.channels import Channel
from gateway.contract.outbound import OutboxFigures
from gateway.contract.telemetry_encoder import EncodedRows
from gateway.contract.vocab import MessageKind
from gateway.field.sample import Sample
from gateway.uplink.hold import TelemetryHold
from gateway.uplink.items import Item, ItemWriter, telemetry_items
from gateway.uplink.outbox import Outbox, OutboxError
from gateway.uplink.replay import ReplayPacer
from gateway.uplink.windows import Window, take_window
from gateway.uplink.writer_faults import MAX_BUFFERED, Faults, drop_for_room

__all__ = ["MAX_BUFFERED", "Committer", "Window"]

log = logging.getLogger("roomwarden.uplink")


class Committer:
    def __init__(self, outbox: Outbox, pacer: ReplayPacer, clock: Clock, *, site: str,
                 gateway: str, topics: dict[Channel, str], catalog: str,
                 numbered: bool, on_reject: Callable[[str], None]) -> None:
        """`numbered`: give telemetry and alarm events a delivery sequence (`ingest` mode)."""
        self.outbox, self.pacer, self.clock, self.numbered = outbox, pacer, clock, numbered
        writer = ItemWriter(outbox, site=site, gateway=gateway, topics=topics, catalog=catalog,
                            numbered=numbered, on_reject=on_reject)
        self._store = writer.store
        self._encoder = writer.encoder
        self.interval = outbox.commit_interval
        self._holding = TelemetryHold(outbox.hold, self.interval, outbox.delete_wait)
        self._cond = threading.Condition()
        self._buffer: list[Item] = []
        self._open: Item | None = None
        """The telemetry item the next poll's rows may join (`add_samples`), while it is the
        newest in the buffer; the writer closes it when it takes the buffer."""
        self._since: float | None = None  # when the oldest buffered item arrived
        self._urgent = False
        self._acks: list[int] = []
        self._cover = 0
        self._resend: list[int] = []
        self._dirty_since: float | None = None
        """When acknowledgements or a watermark began to wait for a commit."""
        self._hurry = False
        self._want = 0
        self._more = True
        """Messages may be committed and not handed out yet (a take may find some)."""
        self._handed: float | None = None
        """When the last window was handed out (its acknowledgements are expected by
        `commit_interval` later)."""
        self._sleeping = False
        self._wake_at: float | None = None  # while asleep: when it wakes by itself (or None)
        self.wakeups = 0  # how often the writer thread woke up (a request or a deadline)
        self._paced_until: float | None = None
        self._session: tuple[int, list[Item]] | None = None
        self._epoch = 0
        self._closing = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliver: Callable[[Window], None] | None = None
        self.status = OutboxFigures(depth=0, bytes=0, budget=outbox.budget_bytes)
        self.dropped: dict[MessageKind, int] = dict.fromkeys(MessageKind, 0)
        self.last_error: str | None = None
        self.faults = Faults(self.interval)
        self.on_fresh_outbox: Callable[[], None] | None = None
        """Called on the loop when the outbox replaced a damaged file (snapshots: again)."""
        self._recoveries = outbox.recoveries
        self.alarms_dropped = 0  # alarm events dropped from a full buffer (each logged)
        self.commits = 0  # transactions
        self.floor: int | None = None
        """The lowest delivery sequence still held (GatewayState.delivery.floor)."""
        self.issued = 0
        """The highest delivery sequence given (refreshed before its message goes out): no
        acknowledgement can rightly cover more."""
        self._refresh()

    # ------------------------------------------------------------------ loop side (cheap)

    def start(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[Window], None]) -> None:
        """Start the writer; `deliver` gets each publish window on the event loop."""
        self._loop, self._deliver = loop, deliver
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="uplink-writer",
                                            daemon=True)
            self._thread.start()

    def add(self, item: Item, *, urgent: bool = False) -> bool:
        """Buffer an item; False if the buffer was full and one was dropped (writer_faults)."""
        with self._cond:
            kept = True
            self._buffer.append(item)
            if len(self._buffer) > MAX_BUFFERED:
                dropped = drop_for_room(self._buffer)
                kept = dropped is None
                if dropped is not None and dropped.kind is MessageKind.ALARM:
                    self.alarms_dropped += 1
            if self._since is None:
                self._since = time.monotonic()
                if not urgent:
                    self._nudge(self._since + self.interval)
            if urgent:
                self._urgent = True
                self._nudge(None)
            return kept

    def add_samples(self, samples: list[Sample], produced: int) -> bool:
        """Buffer a poll's reported samples as telemetry, encoded now (on the event loop, while
        they are fresh; gateway.uplink.items); False if telemetry had to be dropped to stay
        within the buffer. The polls of one commit interval share a message: while the newest
        buffered item is telemetry this method began, the next poll's rows join it
        (`TelemetryEncoder.extend`: not if it holds one of their points already, a sample is
        older than its `t0`, or past MAX_BATCH_ROWS) — one message and PUBACK an interval."""
        encoder = self._encoder
        with self._cond:
            open_ = self._open
            if open_ is not None and encoder is not None and self._buffer \
                    and self._buffer[-1] is open_ and isinstance(open_.payload, EncodedRows) \
                    and encoder.extend(open_.payload, samples, produced):
                return True
            kept = True
            items = telemetry_items(encoder, samples, produced)
            for item in items:
                kept = self.add(item) and kept
            self._open = items[-1] if items and isinstance(items[-1].payload, EncodedRows) \
                else None
            return kept

    def buffered(self) -> int:
        with self._cond:
            return len(self._buffer)

    def want(self, n: int) -> None:
        """The publisher has `n` free in-flight slots (0: none)."""
        with self._cond:
            wake = n > 0 and self._want == 0 and (self._more or bool(self._resend))
            self._want = n
            if wake:
                self._nudge(self._paced_until)

    def ack(self, ids: list[int]) -> None:
        """Delivered (PUBACK in puback mode, or no watermark applies): removed."""
        with self._cond:
            self._acks += ids
            self._mark_dirty()

    def cover(self, upto: int, went_back: bool = False) -> None:
        """The ingest's watermark for this stream (`went_back`: the ingest reset it; the
        deletes that wait are committed now, so the floor passes them: outbox_acks)."""
        with self._cond:
            if upto > self._cover or went_back:
                self._cover, self._hurry = max(upto, self._cover), self._hurry or went_back
                self._mark_dirty()

    def _mark_dirty(self) -> None:
        if self._dirty_since is None:
            self._dirty_since = time.monotonic()
            self._nudge(self._dirty_since + self.interval)

    def _nudge(self, due: float | None) -> None:
        """Work falls due at `due` (None: now): wake the writer only if it sleeps past that
        (awake, it looks at every request before it sleeps again). Under the condition."""
        if self._sleeping and (due is None or self._wake_at is None or due < self._wake_at):
            self._cond.notify()

    def resend(self, ids: list[int]) -> None:
        """Publish these entries again (paced like backlog)."""
        if ids:
            with self._cond:
                self._resend += ids
                self._cond.notify()

    def disconnected(self) -> None:
        """The session ended: held telemetry is committed within `commit_interval`."""
        with self._cond:
            self._holding.connected = False
            if self._holding.oldest is not None:
                self._nudge(self._holding.due())

    def start_session(self, births: list[Item]) -> int:
        """A new connection: everything held or stored becomes backlog, `births` go first;
        returns the session's epoch (windows of older epochs are stale)."""
        with self._cond:
            self._holding.connect()
            self._epoch += 1
            self._session = (self._epoch, births)
            self._want = 0
            self._more = True
            self._resend.clear()
            self._cond.notify()
            return self._epoch

    def close(self) -> None:
        """Commit everything buffered and close the outbox (blocks: call from a thread)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        thread = self._thread
        if thread is not None:
            thread.join()
        else:
            self._work()
            self._close_outbox()

    # ------------------------------------------------------------------ the writer thread

    def _due(self) -> list[float]:
        """Monotonic times at which work falls due (called under the condition). While the
        outbox fails, only the retry (and an urgent item, a session, closing) wakes it."""
        if self.faults.retry_at is not None:
            return [self.faults.retry_at]
        due: list[float] = []
        if self._handed is not None:
            due.append(self._handed + self.interval)
        if self._since is not None:
            due.append(self._since + self.interval)
        if self._dirty_since is not None:
            due.append(self._dirty_since + self.interval)
        due += [t for t in (self._holding.due(), self._holding.deletes) if t is not None]
        if self._want > 0 and (self._more or self._resend):
            due.append(self._paced_until or 0.0)
        return due

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not (self._closing or self._urgent or self._session is not None):
                        due = self._due()
                        self._wake_at = min(due) if due else None
                        wait = None if self._wake_at is None else \
                            self._wake_at - time.monotonic()
                        if wait is not None and wait <= 0:
                            break
                        self._sleeping = True
                        try:
                            self._cond.wait(wait)
                        finally:
                            self._sleeping = False
                        self.wakeups += 1
                    closing = self._closing
                try:
                    self._work()
                except Exception as exc:  # a bug: seen (logged), and the writer goes on
                    self.faults.failed("writer", exc)
                if closing:
                    break
        finally:
            self._close_outbox()

    def _work(self) -> None:
        with self._cond:
            items, self._buffer = self._buffer, []
            self._open = self._since = self._dirty_since = self._handed = None
            self._urgent = False
            acks, self._acks, cover = self._acks, [], self._cover
            hurry, self._hurry = self._hurry, False
            session, self._session = self._session, None
            retry = self.faults.retry_at is not None
        error: OutboxError | None = None
        if session is not None:
            try:  # (its cursors start afresh even if its commit fails: tried again below)
                self.outbox.start_session()
            except OutboxError as exc:
                error = exc
            items = items + session[1]  # births are the newest snapshots
        self._store_all(items)  # in memory: held, or pending until a commit works
        covered = self.outbox.covered
        removed = self.outbox.ack(acks) + self.outbox.cover(cover, hurry=hurry)
        with self._cond:  # held too long: committed (gateway.uplink.hold)
            settled = self._holding.settle(self.outbox, removed)
        commit = bool(items or retry or error or settled or self.outbox.dirty(defer=True))
        try:
            if commit:  # (confirmed rows alone wait: gateway.uplink.outbox_acks)
                before = self.outbox.transactions
                self.outbox.flush(defer=True)
                self.commits += self.outbox.transactions - before
            error = self.last_error = None
        except OutboxError as exc:  # the outbox keeps what it could not commit, bounded
            error = exc
            self.faults.failed("commit", exc)
        if items or session is not None or settled or retry:
            with self._cond:
                self._more = True
        if commit or items or acks or session is not None or cover != covered:
            self._refresh()  # (held ones change it without a commit; a failed commit too)
        try:
            self._hand_out()
        except OutboxError as exc:  # what was not handed out is taken at the next try
            error = error or exc
            self.faults.failed("read", exc)
        if error is None:
            self.faults.ok()
        else:
            self.last_error = self.faults.error
        self._holding.seen(self.outbox, self._cond)
        if self.outbox.recoveries != self._recoveries:  # a fresh file: snapshots again
            self._recoveries = self.outbox.recoveries
            if self.on_fresh_outbox is not None and self._loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop is closed
                    self._loop.call_soon_threadsafe(self.on_fresh_outbox)

    def _store_all(self, items: list[Item]) -> None:
        for item in items:
            try:
                self._store(item)
            except Exception as exc:  # a bug: one bad item must not take the others with it
                log.error("event=uplink_writer_error error=%r", str(exc), exc_info=exc)

    def _hand_out(self) -> None:
        with self._cond:
            if self._session is not None:
                return  # a connection began while this commit ran: its start hands out afresh
            want, epoch = self._want, self._epoch
            resend, self._resend = self._resend, []
            if want <= 0 or not (self._more or resend):
                self._resend[:0] = resend
                return
        now = time.monotonic()
        try:
            messages, resend = take_window(self.outbox, self.pacer, want, resend)
        except OutboxError:
            with self._cond:
                self._resend[:0] = resend  # taken again at the next try
            raise
        delay = self.pacer.delay()
        with self._cond:
            self._resend[:0] = resend
            if epoch != self._epoch:
                return  # a new session began meanwhile: its windows start afresh
            # fewer than wanted: every committed message is handed out (or the backlog waits
            # for the pacer, delay > 0), so the publisher's next `want` need not wake the writer
            self._more = len(messages) >= want or delay > 0 or bool(self._resend)
            self._paced_until = now + delay if delay > 0 else None
            if messages:
                self._want = 0
                self._handed = now
        if messages and self._loop is not None and self._deliver is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to send
                self._loop.call_soon_threadsafe(self._deliver, Window(epoch, messages))

    def _close_outbox(self) -> None:
        with self._cond:
            items, self._buffer, acks, self._acks = self._buffer, [], self._acks, []
            self._open = None
        self._store_all(items)
        try:
            self.outbox.ack(acks)
            self.outbox.cover(self._cover)
            self.outbox.close()
        except Exception as exc:
            log.error("event=outbox_close_failed error=%r", str(exc))

    def _refresh(self) -> None:
        try:
            self.status = self.outbox.status()
            self.dropped = self.outbox.dropped()
            self.issued = self.outbox.issued("delivery")
            if self.numbered:
                self.floor = self.outbox.floor()
        except Exception as exc:  # status must never break the data path
            self.last_error = f"status: {exc}"
