"""The panel's Events and Incidents views (issue 12), independent of the HTTP framework: query
parameters in, a bounded answer out — a page of journal events filtered by room, severity, time
range and actor; a page of the stored incidents; one incident's HTML report
(`gateway.recorder.report`, the same page `roomwarden incident export` writes).

Parameters are parsed here, at the boundary: an unknown, repeated, over-long or malformed one is
a `BadQuery` (HTTP 400) whose message says what is wanted. Times without an offset are the
site's local time (`gateway.timezone`), as the console shows them. A time range is at most
`MAX_RANGE_S` long; a page at most `MAX_PAGE` events (`gateway.alarms.journal_query` bounds each
read further) or `MAX_INCIDENT_PAGE` incidents. Reading runs in worker threads, at most
`READERS` at a time, so the event loop (and the alarms) never wait for a disk or a report.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.alarms.journal_query import (
    MAX_PAGE,
    SEVERITIES,
    EventFilter,
    JournalQueryError,
    read_events,
)
from gateway.config.duration import parse_duration
from gateway.recorder import reading
from gateway.recorder.heads import panel_row
from gateway.recorder.store import ID_PATTERN, IncidentError, IncidentStore
from gateway.records import dataclass

if TYPE_CHECKING:
    from gateway.clock import Clock
    from gateway.config.loader import LoadedConfig

MAX_RANGE_S = 31 * 86_400
"""Longest time range of one events query."""
DEFAULT_RANGE_S = 86_400
"""The range when none is given: the last 24 hours."""
DEFAULT_PAGE = 50
MAX_INCIDENT_PAGE = 100
DEFAULT_INCIDENT_PAGE = 20
MAX_PARAM = 200
"""Characters per parameter value at most."""
READERS = 2
"""Journal reads and incident loads running at once at most (the others wait their turn)."""
EVENT_PARAMS = ("room", "severity", "actor", "last", "since", "until", "limit", "before")
INCIDENT_PARAMS = ("limit", "before")
REPORT_PARAMS = ("id",)
_NS = 1_000_000_000
NS_MIN = -(2**63)
NS_MAX = 2**63 - 1
"""Every time and cursor number is a signed 64-bit integer (SQLite's, the journal's)."""
_NS_DATES = "1677-09-21 … 2262-04-11"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT = re.compile(r"^[0-9]{1,6}$")
_CURSOR = re.compile(r"^(-?[0-9]{1,20}):([0-9]{1,20})$")
_DAYS = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*d\s*$")
_ROOM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class BadQuery(ValueError):
    """A query parameter that cannot be used; the message is meant for the person."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What to answer: a JSON document (dict) or an HTML page (str), with its HTTP status."""

    status: int
    body: dict[str, Any] | str

    @property
    def content_type(self) -> str:
        return "text/html" if isinstance(self.body, str) else "application/json"


def _error(status: int, error: str, message: str) -> Reply:
    return Reply(status, {"error": error, "message": message})


# --- parameters -------------------------------------------------------------------------------


def _single(params: Iterable[tuple[str, str]], known: tuple[str, ...],
            view: str) -> dict[str, str]:
    """Each parameter at most once, known, not too long, and not empty (empty = not given)."""
    found: dict[str, str] = {}
    for name, value in params:
        if name not in known:
            shown = name if len(name) <= 40 else name[:40] + "…"
            raise BadQuery(f"unknown parameter {shown!r}; {view} takes {', '.join(known)}")
        if name in found:
            raise BadQuery(f"{name!r} is given twice; give it once")
        if len(value) > MAX_PARAM:
            raise BadQuery(f"{name}: at most {MAX_PARAM} characters")
        found[name] = value
    return {k: v.strip() for k, v in found.items() if v.strip()}


def site_zone(name: str) -> ZoneInfo:
    """The site's time zone (UTC when the name is not known here)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def parse_time(name: str, text: str, zone: ZoneInfo) -> int:
    """ns since the epoch of an ISO 8601 date and time; without an offset, in `zone`."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BadQuery(f"{name}: {text[:40]!r} is not a date and time; write e.g. "
                       f"2026-12-03T14:05 (site time, {zone.key}) or add an offset "
                       "(…Z, …+08:00)") from None
    try:
        if when.tzinfo is None:
            when = when.replace(tzinfo=zone)
        ns = (when - _EPOCH) // timedelta(microseconds=1) * 1000
    except (OverflowError, ValueError):
        ns = NS_MAX + 1  # beyond what a date here can name: refused below
    return _bounded(name, ns, f"{text[:40]!r} is outside the dates the journal can hold "
                              f"({_NS_DATES} UTC)")


def _bounded(name: str, value: int, why: str) -> int:
    """`value` if it fits a signed 64-bit integer, else BadQuery(`name`: `why`)."""
    if not NS_MIN <= value <= NS_MAX:
        raise BadQuery(f"{name}: {why}")
    return value


def parse_span(text: str) -> float:
    """Seconds of a `last` value: a duration (`30m`, `24h`) or days (`7d`)."""
    days = _DAYS.match(text)
    try:
        seconds = float(days.group(1)) * 86_400 if days else parse_duration(text)
    except ValueError as exc:
        raise BadQuery(f"last: {exc}, or days (7d)") from None
    if not 0 < seconds <= MAX_RANGE_S:
        raise BadQuery(f"last: {text!r} is not within 1 s … {MAX_RANGE_S // 86_400} days")
    return seconds


def _limit(found: dict[str, str], default: int, most: int) -> int:
    text = found.get("limit")
    if text is None:
        return default
    if not _INT.match(text) or not 1 <= int(text) <= most:
        raise BadQuery(f"limit: {text[:20]!r} is not a whole number from 1 to {most}")
    return int(text)


def _range(found: dict[str, str], now_ns: int, zone: ZoneInfo) -> tuple[int, int]:
    if "last" in found and ("since" in found or "until" in found):
        raise BadQuery("give either last (e.g. 24h) or since/until, not both")
    if "last" in found:
        return now_ns - int(parse_span(found["last"]) * _NS), now_ns
    until = parse_time("until", found["until"], zone) if "until" in found else now_ns
    since = (parse_time("since", found["since"], zone) if "since" in found
             else _bounded("until", until - DEFAULT_RANGE_S * _NS,
                           f"too early: the day before it is outside the dates the journal "
                           f"can hold ({_NS_DATES} UTC); give since as well"))
    if since > until:
        raise BadQuery("since is later than until")
    if until - since > MAX_RANGE_S * _NS:
        days = (until - since) / (86_400 * _NS)
        raise BadQuery(f"the time range is {days:.1f} days long; at most "
                       f"{MAX_RANGE_S // 86_400} days at a time")
    return since, until


def parse_event_query(params: Iterable[tuple[str, str]], *, now_ns: int,
                      timezone: str) -> EventFilter:
    """The Events view's parameters (`EVENT_PARAMS`) as a journal filter; BadQuery if bad.

    `room`: a room id. `severity`: comma-separated severities (any of them). `actor`: text
    the actor's name contains (letters in any case). `last` (`24h`, `7d`) or `since`/`until`
    (ISO 8601; site time without an offset): the time range, by default the last 24 hours.
    `limit`: events per page (default 50). `before`: the `next` cursor of the previous page."""
    found = _single(params, EVENT_PARAMS, "the Events view")
    zone = site_zone(timezone)
    since, until = _range(found, now_ns, zone)
    room = found.get("room")
    if room is not None and not _ROOM.match(room):
        raise BadQuery(f"room: {room[:40]!r} is not a room id (letters, digits, '_', '.', '-')")
    severities: set[str] = set()
    for part in found.get("severity", "").split(","):
        word = part.strip().lower()
        if word and word not in SEVERITIES:
            raise BadQuery(f"severity: {part.strip()[:20]!r} is not one of "
                           f"{', '.join(SEVERITIES)}")
        if word:
            severities.add(word)
    actor = found.get("actor")
    if actor is not None and not actor.isprintable():
        raise BadQuery("actor: only printable characters")
    before = None
    if "before" in found:
        match = _CURSOR.match(found["before"])
        if match is None:
            raise BadQuery("before: not a cursor; use the `next` of the previous page")
        before = (_bounded("before", int(match.group(1)), "not a cursor (a number out of "
                           "range); use the `next` of the previous page"),
                  _bounded("before", int(match.group(2)), "not a cursor (a number out of "
                           "range); use the `next` of the previous page"))
    return EventFilter(since_ns=since, until_ns=until, room=room,
                       severities=frozenset(severities), actor=actor,
                       limit=_limit(found, DEFAULT_PAGE, MAX_PAGE), before=before)


def parse_incident_query(params: Iterable[tuple[str, str]]) -> tuple[int, str | None]:
    """The Incidents view's parameters: (`limit`, `before`: the id the previous page ended at)."""
    found = _single(params, INCIDENT_PARAMS, "the Incidents view")
    before = found.get("before")
    if before is not None and not ID_PATTERN.match(before):
        raise BadQuery("before: not an incident id; use the `next` of the previous page")
    return _limit(found, DEFAULT_INCIDENT_PAGE, MAX_INCIDENT_PAGE), before


# --- incidents --------------------------------------------------------------------------------


class IncidentIndex:
    """Summaries of the stored incidents for the list, from each record's head
    (gateway.recorder.heads; an open incident's as of its last save, gateway.recorder.reading),
    remembered by the id and the size and mtime of its files (`reading.stamp`) so a list reads
    each head once a save. At most `keep`."""

    def __init__(self, store: IncidentStore, keep: int = 1000) -> None:
        self.store = store
        self._keep = keep
        self._known: OrderedDict[str, tuple[reading.Stamp, dict[str, Any]]] = OrderedDict()

    def _summary(self, incident_id: str) -> dict[str, Any]:
        try:
            stamp = reading.stamp(self.store, incident_id)
        except OSError as exc:
            return {"id": incident_id, "status": "unreadable", "error": str(exc)}
        known = self._known.get(incident_id)
        if known is not None and known[0] == stamp:
            self._known.move_to_end(incident_id)
            return known[1]
        try:
            row = panel_row(reading.head_of(self.store, incident_id, want="event_count"))
        except (IncidentError, KeyError, TypeError, AttributeError) as exc:
            row = {"id": incident_id, "status": "unreadable", "error": str(exc)}
        self._known[incident_id] = (stamp, row)
        while len(self._known) > self._keep:
            self._known.popitem(last=False)
        return row

    def page(self, limit: int, before: str | None) -> dict[str, Any]:
        """Newest first: `limit` incidents older than `before` (blocking: run in a thread)."""
        stored = self.store.ids()[::-1]
        ids = stored if before is None else [i for i in stored if i < before]
        chosen = ids[:limit]
        return {"incidents": [self._summary(i) for i in chosen],
                "next": chosen[-1] if len(ids) > limit else None, "total": len(stored)}


def report_of(store: IncidentStore, incident_id: str) -> Reply:
    """One incident's HTML report, or the reason it cannot be had (blocking: run in a thread)."""
    if not ID_PATTERN.match(incident_id):
        return _error(400, "bad_request", f"not an incident id: {incident_id[:80]!r}")
    if not store.path_of(incident_id).is_file():
        return _error(404, "not_found", f"no incident {incident_id} on this gateway (the "
                      "oldest go when the disk budget is full)")
    # the report's renderer (with `html` and its entity tables) is loaded at the first report
    # asked for, not with the panel: most gateways never serve one (issue 15)
    from gateway.recorder.report import render

    try:
        return Reply(200, render(reading.load(store, incident_id)))
    except IncidentError as exc:
        return _error(500, "unreadable", str(exc))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return _error(500, "unreadable", f"incident {incident_id} lacks what a report needs: "
                      f"{exc!r}")


# --- the views --------------------------------------------------------------------------------


@runtime_checkable
class HistorySource(Protocol):
    """What the views read of the daemon (`gateway.daemon.Gateway` is one)."""

    journal_path: Path
    state_dir: Path
    loaded: LoadedConfig
    clock: Clock


class History:
    """The three views as coroutines answering `Reply`s; reads run in threads, `READERS` at
    a time."""

    def __init__(self, journal_path: Path, incidents_dir: Path, *,
                 timezone: Callable[[], str], now_ns: Callable[[], int]) -> None:
        self.journal_path = journal_path
        self.store = IncidentStore(incidents_dir)
        self.index = IncidentIndex(self.store)
        self._timezone = timezone
        self._now_ns = now_ns
        self._readers = asyncio.Semaphore(READERS)

    @classmethod
    def of(cls, source: object) -> History | None:
        """The views of `source` (None if it has no journal: a bare panel backend)."""
        if not isinstance(source, HistorySource):
            return None
        return cls(source.journal_path, source.state_dir / "incidents",
                   timezone=lambda: source.loaded.config.gateway.timezone,
                   now_ns=source.clock.now_ns)

    async def events(self, params: Iterable[tuple[str, str]]) -> Reply:
        timezone = self._timezone()
        try:
            flt = parse_event_query(params, now_ns=self._now_ns(), timezone=timezone)
        except BadQuery as exc:
            return _error(400, "bad_query", str(exc))
        try:
            async with self._readers:
                page = await asyncio.to_thread(read_events, self.journal_path, flt)
        except JournalQueryError as exc:
            return _error(503, "journal_unavailable", str(exc))
        return Reply(200, {
            "events": page.events, "next": None if page.next is None else
            f"{page.next[0]}:{page.next[1]}", "scanned_to_ns": page.scanned_to_ns,
            "since_ns": flt.since_ns, "until_ns": flt.until_ns, "limit": flt.limit,
            "timezone": timezone})

    async def incidents(self, params: Iterable[tuple[str, str]]) -> Reply:
        try:
            limit, before = parse_incident_query(params)
        except BadQuery as exc:
            return _error(400, "bad_query", str(exc))
        async with self._readers:
            listing = await asyncio.to_thread(self.index.page, limit, before)
        return Reply(200, {**listing, "timezone": self._timezone()})

    async def report(self, params: Iterable[tuple[str, str]]) -> Reply:
        """`id`: the incident whose report to render."""
        try:
            incident_id = _single(params, REPORT_PARAMS, "the report").get("id")
        except BadQuery as exc:
            return _error(400, "bad_query", str(exc))
        if incident_id is None:
            return _error(400, "bad_query", "id: which incident? (an id from the list)")
        async with self._readers:
            return await self._report(incident_id)

    async def _report(self, incident_id: str) -> Reply:
        """A small record's report rendered here (in a thread), a larger one's by a child
        process (gateway.recorder.report_apart: never a large parse beside the alarms)."""
        from gateway.recorder import report_apart

        try:
            size = reading.size_of(self.store, incident_id)  # (an open one's progress too)
        except (IncidentError, OSError):
            size = 0  # (report_of says why: a bad id, none such)
        if size <= report_apart.IN_PROCESS_BYTES:
            return await asyncio.to_thread(report_of, self.store, incident_id)
        try:
            return Reply(200, await report_apart.render_apart(self.store.directory,
                                                              incident_id))
        except report_apart.RenderFailed as exc:
            return _error(500, "unreadable", str(exc))
