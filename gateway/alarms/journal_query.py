"""Reading the alarm journal's events back, filtered and paged, newest first (the panel's Events
view; issue 12).

Each call opens its own connection (`gateway.storage.open_sqlite`, `query_only`), so it can run
in a worker thread while the alarm manager writes through its own: the journal is in WAL mode,
where a reader neither blocks the writer nor waits for it, and sees the last committed
transaction. Every call is bounded three ways:

* a page holds at most `MAX_PAGE` events;
* at most `MAX_SCAN` events of the time range are looked at, newest first (the `ts` index walks
  them in order). When the filters match fewer than a page among them, the page comes back
  short with a cursor where the look stopped (`EventPage.scanned_to_ns`): the next call goes
  on from there. A filter that matches nothing in a busy month costs a few of these calls,
  never one long one;
* a call that still takes longer than `MAX_SECONDS` is interrupted (`JournalQueryError`).

The order is `(ts, seq)` descending: `ts` is when the transition happened, `seq` breaks ties
(and increases with time). A cursor is the `(ts, seq)` of the last event handed out; the next
page holds what is strictly older.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from gateway.records import dataclass
from gateway.storage import open_sqlite

MAX_PAGE = 200
"""Events per page at most."""
MAX_SCAN = 20_000
"""Events of the time range looked at per call at most."""
MAX_SECONDS = 2.0
"""A call that takes longer is interrupted."""
SEVERITIES = ("critical", "major", "minor", "warning")

Cursor = tuple[int, int]
"""(ts, seq) of the last event handed out; the next page is strictly older."""


class JournalQueryError(Exception):
    """The journal cannot be read now (the message says why)."""


@dataclass(frozen=True, slots=True)
class EventFilter:
    since_ns: int
    """Oldest event time included."""
    until_ns: int
    """Newest event time included."""
    room: str | None = None
    """Only this room's events (exact id)."""
    severities: frozenset[str] = frozenset()
    """Only events of these severities (empty: any, also events without one)."""
    actor: str | None = None
    """Only events whose actor contains this text (ASCII letters ignore case)."""
    limit: int = 50
    before: Cursor | None = None
    """Only events older than this cursor (the next page)."""

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PAGE:
            raise ValueError(f"limit must be 1..{MAX_PAGE}")
        if not self.severities <= set(SEVERITIES):
            raise ValueError(f"severities are {', '.join(SEVERITIES)}")


@dataclass(frozen=True, slots=True)
class EventPage:
    events: list[dict[str, Any]]
    """Newest first; each as `AlarmEvent.as_dict()` gives it (and any column the journal
    adds)."""
    next: Cursor | None
    """Where the next (older) page starts; None: nothing older in the time range."""
    scanned_to_ns: int | None
    """Set when the scan bound stopped the look before the page was full: the time it reached
    (nothing between it and the page's events matched)."""


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _row(names: list[str], values: tuple[Any, ...]) -> dict[str, Any]:
    event = dict(zip(names, values, strict=True))
    try:
        event["value"] = None if event.get("value") is None else json.loads(event["value"])
    except ValueError:
        event["value"] = None
    for flag in ("first_out", "chattering", "drill"):
        if flag in event:
            event[flag] = bool(event[flag])
    if event.get("clock_synced") is not None:  # (NULL: unknown, journalled before the mark)
        event["clock_synced"] = bool(event["clock_synced"])
    return event


def _connect(path: Path) -> sqlite3.Connection:
    conn = open_sqlite(path, synchronous="NORMAL")
    conn.execute("PRAGMA query_only=ON")
    deadline = time.monotonic() + MAX_SECONDS
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    return conn


def read_events(path: str | os.PathLike[str], flt: EventFilter, *,
                max_scan: int = MAX_SCAN) -> EventPage:
    """One page of `flt` from the journal at `path` (blocking: run it in a thread).
    JournalQueryError when the file cannot be read or the call took too long."""
    target = Path(path)
    if not target.is_file():  # never create one here: the gateway has not journalled yet
        return EventPage([], None, None)
    upper = flt.until_ns
    where = ["ts >= :since", "ts <= :upper"]
    params: dict[str, Any] = {"since": flt.since_ns}
    if flt.before is not None:
        upper = min(upper, flt.before[0])
        where.append("(ts < :before_ts OR seq < :before_seq)")
        params.update(before_ts=flt.before[0], before_seq=flt.before[1])
    params["upper"] = upper
    scope = " AND ".join(where)
    match: list[str] = []
    if flt.room is not None:
        match.append("room = :room")
        params["room"] = flt.room
    if flt.severities:
        names = sorted(flt.severities)
        match.append(f"severity IN ({', '.join(f':sev{i}' for i in range(len(names)))})")
        params.update({f"sev{i}": name for i, name in enumerate(names)})
    if flt.actor is not None:
        match.append("actor LIKE :actor ESCAPE '\\'")
        params["actor"] = _like(flt.actor)
    order = "ORDER BY ts DESC, seq DESC"
    try:
        conn = _connect(target)
    except sqlite3.Error as exc:
        raise JournalQueryError(f"the alarm journal cannot be opened: {exc}") from exc
    try:
        # the oldest event the scan may look at (the `ts` index alone), and whether an older
        # one is left in the range
        edge = conn.execute(f"SELECT ts, seq FROM events WHERE {scope} {order} "
                            "LIMIT 2 OFFSET :skip", {**params, "skip": max_scan - 1}).fetchall()
        if edge:
            match.append("ts >= :floor_ts AND (ts > :floor_ts OR seq >= :floor_seq)")
            params.update(floor_ts=edge[0][0], floor_seq=edge[0][1])
        cursor = conn.execute(f"SELECT * FROM events WHERE {' AND '.join([scope, *match])} "
                              f"{order} LIMIT :page", {**params, "page": flt.limit + 1})
        names = [d[0] for d in cursor.description]
        rows = [_row(names, r) for r in cursor.fetchall()]
    except sqlite3.OperationalError as exc:
        if "interrupt" in str(exc):
            raise JournalQueryError(
                f"reading the alarm journal took longer than {MAX_SECONDS:g} s: narrow the "
                "time range or the filters") from None
        raise JournalQueryError(f"the alarm journal cannot be read: {exc}") from exc
    except sqlite3.Error as exc:
        raise JournalQueryError(f"the alarm journal cannot be read: {exc}") from exc
    finally:
        conn.close()
    if len(rows) > flt.limit:
        page = rows[:flt.limit]
        return EventPage(page, (page[-1]["ts"], page[-1]["seq"]), None)
    if len(edge) < 2:  # the scan reached the start of the time range
        return EventPage(rows, None, None)
    ts, seq = int(edge[0][0]), int(edge[0][1])
    return EventPage(rows, (ts, seq), ts)
