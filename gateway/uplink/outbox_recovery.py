"""A damaged outbox file does not stop the gateway (as gateway.alarms.journal does for the alarm
journal): the file is renamed aside (`outbox.sqlite.corrupt-<UTC timestamp>`, with its -wal and
-shm files), the move is logged (`event=outbox_corrupt … moved_to=…`) and a fresh outbox is
started. If even that fails the outbox runs in memory (nothing survives a restart, but alarms,
polling and publishing go on).

Damaged means SQLite says so — SQLITE_CORRUPT (`database disk image is malformed`) or
SQLITE_NOTADB (`file is not a database`) — or the rows themselves are unreadable (a message
kind it does not know). An error that says nothing about the file's content (the disk is full,
an I/O error, the database is locked by another process, the directory cannot be written) is
not damage: the caller retries it, or (at start) reports it.

Only an outbox is ever moved aside. A file at the outbox's path is taken for one if it is empty
(SQLite starts a new database in it; a crash right after the file was made leaves one), begins
with SQLite's 16-byte header (`SQLite format 3\\0`: every case of damage the storage audit
made — damage within the file, or all of it but the 100-byte header), or has a name ending in
`.sqlite` (`outbox.sqlite`, the default: an outbox whose first page the damage took). Anything
else — the config store's `state.json`, a text file, a directory, a socket — is not an outbox:
`open_outbox` refuses it before touching it (OutboxError naming the path and why: its content
and mode stay as they were), and the config that named it does not start (an audit pointed
`uplink.outbox.path` at a writable file: it was renamed aside and replaced by an outbox). The
path is also never one of the gateway's other state files (gateway.uplink.parts.outbox_path).
While running, `reopen` moves the file this outbox opened and wrote itself.

What the damaged file held is lost to the uplink: the telemetry backlog, unsent alarm events,
snapshots and command results. The alarm journal still holds every alarm event; the retained
active-alarm snapshot and the gateway state are published again on every connect anyway.

- At start (`open_outbox`) nothing of the old file can be trusted: the fresh outbox is a new
  delivery stream (as a wiped outbox is: docs/mqtt-contract.md, *Delivery*).
- While running (`Outbox` calls `reopen`), the outbox keeps its stream and its counters in
  memory: the numbers already given are never given again, the lost ones count as dropped,
  and the outbox's `floor` moves past them — the ingest's watermark moves up to it as it does
  after a budget drop. Row ids continue above the old file's, so a late PUBACK of an old row
  cannot remove a new one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import time
from pathlib import Path

from gateway.clock import Clock
from gateway.contract.vocab import MessageKind
from gateway.records import dataclass
from gateway.storage import MEMORY
from gateway.uplink import outbox_table as table
from gateway.uplink.outbox_table import OutboxError, Pending, Totals

log = logging.getLogger("roomwarden.uplink")

SQLITE_HEADER = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file."""
_CORRUPT_NAMES = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
_CORRUPT_TEXT = ("malformed", "not a database")


def is_corrupt(exc: BaseException | None) -> bool:
    """`exc` (or what it was raised from) says the database file is damaged."""
    for _ in range(5):
        if exc is None:
            return False
        if isinstance(exc, KeyError | ValueError | TypeError):
            return True  # the rows: a counter not a number (unknown kinds are dropped first)
        if isinstance(exc, sqlite3.Error):
            name = str(getattr(exc, "sqlite_errorname", None) or "")
            return name.startswith(_CORRUPT_NAMES) or any(t in str(exc) for t in _CORRUPT_TEXT)
        exc = exc.__cause__
    return False


@dataclass(slots=True)
class Opened:
    """An outbox database and what its rows and counters say."""

    db: sqlite3.Connection
    counters: dict[str, int]
    count: Totals
    size: Totals
    last_id: int
    path: str
    """Where it is: the outbox's path, or `:memory:` when no file could be made."""


def _load(path: str, synchronous: str) -> Opened:
    db = table.open_table(Path(path), synchronous)  # (Path(":memory:") is still that)
    try:
        table.drop_unknown_kinds(db, Path(path))
        counters = table.read_counters(db)
        count, size = table.read_totals(db)
        last_id = table.max_id(db)
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.close()
        raise
    return Opened(db, counters, count, size, last_id, path)


def open_outbox(path: Path, synchronous: str, clock: Clock) -> tuple[Opened, str | None]:
    """The outbox at `path`; a damaged one is moved aside and a fresh one started (then the
    second value is the note that was logged). OutboxError for a file that cannot be opened
    for another reason (the disk, permissions, another process holding it), and for a file
    that is not an outbox (module docstring), left untouched."""
    refuse_foreign(path)
    try:
        return _load(str(path), synchronous), None
    except (sqlite3.Error, OutboxError, KeyError, ValueError, TypeError) as exc:
        if not is_corrupt(exc):
            if isinstance(exc, OutboxError):
                raise
            raise OutboxError(f"cannot open outbox {path}: {exc}") from exc
        return _fresh(path, synchronous, clock, exc,
                      "its whole content (unsent telemetry, alarm events, snapshots)", None)


def refuse_foreign(path: Path) -> None:
    """OutboxError if something is at `path` that is not an outbox (module docstring): opening
    it would narrow its mode and write SQLite's pages into it, or move it aside as damaged."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return  # a new outbox
    except OSError as exc:
        raise OutboxError(f"cannot open outbox {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        why = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
    elif info.st_size == 0 or path.name.endswith(".sqlite"):
        return
    else:
        try:
            with open(path, "rb") as f:
                if f.read(len(SQLITE_HEADER)) == SQLITE_HEADER:
                    return
        except OSError as exc:
            raise OutboxError(f"cannot open outbox {path}: {exc.strerror or exc}") from exc
        why = "it does not begin with SQLite's header nor is its name *.sqlite"
    raise OutboxError(f"outbox {path} exists and is not an outbox ({why}): refusing to move "
                      "or overwrite it; give uplink.outbox.path a path of its own")


def reopen(path: Path, synchronous: str, clock: Clock, exc: BaseException, lost: Totals,
           last_id: int) -> tuple[Opened, str]:
    """While running: the file at `path` turned out damaged (`exc`); `lost`: the messages it
    held, per kind. A fresh file whose row ids continue above `last_id`."""
    held = ", ".join(f"{n} {k.value}" for k, n in lost.items() if n) or "none"
    held = f"the messages it held ({held})"
    return _fresh(path, synchronous, clock, exc, held, last_id)


def _fresh(path: Path, synchronous: str, clock: Clock, exc: BaseException, held: str,
           last_id: int | None) -> tuple[Opened, str]:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock.now_ns() / 1e9))
    aside = f"{path}.corrupt-{stamp}"
    n = 1
    while os.path.exists(aside):
        n += 1
        aside = f"{path}.corrupt-{stamp}-{n}"
    moved_to = aside
    try:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(f"{path}{suffix}"):
                os.replace(f"{path}{suffix}", aside + suffix)
        opened = _load(str(path), synchronous)
        result = "fresh outbox started (a new file)"
    except (OSError, sqlite3.Error, OutboxError) as again:
        if not os.path.exists(aside):
            moved_to = "not moved"
        opened = _load(MEMORY, synchronous)
        result = f"cannot start a fresh file ({again}): the outbox runs in memory only"
    if last_id:  # (the outbox gives the ids: the fresh file's continue above the old one's)
        opened.last_id = max(opened.last_id, last_id)
    note = (f"outbox {path} damaged ({exc}); moved aside to {moved_to}; {result}; lost "
            f"{held}: the alarm journal keeps every alarm event")
    log.error("event=outbox_corrupt path=%s error=%r moved_to=%s lost=%r note=%r", path,
              str(exc), moved_to, held, note)
    return opened, note


def zero_totals() -> tuple[Totals, Totals]:
    return dict.fromkeys(MessageKind, 0), dict.fromkeys(MessageKind, 0)


def carried_counters(counters: dict[str, int], lost: Totals) -> dict[str, int]:
    """The counters a fresh file continues with while running: all (stream, sequences, marks)
    but the incident marks — the chunks were lost, so those records are handed over again at
    the next start (gateway.uplink.incidents) —, the lost messages added to the dropped."""
    out = {k: v for k, v in counters.items() if not k.startswith("mark.incident.")}
    for kind, n in lost.items():
        if n:
            out[f"dropped.{kind.value}"] = out.get(f"dropped.{kind.value}", 0) + n
    return out


def _rank(p: Pending) -> float:
    """The drop order of a pending message (the lowest goes last)."""
    if p.kind is MessageKind.ALARM and p.topic.endswith("/incidents"):
        return 0.5  # an incident record's chunk: before any alarm event
    return p.kind.priority


def drop_pending(pending: list[Pending], max_n: int, max_bytes: int,
                 counters: dict[str, int], dirty: set[str]) -> tuple[list[Pending], int]:
    """Messages put and not committed (commits keep failing) cut to `max_n` and `max_bytes`:
    the oldest telemetry first, then state, incident chunks, alarm events last — each counted
    as dropped, an alarm event also logged. Returns what is kept and its bytes."""
    n = len(pending) - max_n
    excess = sum(p.size for p in pending) - max_bytes
    for rank in (2, 1, 0.5, 0):  # telemetry, state, incident chunks, alarm events
        keep: list[Pending] = []
        for p in pending:
            if (n > 0 or excess > 0) and _rank(p) == rank:
                n, excess = n - 1, excess - p.size
                key = f"dropped.{p.kind.value}"
                counters[key] = counters.get(key, 0) + 1
                dirty.add(key)
                if rank == 0:
                    log.error("event=outbox_alarm_dropped topic=%s dseq=%s reason=%s", p.topic,
                              p.dseq, "commits keep failing: the pending messages are full")
            else:
                keep.append(p)
        pending = keep
    return pending, sum(p.size for p in pending)
