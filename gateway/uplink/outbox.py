"""Store-and-forward outbox: every uplink message is durable here before it is published and
leaves only when it was delivered — DESIGN principle 5. Delivered means, for telemetry and
alarm events carrying a delivery sequence (`dseq`), that the ingest's acknowledgement
watermark covers it (`cover()`); for everything else (state snapshots, command results, and
all messages of a gateway configured for PUBACK-only delivery) that the broker acknowledged it
(`ack()`). The uplink decides which (gateway.uplink.delivery); the outbox only stores.

One SQLite database in WAL mode, one table of encoded messages (topic, payload, kind, QoS,
retain flag, creation time) and one of counters (sequence numbers, dropped counts); the SQL is
gateway.uplink.outbox_table's, the state and its rules this module's.

Durability and cost
- `put()` only appends to an in-memory batch: it never commits. The owner commits with
  `flush()` — the uplink's committer (gateway.uplink.committer) does so on its one writer
  thread when the oldest pending message is `commit_interval` old (≤ 1 s, default 1 s), when
  `max_batch` messages wait (`flush_due()` says so), and at once for alarm events. A process
  killed with SIGKILL, or a board that loses power, loses at most the messages of the last
  uncommitted interval — never a committed one, never the database's integrity.
- `synchronous=FULL`: in WAL mode every commit fsyncs the WAL. NORMAL would skip that fsync and
  survive a process crash but not a power cut — committed transactions since the last
  checkpoint could vanish, which breaks the "at most the last interval" promise on a board that
  is simply unplugged. Because commits are batched (≤ 1 per second in steady state, plus one per
  alarm event), FULL costs about one fsync a second, which an SD card sustains easily.
- `ack()` and `cover()` only record ids or a watermark; the rows are deleted in the next
  commit. A crash in between re-sends them (at-least-once); the ingest drops duplicates by
  (gateway, seq).
- Only committed rows are handed to the publisher, so nothing is published that a crash could
  take back (a reused telemetry sequence number would otherwise describe two batches).

Sequence numbers (`next_seq(name)`) are counters stored in the same transaction as the
messages that carry them: after a crash the counter resumes at the last committed message, so
a number is never reused for two published messages. The delivery sequence (`dseq`, counter
`delivery`) numbers telemetry batches and alarm events together within this outbox's `stream`
(a random id made with the file: a wiped outbox starts a new stream, so the ingest's old
watermark cannot cover its new numbers). `floor()` is the lowest `dseq` still stored.

Disk budget (`budget_bytes`, default 256 MiB): gateway.uplink.budget — the oldest telemetry is
dropped first, then state, alarm events last; the drops are counted per kind.

Damage (gateway.uplink.outbox_recovery): a file SQLite calls damaged — at opening, or at any
read or commit while running — is moved aside, logged (`event=outbox_corrupt`) and replaced by
a fresh one; a commit that found it damaged is done again in the fresh file, alarm events
first. Any other SQLite error is raised as OutboxError (the committer retries).

Replay: `start_session()` on every (re)connect makes everything stored so far *backlog*; what
is put afterwards is *live*. `next_batch(limit, backlog_limit=…)` hands out live messages first
(alarm, state, telemetry; each in put order), then backlog in the same order, at most
`backlog_limit` of it — the pacer in gateway.uplink.replay sets that limit from a rate.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from gateway.clock import Clock
from gateway.contract.wire import MessageKind, OutboxStatus
from gateway.storage import private_dir
from gateway.uplink import outbox_recovery as recovery
from gateway.uplink import outbox_table as table
from gateway.uplink.budget import DEFAULT_BUDGET_BYTES, enforce_budget, stored_size
from gateway.uplink.outbox_cursors import Cursors
from gateway.uplink.outbox_recovery import carried_counters, drop_pending
from gateway.uplink.outbox_table import OutboxError, OutboxMessage, Pending

__all__ = ["DEFAULT_BUDGET_BYTES", "Outbox", "OutboxError", "OutboxMessage", "stored_size"]

MAX_PENDING_BYTES = 32 * 2**20
"""Accounted bytes of messages put and not committed (commits keep failing) at most: beyond
them the oldest telemetry goes first, alarm events last (counted as dropped, logged)."""


class Outbox:
    """Durable, bounded, ordered. Thread-safe (one lock); the uplink runs every call on its
    one writer thread, so fsync stays off the event loop."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock,
                 budget_bytes: int = DEFAULT_BUDGET_BYTES, commit_interval: float = 1.0,
                 max_batch: int = 1000, synchronous: str = "FULL",
                 max_pending: int = 20_000, max_pending_bytes: int = MAX_PENDING_BYTES
                 ) -> None:
        if not 0 < commit_interval <= 1.0:
            raise ValueError("commit_interval must be in (0, 1] seconds")
        if budget_bytes <= 0 or max_batch < 1 or max_pending < max_batch:
            raise ValueError("budget_bytes, max_batch and max_pending must be positive "
                             "(max_pending >= max_batch)")
        if synchronous not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError("synchronous must be NORMAL, FULL or EXTRA")
        self.path = Path(path)
        self.budget_bytes = budget_bytes
        self.commit_interval = commit_interval
        self.max_batch = max_batch
        self.max_pending, self.max_pending_bytes = max_pending, max_pending_bytes
        self._synchronous, self._clock = synchronous, clock
        self._lock = threading.RLock()
        private_dir(self.path.parent)
        opened, self.recovery_note = recovery.open_outbox(self.path, synchronous, clock)
        """Set when a damaged file was moved aside (at opening or since): what was logged."""
        self.recoveries = int(self.recovery_note is not None)
        self._db, self._last_id = opened.db, opened.last_id
        """The highest row id given (a fresh file after damage continues above it)."""
        self._pending: list[Pending] = []
        self._pending_bytes = 0
        self._acked: set[int] = set()
        self._counters = opened.counters
        self._dirty_counters: set[str] = set()
        if "stream" not in self._counters:  # committed with the first messages
            self._counters["stream"] = secrets.randbelow(2**62) + 1
            self._dirty_counters.add("stream")
        self._covered = 0
        """The ingest's watermark for this stream: dseq ≤ it are delivered."""
        self._cover_pending = False
        self._count, self._bytes = opened.count, opened.size
        self._cursors = Cursors(self._last_id)

    # ------------------------------------------------------------------ writing

    def next_seq(self, name: str = "telemetry") -> int:
        """The next number of sequence `name` (1, 2, …); persisted with the next commit, so it
        survives restarts together with the messages that carry it."""
        with self._lock:
            key = f"seq.{name}"
            value = self._counters.get(key, 0) + 1
            self._counters[key] = value
            self._dirty_counters.add(key)
            return value

    def issued(self, name: str = "delivery") -> int:
        """The highest number of sequence `name` given so far (0: none yet)."""
        with self._lock:
            return self._counters.get(f"seq.{name}", 0)

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
            dseq: int | None = None, final: bool = False) -> None:
        """Queue a message for the next commit (never commits: see `flush_due`).
        `replace`: a newer message on the same topic supersedes any older one not yet acked
        (snapshots: state, active alarms) but a `final` one (a config request's outcome).
        `dseq`: the delivery sequence of a message that leaves only when covered."""
        if qos not in (0, 1, 2):
            raise ValueError("qos must be 0, 1 or 2")
        if replace and not retain:
            raise ValueError("replace applies to retained messages (snapshots) only")
        with self._lock:
            size = stored_size(len(payload), len(topic.encode()))
            self._pending.append(Pending(
                MessageKind(kind), topic, bytes(payload), qos, retain,
                self._clock.now_ns() if created_ns is None else created_ns, replace,
                size, self._clock.monotonic(), dseq, final))
            self._pending_bytes += size
            if len(self._pending) > self.max_pending \
                    or self._pending_bytes > self.max_pending_bytes:
                # commits keep failing: stay bounded (telemetry first, alarm events last)
                self._pending, self._pending_bytes = drop_pending(
                    self._pending, self.max_pending, self.max_pending_bytes, self._counters,
                    self._dirty_counters)

    def flush_due(self) -> bool:
        """A commit is due: the oldest pending message is `commit_interval` old, `max_batch`
        wait, or only acknowledgements and counters wait."""
        with self._lock:
            if len(self._pending) >= self.max_batch:
                return True
            if self._pending:
                return self._clock.monotonic() - self._pending[0].since >= self.commit_interval
            return self.dirty()

    def dirty(self) -> bool:
        """Acknowledgements, a new watermark or counters wait for a commit."""
        with self._lock:
            return bool(self._acked or self._dirty_counters or self._cover_pending)

    def maybe_flush(self) -> bool:
        """Commit if the oldest uncommitted message is `commit_interval` old (or acks or counters
        wait). Call at least every `commit_interval`."""
        with self._lock:
            if self.flush_due():
                self.flush()
                return True
            return False

    def flush(self) -> int:
        """Commit everything pending (acks, replacements, budget drops, new messages, counters)
        in one transaction; returns the number of messages stored. A damaged file is replaced
        by a fresh one, which then takes the commit (see the module doc)."""
        with self._lock:
            try:
                return self._commit()
            except OutboxError as exc:
                if not recovery.is_corrupt(exc):
                    raise
                self._recover(exc)
            return self._commit()

    def _commit(self) -> int:
        with self._lock:
            if not (self._pending or self._acked or self._dirty_counters
                    or self._cover_pending):
                return 0
            pending = table.coalesce(self._pending)
            db = self._db
            count, size = dict(self._count), dict(self._bytes)
            dropped: dict[MessageKind, int] = {}
            try:
                db.execute("BEGIN IMMEDIATE")
                if self._acked:
                    table.delete_ids(db, sorted(self._acked), count, size)
                if self._cover_pending:
                    table.delete_covered(db, self._covered, count, size)
                for topic in {p.topic for p in pending if p.replace}:
                    table.delete_retained(db, topic, count, size)
                counters, dirty = dict(self._counters), set(self._dirty_counters)
                pending = enforce_budget(db, self.budget_bytes, pending, count, size, dropped,
                                         counters)
                table.insert(db, pending, count, size)
                for kind, n in dropped.items():
                    counters[f"dropped.{kind.value}"] = counters.get(f"dropped.{kind.value}",
                                                                     0) + n
                    dirty.add(f"dropped.{kind.value}")
                table.write_counters(db, counters, dirty)
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):  # (a damaged file may refuse it)
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                raise OutboxError(f"outbox commit failed: {exc}") from exc
            self._cursors.stored(p.kind for p in pending)
            self._last_id += len(pending)  # AUTOINCREMENT: the next ids, in order
            self._pending.clear()
            self._pending_bytes = 0
            self._acked.clear()
            self._dirty_counters.clear()
            self._cover_pending = False
            self._counters = counters
            self._count, self._bytes = count, size
            return len(pending)

    # ------------------------------------------------------------------ damage

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
        counters, pending messages (alarm events first) and watermark (module doc of
        gateway.uplink.outbox_recovery); the messages the file held count as dropped."""
        with self._lock:
            lost = dict(self._count)
            last_id = max(self._last_id, self._cursors.highest())
            with contextlib.suppress(sqlite3.Error):
                self._db.close()  # (rolls back an open transaction)
            opened, note = recovery.reopen(self.path, self._synchronous, self._clock, exc, lost,
                                           last_id)
            self._db, self._last_id = opened.db, opened.last_id
            self.recovery_note, self.recoveries = note, self.recoveries + 1
            self._counters = carried_counters(self._counters, lost)
            self._dirty_counters = set(self._counters)
            self._count, self._bytes = recovery.zero_totals()
            self._acked.clear()
            self._cover_pending = False
            self._pending.sort(key=lambda p: p.kind.priority)  # alarm events first
            self._cursors = Cursors(self._last_id, backlog=False)

    # ------------------------------------------------------------------ publishing

    def start_session(self) -> None:
        """Call on every (re)connect, before `next_batch`: commits what is pending, makes every
        stored message backlog and hands out unacknowledged ones again from the start."""
        with self._lock:
            try:
                self.flush()
            finally:  # (what a failed flush left pending is live when it is committed)
                self._cursors = Cursors(self._last_id)

    def next_batch(self, limit: int, *, backlog_limit: int | None = None
                   ) -> list[OutboxMessage]:
        """Up to `limit` committed messages not handed out yet in this session: live ones
        first, then at most `backlog_limit` backlog ones; each part in priority order (alarm,
        state, telemetry) and, within a kind, in the order they were put."""
        with self._lock, self._reading("read"):
            return self._cursors.next_batch(self._db, self._covered, limit, backlog_limit)

    def fetch(self, ids: Iterable[int]) -> list[OutboxMessage]:
        """The messages with these ids that are still here and not covered (to publish again:
        the ingest did not confirm them in time), as backlog, in id order."""
        with self._lock, self._reading("read"):
            return table.fetch(self._db, ids, self._covered)

    @property
    def stream(self) -> int:
        """This outbox's delivery stream (see module doc)."""
        with self._lock:
            return self._counters["stream"]

    @property
    def covered(self) -> int:
        with self._lock:
            return self._covered

    def cover(self, upto: int) -> None:
        """The ingest stored every dseq ≤ `upto` of this stream: those messages are removed at
        the next commit (and never handed out again)."""
        with self._lock:
            if upto > self._covered:
                self._covered = upto
                self._cover_pending = True

    def floor(self) -> int:
        """The lowest dseq still stored and not covered, or the next one to be given: every
        number below it is done (delivered, or dropped to stay within the budget)."""
        with self._lock:
            pending = [p.dseq for p in self._pending if p.dseq is not None]
            with self._reading("read"):
                stored = table.lowest_dseq(self._db, self._covered)
            candidates = [v for v in (stored, *pending) if v is not None]
            if candidates:
                return int(min(candidates))
            return max(self._covered, self._counters.get("seq.delivery", 0)) + 1

    def ack(self, ids: Iterable[int]) -> None:
        """The broker acknowledged these messages (PUBACK): removed at the next commit."""
        with self._lock:
            self._acked.update(ids)

    # ------------------------------------------------------------------ status

    def depth(self, kind: MessageKind | None = None) -> int:
        """Messages not yet removed (committed and pending; acks count at their commit)."""
        with self._lock:
            kinds = list(MessageKind) if kind is None else [kind]
            return sum(self._count[k] for k in kinds) + sum(
                1 for p in self._pending if p.kind in kinds)

    def stored_bytes(self) -> int:
        with self._lock:
            return sum(self._bytes.values()) + self._pending_bytes

    def oldest_age(self) -> float | None:
        """Seconds since the oldest message still here was created; None when empty."""
        with self._lock:
            with self._reading("read"):
                stored = table.oldest_created(self._db)
            oldest = [p.created_ns for p in self._pending[:1]] + stored
            if not oldest:
                return None
            return max(0.0, (self._clock.now_ns() - min(oldest)) / 1e9)

    def dropped(self) -> dict[MessageKind, int]:
        """Messages dropped to keep within the budget, per kind, since the outbox was created."""
        with self._lock:
            return {k: self._counters.get(f"dropped.{k.value}", 0) for k in MessageKind}

    def status(self) -> OutboxStatus:
        return OutboxStatus(depth=self.depth(), bytes=self.stored_bytes(),
                            budget=self.budget_bytes, oldest_age_s=self.oldest_age())

    def disk_bytes(self) -> int:
        """The database file and its WAL, as on disk."""
        return sum(p.stat().st_size for p in
                   (self.path, self.path.with_name(self.path.name + "-wal"))
                   if p.exists())

    def close(self) -> None:
        """Commit what is pending and close."""
        with self._lock:
            try:
                self.flush()
            finally:
                self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
