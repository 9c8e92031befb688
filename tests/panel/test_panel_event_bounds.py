"""The Events view's numbers are signed 64-bit nanoseconds (the journal's SQLite integers):
a cursor or a date beyond them is a 400 that says why, never a 500 — over real HTTP against a
real journal, and over any query the parser can be given."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.alarms.journal import Journal
from gateway.alarms.journal_batch import JournalBatch
from gateway.alarms.journal_query import read_events
from gateway.panel.events import EVENT_PARAMS, NS_MAX, NS_MIN, BadQuery, parse_event_query
from tests.panel.test_events import EVENTS, NOW, SH
from tests.panel.test_events_http import Site, _serve, get

INT64 = 2**63


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async for running in _serve(tmp_path):
        yield running


OUT_OF_RANGE = [
    ("before", f"{INT64}:1", "before"),
    ("before", f"1:{INT64}", "before"),
    ("before", f"-{INT64 + 1}:1", "before"),
    ("before", "99999999999999999999:0", "before"),
    ("since=0001-01-01T00:00&until", "0001-01-02T00:00", "outside the dates"),
    ("since=0001-01-01T00:00%2B14:00&until", "0001-01-02T00:00+14:00", "outside the dates"),
    ("since=9999-12-31T00:00&until", "9999-12-31T23:59", "outside the dates"),
    ("since=9999-12-31T00:00-14:00&until", "9999-12-31T23:59-14:00", "outside the dates"),
    ("until", "0001-01-01T00:00", "outside the dates"),
    ("since=1677-09-21T00:00Z&until", "1677-09-22T00:00Z", "outside the dates"),
    ("since=2262-04-11T00:00Z&until", "2262-04-12T00:00Z", "outside the dates"),
    ("since=2262-04-12T00:00Z&until", "2262-04-13T00:00Z", "outside the dates"),
    ("until", "1677-09-21T12:00Z", "until"),  # the default since, a day before, is not
]


@pytest.mark.parametrize("name, value, words", OUT_OF_RANGE)
async def test_numbers_beyond_64_bits_are_a_400_that_says_why(
        site: Site, name: str, value: str, words: str) -> None:
    status, body, _ = await get(site.url, f"/api/events?{name}={quote(value)}")
    assert status == 400 and body["error"] == "bad_query", (name, value, body)
    assert words in body["message"], body


@pytest.mark.parametrize("query", [
    f"before={INT64 - 1}:{INT64 - 1}", f"before=-{INT64}:0",
    "since=1677-09-22T00:00Z&until=1677-09-23T00:00Z",
    "since=2262-04-10T00:00Z&until=2262-04-11T00:00Z",
])
async def test_the_64_bit_edges_themselves_are_served(site: Site, query: str) -> None:
    status, body, _ = await get(site.url, f"/api/events?{query}")
    assert status == 200, (query, body)


_dates = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
    lambda d: d.isoformat())
_offsets = st.sampled_from(["", "Z", "+14:00", "-12:00", "+08:00"])
_edges = st.sampled_from(["1677-09-21T00:12:43.145224", "1677-09-21T00:12:43.145225",
                          "2262-04-11T23:47:16.854775", "2262-04-11T23:47:16.854776",
                          "0001-01-01T00:00", "9999-12-31T23:59:59.999999"])
_numbers = st.one_of(st.integers(-(10**20), 10**20),
                     st.integers(-INT64 - 2, -INT64 + 2), st.integers(INT64 - 2, INT64 + 2))
_values = {
    "since": st.builds(str.__add__, _dates | _edges, _offsets),
    "until": st.builds(str.__add__, _dates | _edges, _offsets),
    "before": st.builds(lambda a, b: f"{a}:{abs(b)}", _numbers, _numbers),
    "last": st.sampled_from(["1h", "7d", "31d", "0.0000000001s", "30.99999999999999999999d"]),
    "limit": st.sampled_from(["1", "200", "201"]),
}
_queries = st.dictionaries(st.sampled_from(sorted(_values)), st.none(), max_size=4).flatmap(
    lambda names: st.fixed_dictionaries({n: _values[n] for n in names}))


@pytest.fixture(scope="module")
def journal() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="rw-bounds-"))
    db = Journal(folder / "alarms.sqlite")
    db.commit(JournalBatch(events=list(EVENTS)))
    db.close()
    return folder / "alarms.sqlite"


@given(query=_queries)
@example(query={"before": f"{INT64}:1"})
@example(query={"since": "0001-01-01T00:00+14:00", "until": "0001-01-02T00:00+14:00"})
@example(query={"until": "1677-09-21T12:00Z"})
@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_query_is_a_page_or_a_reason_never_a_crash(
        journal: Path, query: dict[str, str]) -> None:
    try:
        flt = parse_event_query(query.items(), now_ns=NOW, timezone=SH)
    except BadQuery as exc:
        assert str(exc)
        return
    assert NS_MIN <= flt.since_ns <= flt.until_ns <= NS_MAX
    if flt.before is not None:
        assert all(NS_MIN <= n <= NS_MAX for n in flt.before)
    read_events(journal, flt)  # the journal takes it


@given(query=_queries)
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_no_query_gets_a_500_over_http(site: Site, query: dict[str, str]) -> None:
    status, body, _ = await get(site.url, "/api/events?" + urlencode(query))
    assert status in (200, 400), (query, body)


def test_the_bounds_are_the_journals() -> None:
    assert (NS_MIN, NS_MAX) == (-INT64, INT64 - 1)
    edge = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=NS_MAX // 1000)
    assert edge.isoformat().startswith("2262-04-11T23:47:16.854775")
    assert set(_values) <= set(EVENT_PARAMS)
