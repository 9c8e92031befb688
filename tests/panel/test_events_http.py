"""The Events and Incidents views over real HTTP: the panel server on loopback in front of a real
alarm journal file and a real incident store (the daemon's layout in a state directory)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from gateway.alarms.journal import Journal
from gateway.alarms.journal_batch import JournalBatch
from gateway.clock import ManualClock
from gateway.panel.server import PanelServer
from gateway.recorder.store import IncidentStore
from tests.panel.conftest import PASSWORD, USER, FakeBackend, panel_settings
from tests.panel.test_events import EVENTS, NOW, record

INCIDENT = "20261203T120000Z-tx-9"


@dataclass
class HistoryBackend(FakeBackend):
    """A panel backend with the daemon's journal and state directory (a HistorySource)."""

    journal_path: Path = Path()
    state_dir: Path = Path()
    loaded: Any = None
    clock: Any = None


@dataclass
class Site:
    url: str
    backend: HistoryBackend


async def _serve(tmp_path: Path, **settings: Any) -> AsyncIterator[Site]:
    journal = Journal(tmp_path / "alarms.sqlite")
    journal.commit(JournalBatch(events=list(EVENTS)))
    journal.close()
    IncidentStore(tmp_path / "incidents").save(record(INCIDENT))
    clock = ManualClock(start_ns=NOW)
    backend = HistoryBackend(journal_path=tmp_path / "alarms.sqlite", state_dir=tmp_path,
                             loaded=SimpleNamespace(config=SimpleNamespace(
                                 gateway=SimpleNamespace(timezone="Asia/Shanghai"))),
                             clock=clock)
    server = PanelServer(backend, panel_settings(**settings), clock)
    port = await server.start()
    try:
        yield Site(f"http://127.0.0.1:{port}", backend)
    finally:
        await server.stop()


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async for running in _serve(tmp_path):
        yield running


async def get(url: str, path: str, **kw: Any) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as session, session.get(url + path, **kw) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body, r.headers


async def test_events_filtered_newest_first(site: Site) -> None:
    status, body, _ = await get(site.url, "/api/events?last=7d&actor=alice&room=tx-3f"
                                          "&severity=critical,major&limit=5")
    assert status == 200, body
    expected = sorted((e for e in EVENTS if e.actor == "alice" and e.room == "tx-3f"
                       and str(e.severity) in ("critical", "major")),
                      key=lambda e: (e.ts, e.seq), reverse=True)
    assert [e["seq"] for e in body["events"]] == [e.seq for e in expected[:5]]
    assert body["timezone"] == "Asia/Shanghai" and body["limit"] == 5
    status, more, _ = await get(site.url, f"/api/events?last=7d&actor=alice&room=tx-3f"
                                          f"&severity=critical,major&limit=5&before={body['next']}")
    assert [e["seq"] for e in more["events"]] == [e.seq for e in expected[5:10]]


async def test_bad_parameters_are_a_400_that_says_why(site: Site) -> None:
    for query, words in (("last=40d", "31 days"), ("severity=fatal", "not one of"),
                         ("limit=500", "1 to 200"), ("since=tomorrow", "not a date"),
                         ("colour=red", "unknown parameter"),
                         ("room=tx-3f&room=batt-3f", "given twice")):
        status, body, _ = await get(site.url, f"/api/events?{query}")
        assert status == 400 and body["error"] == "bad_query", (query, body)
        assert words in body["message"], (query, body)
    status, body, _ = await get(site.url, "/api/incidents/report")
    assert status == 400 and "which incident" in body["message"]
    status, body, _ = await get(site.url, "/api/incidents/report?id=..%2Fsecrets")
    assert status == 400 and "not an incident id" in body["message"]
    status, body, _ = await get(site.url, "/api/incidents/report?id=20261203T120000Z-tx-1")
    assert status == 404 and "no incident" in body["message"]
    async with aiohttp.ClientSession() as session, session.post(site.url + "/api/events") as r:
        assert r.status == 405


async def test_incidents_and_a_report_to_show_in_the_panel(site: Site) -> None:
    status, body, _ = await get(site.url, "/api/incidents")
    assert status == 200 and body["total"] == 1 and body["next"] is None
    [row] = body["incidents"]
    assert (row["id"], row["severity"], row["title"]) == (INCIDENT, "critical", "Fire confirmed")
    status, page, headers = await get(site.url, f"/api/incidents/report?id={INCIDENT}")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "<svg" in page and "brigade called" in page and "<script" not in page
    policy = headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in policy and "script-src" not in policy
    assert "default-src 'none'" in policy and headers["X-Frame-Options"] == "SAMEORIGIN"
    _, _, console = await get(site.url, "/")  # the console itself is still never framed
    assert console["X-Frame-Options"] == "DENY"


async def test_a_panel_without_a_journal_says_so(tmp_path: Path) -> None:
    server = PanelServer(FakeBackend(), panel_settings(), ManualClock())
    port = await server.start()
    try:
        status, body, _ = await get(f"http://127.0.0.1:{port}", "/api/events")
        assert status == 404 and "no alarm journal" in body["message"]
    finally:
        await server.stop()


async def test_reading_needs_the_viewers_login_when_the_panel_asks_for_one(
        tmp_path: Path) -> None:
    async for site in _serve(tmp_path, login_to_view=True):
        for path in ("/api/events", "/api/incidents", f"/api/incidents/report?id={INCIDENT}"):
            status, body, _ = await get(site.url, path)
            assert status == 401 and body["error"] == "not_logged_in", path
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            async with session.post(site.url + "/api/login",
                                    json={"user": USER, "password": PASSWORD}) as r:
                assert r.status == 200
            async with session.get(site.url + "/api/events?last=7d&actor=zhang") as r:
                body = await r.json()
                assert r.status == 200 and body["events"]
                assert all("Zhang" in e["actor"] for e in body["events"])
            async with session.get(site.url + f"/api/incidents/report?id={INCIDENT}") as r:
                assert r.status == 200 and "Incident" in await r.text()


def large_record(incident_id: str, samples: int = 300_000) -> dict[str, Any]:
    """A record whose file is past `IN_PROCESS_BYTES`: a temperature at 10 Hz for 8 hours,
    noisy (noise does not compress)."""
    import random

    rec = record(incident_id)
    start_ms = rec["from_ns"] // 1_000_000
    rnd = random.Random(5)
    rec["until_ns"] = rec["from_ns"] + samples * 100 * 1_000_000
    rec["rules"] = [{"rule": "thermal.room_high", "subject": "t-1", "points":
                     ["t-1.temperature"], "thresholds": {"high": 35.0}}]
    rec["points"]["t-1.temperature"] = {
        "device": "t-1", "room": "tx", "quantity": "temperature", "unit": "°C",
        "ts": [start_ms + 100 * i for i in range(samples)],
        "v": [round(24 + rnd.gauss(0, 0.5), 3) for _ in range(samples)],
        "q": "g" * samples}
    return rec


async def test_a_large_records_report_is_rendered_apart_and_its_plot_reduced(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's process does not parse it (its store's `load` would fail here: only the
    child can have read it), and the plot has a few points a pixel column, not 300,000."""
    import re

    from gateway.recorder.report_apart import IN_PROCESS_BYTES

    store = IncidentStore(site.backend.state_dir / "incidents")
    big, broken = "20261203T130000Z-tx-10", "20261203T140000Z-tx-11"
    store.save(large_record(big))
    damaged = large_record(broken)
    damaged["points"]["t-1.temperature"]["q"] = "g" * 5  # columns of different lengths
    store.save(damaged)
    assert store.path_of(big).stat().st_size > IN_PROCESS_BYTES

    def not_here(*_: Any) -> None:
        raise AssertionError("the gateway's process parsed a large record")

    monkeypatch.setattr(IncidentStore, "load", not_here)
    status, page, headers = await get(site.url, f"/api/incidents/report?id={big}")
    assert status == 200 and headers["Content-Type"].startswith("text/html"), page
    plot = page.split('data-point="t-1.temperature"', 1)[1].split("</svg>", 1)[0]
    [path] = re.findall(r'<path class="signal" d="([^"]*)"', plot)
    assert 810 <= len(path.split()) <= 4 * 812
    assert len(page) < 2_000_000
    status, body, _ = await get(site.url, f"/api/incidents/report?id={broken}")
    assert status == 500 and "lacks what a report needs" in body["message"], body
