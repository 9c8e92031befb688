"""The panel's alarm routes added by the panel audit, over real HTTP against the fake backend:
unshelve and reset (log in first, same-site only, journalled through the backend with the
user), an acknowledge that skips the alarms someone else acknowledged meanwhile, refusal
times in the site's zone, and `evaluated` in /api/state."""

from __future__ import annotations

import aiohttp
import pytest

from gateway.panel.views import AlarmRef
from tests.panel.conftest import JSON, USER, Running, alarm, sample_state
from tests.panel.test_api import login, post

REF = {"rule": "h2_high", "subject": "h2-batt-01.h2"}
ROUTES = [
    ("/api/alarms/unshelve", {"alarm": REF}),
    ("/api/alarms/reset", {"alarm": REF}),
]


@pytest.mark.parametrize(("path", "body"), ROUTES)
async def test_unshelve_and_reset_need_a_login_and_the_same_site(
    panel: Running, client: aiohttp.ClientSession, path: str, body: object
) -> None:
    assert (await post(client, path, body))[0] == 401
    await login(client)
    status, data = await post(client, path, body, {**JSON, "Sec-Fetch-Site": "cross-site"})
    assert (status, data["error"]) == (403, "forbidden")
    status, data = await post(client, path, body, {**JSON, "Origin": "http://evil.example"})
    assert (status, data["error"]) == (403, "forbidden")
    assert panel.backend.commands == []


async def test_unshelve_and_reset_go_to_the_backend_in_the_users_name(
    panel: Running, client: aiohttp.ClientSession
) -> None:
    await login(client)
    ref = AlarmRef(**REF)
    assert await post(client, "/api/alarms/unshelve", {"alarm": REF}) == (200, {"ok": True})
    assert await post(client, "/api/alarms/reset", {"alarm": REF, "note": "checked"}) == (
        200, {"ok": True, "changed": 1})
    assert panel.backend.commands == [("unshelve", ref, USER), ("reset", ref, USER, "checked")]


async def test_refusal_times_are_in_the_site_zone(
    panel: Running, client: aiohttp.ClientSession
) -> None:
    await login(client)
    panel.backend.state = panel.backend.state.model_copy(update={"timezone": "Asia/Shanghai"})
    panel.backend.refuse = ("h2_high@h2-batt-01.h2 is already shelved by bob until "
                            "2024-05-01T06:03:00Z; unshelve it first")
    status, data = await post(client, "/api/alarms/shelve", {
        "alarm": REF, "minutes": 30, "reason": "x"})
    assert status == 409
    assert data["message"] == ("h2_high@h2-batt-01.h2 is already shelved by bob until "
                               "2024-05-01 14:03:00 Asia/Shanghai; unshelve it first")


async def test_acknowledge_skipping_the_done_ones_answers_what_it_skipped(
    panel: Running, client: aiohttp.ClientSession
) -> None:
    panel.backend.state = sample_state([
        alarm(),
        alarm(rule="smoke", subject="smoke-1.alarm", title="Smoke", state="active_acknowledged",
              acked_by="bob"),
    ])
    await login(client)
    body = {"alarms": [REF, {"rule": "smoke", "subject": "smoke-1.alarm"}],
            "skip_acknowledged": True}
    status, data = await post(client, "/api/alarms/acknowledge", body)
    assert status == 200
    assert data == {"ok": True, "changed": 1, "skipped": [
        {"rule": "smoke", "subject": "smoke-1.alarm", "title": "Smoke",
         "state": "active_acknowledged", "acked_by": "bob"}]}
    assert panel.backend.commands == [
        ("acknowledge_waiting", [AlarmRef(**REF)], USER, None)]


async def test_state_says_whether_the_alarms_are_known_yet(
    panel: Running, client: aiohttp.ClientSession
) -> None:
    async with client.get("/api/state") as r:
        assert (await r.json())["evaluated"] is True
