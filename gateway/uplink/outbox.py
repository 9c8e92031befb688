"""Store-and-forward outbox: every uplink message is kept here until it was delivered — DESIGN
principle 5 — alarm events, alarm snapshots and command results on disk before they are
published, telemetry in memory first, the gateway's own state in memory only. Delivered means,
for telemetry and alarm events carrying a delivery sequence (`dseq`), that the ingest's
acknowledgement watermark covers it (`cover()`); for everything else (state snapshots, command
results, and all messages of a gateway configured for PUBACK-only delivery) that the broker
acknowledged it (`ack()`). The uplink decides which (gateway.uplink.delivery); the outbox only
stores.

One SQLite database in WAL mode: encoded messages and counters (number marks, drops); the SQL
is gateway.uplink.outbox_table's (one commit: outbox_commit), the state and rules this module's.

Durability and cost (storage writes scale with change, not with time: DESIGN principle 6)
- `put()` only appends to memory: it never commits. The owner commits with `flush()` — the
  uplink's committer (gateway.uplink.committer) does so on its one writer thread when the
  oldest pending message is `commit_interval` old (≤ 1 s, default 1 s), when `max_batch`
  messages wait (`flush_due()` says so), and at once for alarm events, which are published only
  once committed (an alarm event is never published before it is durable).
- Telemetry is put with `hold` (gateway.uplink.outbox_held): handed out from memory at once,
  and removed there by its acknowledgement — in steady state it never touches the disk (the
  wear audit: a commit a second rewrote ~16-40 KiB of pages for a few hundred bytes of data,
  1.75-12 GB a day). What is not acknowledged within the uplink's `telemetry_hold` (default
  10 s), or while the uplink is disconnected or the ingest away, is committed (`settle()`, then
  a commit as above) and is a row from then on (replay, budget, recovery).
- What a power cut or SIGKILL loses: nothing committed (nor the database's integrity), so no
  alarm event once journalled and handed over (its commit precedes its publication); of
  telemetry at most what was held in memory and not acknowledged — the last `telemetry_hold`
  seconds (the last `commit_interval` while disconnected or the ingest away) — and messages put
  within the last uncommitted `commit_interval`.
- `synchronous=FULL`: every commit fsyncs the WAL (NORMAL would not survive a power cut).
- `ack()` and `cover()` remove held messages at once; rows wait for the next commit that
  happens anyway, at most `delete_wait` (gateway.uplink.outbox_acks: what a crash costs then).
- The gateway's periodic state is never committed (gateway.uplink.outbox_volatile: `volatile`).

Sequence numbers (`next_seq(name)`) are reserved in blocks (gateway.uplink.outbox_numbers): a
number is never given twice, whatever happens to the process; after an unclean stop the next
process resumes above the reserved mark (a gap the ingest passes by the floor). The delivery
sequence (`dseq`, counter `delivery`) numbers telemetry batches and alarm events together
within this outbox's `stream` (a random id made with the file: a wiped outbox starts a new
stream). `floor()` is the lowest `dseq` still held, or the next one to be given. Row ids: from
one counter in memory (gateway.uplink.outbox_table).

Disk budget (`budget_bytes`, default 256 MiB): gateway.uplink.budget. Damage: the file is moved
aside and replaced (gateway.uplink.outbox_recovery); other SQLite errors raise OutboxError.

Replay: `start_session()` on every (re)connect commits what is held and makes everything stored
so far *backlog*; what is put afterwards is *live*. `next_batch(limit, backlog_limit=…)` hands
out live messages first (alarm, state, telemetry; each in put order), then backlog in the same
order, at most `backlog_limit` of it — the pacer in gateway.uplink.replay sets that limit.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterable
from pathlib import Path

from gateway.clock import Clock
from gateway.contract.vocab import MessageKind
from gateway.storage import private_dir
from gateway.uplink import outbox_recovery as recovery
from gateway.uplink import outbox_table as table
from gateway.uplink.budget import DEFAULT_BUDGET_BYTES, stored_size
from gateway.uplink.outbox_acks import DELETE_WAIT, Deferred
from gateway.uplink.outbox_commit import commit
from gateway.uplink.outbox_cursors import Cursors
from gateway.uplink.outbox_damage import Damage
from gateway.uplink.outbox_held import Held
from gateway.uplink.outbox_numbers import Numbers, lazy
from gateway.uplink.outbox_recovery import drop_pending
from gateway.uplink.outbox_table import OutboxError, OutboxMessage, Pending
from gateway.uplink.outbox_volatile import Volatile

__all__ = ["DEFAULT_BUDGET_BYTES", "Outbox", "OutboxError", "OutboxMessage", "stored_size"]

MAX_PENDING_BYTES = 32 * 2**20
"""Accounted bytes of messages put and not committed (commits keep failing) at most: beyond
them the oldest telemetry goes first, alarm events last (counted as dropped, logged). Held
telemetry counts too: beyond the bounds the oldest is committed early."""
DEFAULT_HOLD = 10.0
"""Seconds held telemetry waits for its acknowledgement before it is committed (the uplink's
`outbox.telemetry_hold`)."""


class Outbox(Damage):
    """Durable, bounded, ordered. Thread-safe (one lock); the uplink runs every call on its
    one writer thread, so fsync stays off the event loop."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock,
                 budget_bytes: int = DEFAULT_BUDGET_BYTES, commit_interval: float = 1.0,
                 max_batch: int = 1000, synchronous: str = "FULL",
                 max_pending: int = 20_000, max_pending_bytes: int = MAX_PENDING_BYTES,
                 hold: float = DEFAULT_HOLD, delete_wait: float = DELETE_WAIT) -> None:
        if not 0 < commit_interval <= 1.0:
            raise ValueError("commit_interval must be in (0, 1] seconds")
        if not commit_interval <= hold <= 300 or delete_wait < 0:
            raise ValueError("hold must be between commit_interval and 300 seconds, "
                             "delete_wait not negative")
        if budget_bytes <= 0 or max_batch < 1 or max_pending < max_batch:
            raise ValueError("budget_bytes, max_batch and max_pending must be positive "
                             "(max_pending >= max_batch)")
        if synchronous not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError("synchronous must be NORMAL, FULL or EXTRA")
        self.path = Path(path)
        self.budget_bytes = budget_bytes
        self.commit_interval, self.hold = commit_interval, hold
        self.max_batch = max_batch
        self.max_pending, self.max_pending_bytes = max_pending, max_pending_bytes
        self._synchronous, self._clock = synchronous, clock
        self._now_ns = clock.now_ns
        self._lock = threading.RLock()
        private_dir(self.path.parent)
        opened, self.recovery_note = recovery.open_outbox(self.path, synchronous, clock)
        """Set when a damaged file was moved aside (at opening or since): what was logged."""
        self.recoveries = int(self.recovery_note is not None)
        self._db, self._last_id = opened.db, opened.last_id
        """The highest row id given (held, pending or stored; module doc)."""
        self._pending: list[Pending] = []
        self._pending_bytes = 0
        self._held, self._volatile = Held(), Volatile()
        self._deferred, self.delete_wait = Deferred(delete_wait, max_batch), delete_wait
        """Confirmed rows waiting for a commit that happens anyway (gateway.uplink.outbox_acks)."""
        self._counters = opened.counters
        self._dirty_counters: set[str] = set()
        self._numbers = Numbers(self._counters)
        self._numbers.opened(self._counters, self._dirty_counters, self.path)
        if "stream" not in self._counters:  # committed with the first messages
            self._counters["stream"] = secrets.randbelow(2**62) + 1
            self._dirty_counters.add("stream")
        self._covered = 0
        """The ingest's watermark for this stream: dseq ≤ it are delivered."""
        self._count, self._bytes = opened.count, opened.size
        self._cursors = Cursors(self._last_id)
        self.transactions = 0
        """Commits done (each one transaction and its fsync)."""

    # ------------------------------------------------------------------ writing

    def next_seq(self, name: str = "telemetry") -> int:
        """The next number of sequence `name` (1, 2, …); never given again, whatever happens
        to the process (reserved in blocks: gateway.uplink.outbox_numbers)."""
        with self._lock:
            return self._numbers.take(name, self._counters, self._dirty_counters)

    def issued(self, name: str = "delivery") -> int:
        """The highest number of sequence `name` given so far (0: none yet; after an unclean
        stop, the previous process's reserved mark)."""
        with self._lock:
            return self._numbers.issued.get(name, 0)

    def mark(self, name: str) -> int | None:
        """A high-water mark kept with the messages (None if never set)."""
        with self._lock:
            return self._counters.get(f"mark.{name}")

    def set_mark(self, name: str, value: int) -> None:
        """Set a high-water mark; committed in the same transaction as the messages put before
        the next commit (e.g. the last alarm event handed to the outbox)."""
        with self._lock:
            key = f"mark.{name}"
            self._counters[key] = value
            self._dirty_counters.add(key)

    def put(self, kind: MessageKind, topic: str, payload: bytes, *, qos: int = 1,
            retain: bool = False, replace: bool = False, created_ns: int | None = None,
            dseq: int | None = None, final: bool = False, hold: bool = False,
            seq: int | None = None, volatile: bool = False) -> None:
        """Queue a message for the next commit (never commits: see `flush_due`).
        `replace`: a newer message on the same topic supersedes any older one not yet acked
        (snapshots: state, active alarms) but a `final` one (a config request's outcome).
        `dseq`: the delivery sequence of a message that leaves only when covered.
        `hold`: keep it in memory and hand it out from there until it is acknowledged or
        `settle` commits it (telemetry; `seq`: its batch number). `volatile`: a snapshot kept
        in memory only (gateway.uplink.outbox_volatile) — committed after all while the file
        or the pending messages hold an older one on its topic, so that one is replaced."""
        if qos not in (0, 1, 2):
            raise ValueError("qos must be 0, 1 or 2")
        if replace and not retain:
            raise ValueError("replace applies to retained messages (snapshots) only")
        if hold and replace:
            raise ValueError("a snapshot is not held")
        with self._lock:
            size = stored_size(len(payload), len(topic.encode()))
            message = Pending(
                MessageKind(kind), topic, bytes(payload), qos, retain,
                self._clock.now_ns() if created_ns is None else created_ns, replace,
                size, self._clock.monotonic(), dseq, final, seq=seq)
            if volatile and replace and not final and not self._retained(topic):
                self._last_id += 1
                self._volatile.put(self._last_id, message)
            elif hold:
                self._last_id += 1
                message.id = self._last_id
                self._held.add(message.id, message)
            else:
                self._pending.append(message)
                self._pending_bytes += size
            while self._held and (len(self._held) + len(self._pending) > self.max_pending
                                  or self._held.bytes + self._pending_bytes
                                  > self.max_pending_bytes):
                self._settle(self._held.older(self._held.oldest_since()))  # commit early
            if len(self._pending) > self.max_pending \
                    or self._pending_bytes > self.max_pending_bytes:
                # commits keep failing: stay bounded (telemetry first, alarm events last)
                self._pending, self._pending_bytes = drop_pending(
                    self._pending, self.max_pending, self.max_pending_bytes, self._counters,
                    self._dirty_counters)

    def _retained(self, topic: str) -> bool:
        """An older snapshot on `topic` is pending or stored (a volatile one must replace it)."""
        if any(p.topic == topic and p.replace for p in self._pending):
            return True
        try:
            with self._reading("read"):
                return table.has_retained(self._db, topic)
        except OutboxError:  # unknown: committed, as any snapshot
            return True

    def held_age(self) -> float | None:
        """Seconds since the oldest held message was put (None: none held)."""
        with self._lock:
            since = self._held.oldest_since()
            return None if since is None else max(0.0, self._clock.monotonic() - since)

    def settle(self, older_than: float = 0.0) -> int:
        """Held messages put at least `older_than` seconds ago are committed with the next
        commit (0: all); returns how many."""
        with self._lock:
            return self._settle(self._held.older(self._clock.monotonic() - older_than))

    def _settle(self, messages: list[tuple[int, Pending]]) -> int:
        for _, message in messages:
            self._pending.append(message)
            self._pending_bytes += message.size
        return len(messages)

    def flush_due(self) -> bool:
        """A commit is due: the oldest pending message is `commit_interval` old, `max_batch`
        wait, or counters or deletes that may wait no longer (`dirty(defer=True)`)."""
        with self._lock:
            if len(self._pending) >= self.max_batch:
                return True
            if self._pending:
                return self._clock.monotonic() - self._pending[0].since >= self.commit_interval
            return self.dirty(defer=True)

    def dirty(self, *, defer: bool = False) -> bool:
        """Deletes of confirmed rows (`defer`: only those past `delete_wait`, or many),
        counters or a reservation of numbers about to be published wait for a commit (a
        reservation made early is written with the next commit that happens anyway: not a
        reason for one)."""
        with self._lock:
            deletes = self._deferred.due(self._clock.monotonic()) if defer \
                else bool(self._deferred)
            return deletes or self._numbers.undurable() or not lazy(self._dirty_counters)

    def deferred_age(self) -> float | None:
        """Seconds the oldest confirmed row has waited for its delete (None: none waits)."""
        with self._lock:
            return self._deferred.age(self._clock.monotonic())

    def maybe_flush(self) -> bool:
        """Commit if `flush_due` (call at least every `commit_interval`)."""
        with self._lock:
            if self.flush_due():
                self.flush(defer=True)
                return True
            return False

    def flush(self, *, force: bool = False, defer: bool = False) -> int:
        """Commit everything pending (deletes, replacements, budget drops, new messages,
        counters) in one transaction (none if nothing is due, unless `force`; `defer`: deletes
        alone are not due before `delete_wait`); returns the number of messages stored. A
        damaged file is replaced by a fresh one, which then takes the commit (module doc)."""
        with self._lock:
            try:
                return self._commit(force, defer)
            except OutboxError as exc:
                if not recovery.is_corrupt(exc):
                    raise
                self._recover(exc)
            return self._commit(force, defer)

    def _commit(self, force: bool = False, defer: bool = False) -> int:
        with self._lock:
            if not (self._pending or self.dirty(defer=defer) or force):
                return 0
            deferred = self._deferred
            done = commit(self._db, budget_bytes=self.budget_bytes, pending=self._pending,
                          acked=deferred.acked,
                          covered=self._covered if deferred.cover_pending else None,
                          counters=self._counters, dirty=self._dirty_counters,
                          count=self._count, size=self._bytes, last_id=self._last_id)
            self.transactions += 1
            self._cursors.stored(done.stored)
            self._last_id = done.last_id
            self._pending.clear()
            self._pending_bytes = 0
            deferred.clear()
            self._dirty_counters.clear()
            self._counters = done.counters
            self._numbers.committed(done.counters)
            self._count, self._bytes = done.count, done.size
            return len(done.stored)

    # ------------------------------------------------------------------ publishing

    def start_session(self) -> None:
        """Call on every (re)connect, before `next_batch`: commits what is pending and held,
        makes every stored message backlog and hands out unacknowledged ones again from the
        start."""
        with self._lock:
            self.settle()
            self._volatile.new_session()
            try:  # (rows a PUBACK delivered are deleted before they could be handed out again)
                self.flush(force=bool(self._deferred.acked))
            finally:  # (what a failed flush left pending is live when it is committed)
                self._cursors = Cursors(min((p.id - 1 for p in self._pending
                                             if p.id is not None), default=self._last_id))

    def next_batch(self, limit: int, *, backlog_limit: int | None = None
                   ) -> list[OutboxMessage]:
        """Up to `limit` messages not handed out yet in this session: live ones first (held
        telemetry once its numbers are reserved on disk), then at most `backlog_limit` backlog
        ones; each part in priority order (alarm, state, telemetry) and, within a kind, in the
        order they were put."""
        with self._lock, self._reading("read"):
            return self._cursors.next_batch(
                self._db, self._covered, limit, backlog_limit, self._held,
                lambda m: self._numbers.ready(m.seq, m.dseq), self._volatile)

    def fetch(self, ids: Iterable[int]) -> list[OutboxMessage]:
        """The messages with these ids that are still here and not covered (to publish again:
        the ingest did not confirm them in time), as backlog, in id order."""
        wanted = set(ids)
        with self._lock, self._reading("read"):
            held = self._held.fetch(wanted)
            stored = table.fetch(self._db, wanted - {m.id for m in held}, self._covered)
            return sorted(held + stored, key=lambda m: m.id)

    @property
    def stream(self) -> int:
        """This outbox's delivery stream (see module doc)."""
        with self._lock:
            return self._counters["stream"]

    @property
    def covered(self) -> int:
        with self._lock:
            return self._covered

    def cover(self, upto: int, *, hurry: bool = False) -> int:
        """The ingest stored every dseq ≤ `upto` of this stream: held messages go now, rows at
        the next commit (and never handed out again). Returns the held messages removed.
        `hurry`: the deletes that wait are due now."""
        with self._lock:
            if hurry and self._deferred:
                self._deferred.since = float("-inf")
            if upto <= self._covered:
                return 0
            with self._reading("read"):
                self._deferred.cover(self._db, self._covered, upto, self._clock.monotonic())
            self._covered = upto
            return self._held.remove_covered(upto)

    def ack(self, ids: Iterable[int]) -> int:
        """The broker acknowledged these messages (PUBACK): held ones go now, rows at the next
        commit. Returns the held messages removed."""
        with self._lock:
            wanted = set(ids)
            gone = self._held.remove_ids(wanted)
            rest, now = wanted - gone - self._volatile.remove_ids(wanted), self._clock.monotonic()
            recoveries = self.recoveries
            try:
                with self._reading("read"):
                    self._deferred.ack(self._db, rest, now)
            except OutboxError:  # unread (a damaged file is replaced: its rows are gone)
                if self.recoveries == recoveries:
                    self._deferred.unread(rest, now)
            return len(gone)

    def close(self) -> None:
        """Commit what is pending and held, with the exact last numbers (a clean stop: the
        next process numbers on without a gap), and close."""
        with self._lock:
            try:
                self.settle()
                self._numbers.finish(self._counters, self._dirty_counters)
                self.flush(force=True)
            finally:
                self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
