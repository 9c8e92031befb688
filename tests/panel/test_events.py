"""The Events and Incidents views' backend (gateway.panel.events, gateway.alarms.journal_query):
the parameter parser (hypothesis: bounded or refused, never anything else) and the journal
query on a real journal file written by the real `Journal` — every filter against a plain
Python reference, paged to the end through the page and scan bounds."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.alarms.events import AlarmEvent, EventKind
from gateway.alarms.journal import Journal
from gateway.alarms.journal_batch import JournalBatch
from gateway.alarms.journal_query import (
    MAX_PAGE,
    EventFilter,
    JournalQueryError,
    read_events,
)
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.panel.events import (
    EVENT_PARAMS,
    MAX_RANGE_S,
    BadQuery,
    IncidentIndex,
    parse_event_query,
    parse_incident_query,
    report_of,
)
from gateway.recorder.store import FORMAT, IncidentStore

NS = 1_000_000_000
NOW = int(datetime(2026, 12, 3, 16, 0, tzinfo=UTC).timestamp()) * NS
SH = "Asia/Shanghai"


def parse(params: dict[str, str] | Iterable[tuple[str, str]], tz: str = SH) -> EventFilter:
    items = params.items() if isinstance(params, dict) else params
    return parse_event_query(items, now_ns=NOW, timezone=tz)


def refused(params: dict[str, str] | list[tuple[str, str]]) -> str:
    with pytest.raises(BadQuery) as caught:
        parse(params)
    return str(caught.value)


# --- the parameter parser ---------------------------------------------------------------------


def test_defaults_are_the_last_day_fifty_at_a_time() -> None:
    flt = parse({})
    assert (flt.since_ns, flt.until_ns, flt.limit) == (NOW - 86_400 * NS, NOW, 50)
    assert flt.room is None and flt.actor is None and not flt.severities and flt.before is None
    assert parse({"room": "", "actor": "  "}) == flt  # an empty field is no filter


def test_times_without_an_offset_are_site_time() -> None:
    flt = parse({"since": "2026-12-03T14:00", "until": "2026-12-03T15:30:00"})
    assert flt.since_ns == int(datetime(2026, 12, 3, 6, 0, tzinfo=UTC).timestamp()) * NS
    assert flt.until_ns - flt.since_ns == 90 * 60 * NS
    utc = parse({"since": "2026-12-03T14:00Z"})
    assert utc.since_ns == int(datetime(2026, 12, 3, 14, 0, tzinfo=UTC).timestamp()) * NS
    assert utc.until_ns == NOW
    assert parse({"since": "2026-12-03T14:00"}, tz="UTC").since_ns == utc.since_ns
    assert parse({"since": "2026-12-03T14:00"}, tz="Not/AZone").since_ns == utc.since_ns
    only_until = parse({"until": "2026-12-02T12:00Z"})
    assert only_until.until_ns - only_until.since_ns == 86_400 * NS


def test_last_takes_durations_and_days() -> None:
    assert parse({"last": "30m"}).since_ns == NOW - 1800 * NS
    assert parse({"last": "7d"}).since_ns == NOW - 7 * 86_400 * NS
    assert parse({"last": "31d"}).since_ns == NOW - MAX_RANGE_S * NS
    assert "31 days" in refused({"last": "32d"})
    assert "duration" in refused({"last": "soon"})
    assert "not both" in refused({"last": "1h", "since": "2026-12-01T00:00"})


def test_bad_ranges_are_refused_with_the_reason() -> None:
    assert "at most 31 days" in refused({"since": "2026-10-01T00:00", "until": "2026-12-03T00:00"})
    assert "later than" in refused({"since": "2026-12-03T10:00", "until": "2026-12-03T09:00"})
    message = refused({"since": "yesterday"})
    assert "not a date and time" in message and "Asia/Shanghai" in message


def test_filters_and_their_mistakes() -> None:
    flt = parse({"room": "batt-3f", "severity": "critical, Major", "actor": "zhang",
                 "limit": "200", "before": "1764763200000000000:42"})
    assert flt.room == "batt-3f" and flt.severities == {"critical", "major"}
    assert flt.actor == "zhang" and flt.limit == MAX_PAGE
    assert flt.before == (1764763200000000000, 42)
    assert "not one of critical, major, minor, warning" in refused({"severity": "fatal"})
    assert "1 to 200" in refused({"limit": "201"})
    assert "1 to 200" in refused({"limit": "0"})
    assert "1 to 200" in refused({"limit": "ten"})
    assert "not a room id" in refused({"room": "../etc"})
    assert "cursor" in refused({"before": "yesterday"})
    assert "printable" in refused({"actor": "a\x00b"})
    message = refused({"rooms": "x"})
    assert "unknown parameter 'rooms'" in message and "room, severity, actor" in message
    assert "given twice" in refused([("room", "a"), ("room", "b")])
    assert "at most 200 characters" in refused({"actor": "x" * 201})


def test_incident_list_parameters() -> None:
    assert parse_incident_query([]) == (20, None)
    assert parse_incident_query([("limit", "100"), ("before", "20261203T120000Z-tx-7")]) == (
        100, "20261203T120000Z-tx-7")
    for bad in ([("limit", "101")], [("before", "../../etc/passwd")], [("id", "x")]):
        with pytest.raises(BadQuery):
            parse_incident_query(bad)


_texts = st.text(st.characters(codec="utf-8"), max_size=60)
_values = st.one_of(
    _texts, st.sampled_from(["", "1h", "7d", "31d", "40d", "2026-12-03T10:00",
                             "2026-12-03T10:00+08:00", "2026-11-01", "critical,minor",
                             "batt-3f", "0", "50", "200", "999", "12:34", "-5:1"]),
    st.integers(-10**20, 10**20).map(str))
_names = st.one_of(st.sampled_from(EVENT_PARAMS), _texts)


@given(st.lists(st.tuples(_names, _values), max_size=8))
def test_any_parameters_give_a_bounded_filter_or_a_clear_refusal(
        params: list[tuple[str, str]]) -> None:
    try:
        flt = parse(params)
    except BadQuery as exc:
        assert str(exc) and "Traceback" not in str(exc)
        return
    assert flt.since_ns <= flt.until_ns
    assert flt.until_ns - flt.since_ns <= MAX_RANGE_S * NS
    assert 1 <= flt.limit <= MAX_PAGE
    assert flt.severities <= {"critical", "major", "minor", "warning"}


_room_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z")


@given(room=st.none() | _room_ids,
       severities=st.sets(st.sampled_from(["critical", "major", "minor", "warning"])),
       actor=st.none() | st.text(st.characters(codec="utf-8", exclude_categories=("C", "Z")),
                                 min_size=1, max_size=40),
       limit=st.integers(1, MAX_PAGE), hours=st.integers(1, 744))
def test_good_parameters_mean_what_they_say(room: str | None, severities: set[str],
                                           actor: str | None, limit: int, hours: int) -> None:
    params = {"limit": str(limit), "last": f"{hours}h", "severity": ",".join(sorted(severities))}
    if room is not None:
        params["room"] = room
    if actor is not None:
        params["actor"] = actor
    flt = parse(params)
    assert (flt.room, flt.actor, flt.limit, flt.severities) == (room, actor, limit,
                                                                frozenset(severities))
    assert flt.until_ns - flt.since_ns == hours * 3600 * NS


# --- the journal query ------------------------------------------------------------------------

ROOMS = ["tx-3f", "batt-3f", None]
ACTORS = ["system", "alice", "Zhang Wei (NOC)", "bob_50%"]
SEVS = [Severity.CRITICAL, Severity.MAJOR, Severity.MINOR, Severity.WARNING, None]
T0 = NOW - 3 * 86_400 * NS


def event(seq: int) -> AlarmEvent:
    """A deterministic spread of events: several share a time (ties broken by seq)."""
    severity = SEVS[seq % 5]
    return AlarmEvent(
        seq=seq, ts=T0 + (seq // 3) * 600 * NS, kind=EventKind.ALARM if severity else
        EventKind.SUPPRESSION_START, rule=f"rule.r{seq % 4}", subject=f"dev-{seq % 6}.p",
        state=AlarmState.ACTIVE_ACKNOWLEDGED, previous_state=AlarmState.ACTIVE_UNACKNOWLEDGED,
        value=seq * 0.5 if seq % 2 else True, severity=severity, actor=ACTORS[seq % 4],
        note=f"note {seq}", first_out=seq % 7 == 0, room=ROOMS[seq % 3], title=f"title {seq}")


EVENTS = [event(seq) for seq in range(1, 400)]


@functools.cache
def journal_file() -> Path:
    path = Path(tempfile.mkdtemp(prefix="rw-events-")) / "alarms.sqlite"
    journal = Journal(path)
    assert journal.commit(JournalBatch(events=list(EVENTS)))
    journal.close()
    return path


def reference(flt: EventFilter) -> list[int]:
    def keep(e: AlarmEvent) -> bool:
        return (flt.since_ns <= e.ts <= flt.until_ns
                and (flt.room is None or e.room == flt.room)
                and (not flt.severities or (e.severity is not None
                                            and str(e.severity) in flt.severities))
                and (flt.actor is None or flt.actor.lower() in e.actor.lower()))
    return [e.seq for e in sorted(filter(keep, EVENTS), key=lambda e: (e.ts, e.seq),
                                  reverse=True)]


def read_all(flt: EventFilter, max_scan: int) -> tuple[list[int], int]:
    """Follow `next` to the end; returns the seqs in order and the number of calls."""
    seqs: list[int] = []
    calls, cursor = 0, None
    while True:
        calls += 1
        page = read_events(journal_file(), EventFilter(**{**_fields(flt), "before": cursor}),
                           max_scan=max_scan)
        assert len(page.events) <= flt.limit
        seqs += [e["seq"] for e in page.events]
        if page.next is None:
            return seqs, calls
        assert calls < 1000
        cursor = page.next


def _fields(flt: EventFilter) -> dict[str, Any]:
    return {name: getattr(flt, name) for name in EventFilter.__slots__}


@given(room=st.sampled_from([None, "tx-3f", "batt-3f", "nowhere"]),
       severities=st.sets(st.sampled_from(["critical", "major", "minor", "warning"])),
       actor=st.sampled_from([None, "ALICE", "zhang", "%", "_", "e"]),
       since=st.integers(-1, 3 * 86_400), span=st.integers(0, 3 * 86_400),
       limit=st.integers(1, 30), max_scan=st.integers(1, 120))
def test_paging_through_a_filter_gives_exactly_what_matches_newest_first(
        room: str | None, severities: set[str], actor: str | None, since: int, span: int,
        limit: int, max_scan: int) -> None:
    flt = EventFilter(since_ns=T0 + since * NS, until_ns=T0 + (since + span) * NS, room=room,
                      severities=frozenset(severities), actor=actor, limit=limit)
    seqs, calls = read_all(flt, max_scan)
    assert seqs == reference(flt)
    in_range = sum(1 for e in EVENTS if flt.since_ns <= e.ts <= flt.until_ns)
    # each call looks at most max_scan events of the range: bounded work per call
    assert calls <= in_range // max_scan + len(seqs) // limit + 2


def test_a_page_says_how_far_the_scan_looked() -> None:
    flt = EventFilter(since_ns=T0, until_ns=NOW, actor="nobody-has-this-name", limit=10)
    page = read_events(journal_file(), flt, max_scan=50)
    assert page.events == [] and page.next is not None
    newest_first = sorted(EVENTS, key=lambda e: (e.ts, e.seq), reverse=True)
    assert page.scanned_to_ns == newest_first[49].ts
    assert page.next == (newest_first[49].ts, newest_first[49].seq)


def test_events_come_back_as_the_journal_holds_them() -> None:
    page = read_events(journal_file(), EventFilter(since_ns=T0, until_ns=NOW, limit=2))
    newest = EVENTS[-1]
    first = page.events[0]
    assert first["seq"] == newest.seq
    expected = newest.as_dict()
    assert {k: first[k] for k in expected} == expected


def test_a_reader_sees_new_commits_and_never_creates_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "alarms.sqlite"
    flt = EventFilter(since_ns=T0, until_ns=NOW)
    assert read_events(path, flt).events == [] and not path.exists()
    journal = Journal(path)
    try:
        journal.commit(JournalBatch(events=EVENTS[:5]))
        assert len(read_events(path, flt).events) == 5
        journal.commit(JournalBatch(events=EVENTS[5:9]))  # the writer is not blocked by it
        assert [e["seq"] for e in read_events(path, flt).events] == list(range(9, 0, -1))
    finally:
        journal.close()


def test_a_garbage_journal_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "alarms.sqlite"
    path.write_bytes(b"this is no database" * 100)
    with pytest.raises(JournalQueryError, match="alarm journal cannot be"):
        read_events(path, EventFilter(since_ns=0, until_ns=NOW))


# --- incidents --------------------------------------------------------------------------------


def record(incident_id: str, room: str = "tx") -> dict[str, Any]:
    ts = T0 + int(incident_id.rsplit("-", 1)[1]) * NS
    trigger = {"seq": 1, "ts": ts, "kind": "alarm", "rule": "fire.smoke_coincidence",
               "subject": room, "state": "active_unacknowledged",
               "previous_state": "normal", "value": 2, "severity": "critical",
               "actor": "system", "note": None, "first_out": True, "room": room,
               "title": "Fire confirmed", "chattering": False}
    ack = {**trigger, "seq": 2, "ts": ts + 5 * NS, "state": "active_acknowledged",
           "actor": "alice", "note": "brigade called"}
    return {"format": FORMAT, "id": incident_id, "status": "closed", "kind": "alarm",
            "room": room, "gateway": "gw", "site": "lab", "config": {"version": 1},
            "trigger": trigger, "from_ns": ts - 60 * NS, "until_ns": ts + 60 * NS,
            "rules": [{"rule": "fire.smoke_coincidence", "subject": room,
                       "points": ["s-1.alarm"], "thresholds": {}}],
            "outputs_served": {}, "events": [trigger, ack], "output_changes": [],
            "health": {}, "points": {"s-1.alarm": {"device": "s-1", "room": room,
                                                   "quantity": "smoke", "unit": None,
                                                   "ts": [ts // 1_000_000], "v": [True],
                                                   "q": "g"}}}


def test_the_incident_list_pages_newest_first_and_reads_each_record_once(
        tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents")
    ids = [f"20261203T1{i:05d}Z-tx-{i}" for i in range(7)]
    for incident_id in ids:
        store.save(record(incident_id))
    (store.directory / f"{ids[3]}.json.gz").write_bytes(b"not gzip")
    index = IncidentIndex(store)
    first = index.page(3, None)
    assert [r["id"] for r in first["incidents"]] == ids[::-1][:3]
    assert first["total"] == 7 and first["next"] == ids[4]
    second = index.page(3, first["next"])
    assert [r["id"] for r in second["incidents"]] == [ids[3], ids[2], ids[1]]
    assert second["incidents"][0]["status"] == "unreadable"
    row = second["incidents"][1]
    assert (row["severity"], row["rule"], row["title"], row["events"]) == (
        "critical", "fire.smoke_coincidence", "Fire confirmed", 2)
    assert index.page(3, second["next"])["next"] is None
    store.directory.joinpath(f"{ids[2]}.json.gz").unlink()  # pruned meanwhile: cached rows go
    assert [r["id"] for r in index.page(10, None)["incidents"]] == [
        i for i in ids[::-1] if i != ids[2]]


def test_a_report_or_why_not(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents")
    store.save(record("20261203T120000Z-tx-9"))
    reply = report_of(store, "20261203T120000Z-tx-9")
    assert reply.status == 200 and reply.content_type == "text/html"
    assert isinstance(reply.body, str) and "<svg" in reply.body and "brigade called" in reply.body
    assert report_of(store, "20261203T120000Z-tx-8").status == 404
    assert report_of(store, "../../etc/passwd").status == 400
    broken = record("20261203T120000Z-tx-10")
    del broken["points"]
    store.save(broken)
    reply = report_of(store, "20261203T120000Z-tx-10")
    assert reply.status == 500 and "not a whole record: points missing" in str(reply.body)
