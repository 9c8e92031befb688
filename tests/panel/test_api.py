"""The panel's JSON API over real HTTP: aiohttp's server on loopback, aiohttp's client."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.clock import ManualClock
from gateway.config.section import replaced
from gateway.config.site import PanelUser
from gateway.panel.server import COOKIE, MAX_BODY, PanelServer
from gateway.panel.views import AlarmRef
from tests.panel.conftest import (
    ACK,
    HASH,
    JSON,
    PASSWORD,
    SHELVE,
    USER,
    FakeBackend,
    Running,
    panel_settings,
)

SUPPRESS = {"scope": "battery-1", "minutes": 120, "reason": "permitted hot work"}
UNSUPPRESS = {"scope": "battery-1"}
RESET = {"output": "charge-inhibit-ess", "note": "cells checked"}
ACTIONS = [
    ("/api/alarms/acknowledge", ACK),
    ("/api/alarms/shelve", SHELVE),
    ("/api/suppress", SUPPRESS),
    ("/api/unsuppress", UNSUPPRESS),
    ("/api/outputs/reset", RESET),
]


async def post(
    client: aiohttp.ClientSession, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    async with client.post(path, data=data, headers=JSON if headers is None else headers) as r:
        assert r.content_type == "application/json", await r.text()
        return r.status, await r.json()


async def login(client: aiohttp.ClientSession, password: str = PASSWORD) -> tuple[int, Any]:
    return await post(client, "/api/login", {"user": USER, "password": password})


# --- reading ----------------------------------------------------------------------------------


async def test_healthz_page_and_static(client: aiohttp.ClientSession) -> None:
    async with client.get("/healthz") as r:
        assert r.status == 200
        # a bare panel backend (no gateway behind it) has no checks: see tests/ops
        assert await r.json() == {"ok": True, "status": "ok", "checks": {}}
    async with client.get("/") as r:
        assert r.status == 200
        assert r.content_type == "text/html"
        assert "<title>RoomWarden panel</title>" in await r.text()
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    for path, ctype in [("/static/panel.js", "text/javascript"), ("/static/panel.css", "text/css")]:
        async with client.get(path) as r:
            assert r.status == 200
            assert r.content_type == ctype
            assert len(await r.read()) > 1000


async def test_state_without_login(panel: Running, client: aiohttp.ClientSession) -> None:
    async with client.get("/api/state") as r:
        assert r.status == 200
        assert r.headers["Cache-Control"] == "no-store"
        assert await r.json() == panel.backend.state.model_dump(mode="json")


async def test_login_to_view(private_panel: Running) -> None:
    async with aiohttp.ClientSession(
        base_url=private_panel.url, cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as client:
        async with client.get("/api/state") as r:
            assert r.status == 401
            assert (await r.json())["error"] == "not_logged_in"
        async with client.get("/") as r:
            assert r.status == 200  # the page itself, with its login box
        async with client.get("/api/me") as r:
            assert await r.json() == {"user": None, "may": [], "login_to_view": True,
                                      "login_enabled": True}
        assert (await login(client))[0] == 200
        async with client.get("/api/state") as r:
            assert r.status == 200
            assert (await r.json())["gateway"] == "gw-bj-01"


# --- sessions ---------------------------------------------------------------------------------


async def test_login_sets_a_strict_http_only_cookie(client: aiohttp.ClientSession) -> None:
    async with client.get("/api/me") as r:
        assert (await r.json())["user"] is None
    async with client.post(
        "/api/login", json={"user": USER, "password": PASSWORD}, headers=JSON
    ) as r:
        assert r.status == 200
        body = await r.json()  # the user's rights come with it (the page offers only those)
        assert body == {"ok": True, "user": USER, "may": sorted(body["may"])} and body["may"]
        morsel = r.cookies[COOKIE]
        assert len(morsel.value) >= 40
        assert morsel["httponly"] is True
        assert morsel["samesite"] == "Strict"
        assert morsel["path"] == "/"
        assert morsel["max-age"] == str(8 * 3600)
    async with client.get("/api/me") as r:
        assert (await r.json())["user"] == USER


@pytest.mark.parametrize(
    "body",
    [{"user": USER, "password": "wrong"}, {"user": "nobody", "password": PASSWORD}],
)
async def test_login_failure(client: aiohttp.ClientSession, body: dict[str, str]) -> None:
    status, data = await post(client, "/api/login", body)
    assert status == 401
    assert data == {"error": "login_failed", "message": "wrong user name or password"}
    assert COOKIE not in {c.key for c in client.cookie_jar}


async def test_logout(panel: Running, client: aiohttp.ClientSession) -> None:
    await login(client)
    token = next(c.value for c in client.cookie_jar if c.key == COOKIE)
    assert await post(client, "/api/logout", {}) == (200, {"ok": True})
    assert COOKIE not in {c.key for c in client.cookie_jar}
    async with client.get("/api/me") as r:
        assert (await r.json())["user"] is None
    # the old token is dead on the server too, not only forgotten by the client
    client.cookie_jar.update_cookies({COOKIE: token})
    assert (await post(client, *ACTIONS[0]))[0] == 401
    assert panel.backend.commands == []


async def test_session_expires_after_ttl(panel: Running, client: aiohttp.ClientSession) -> None:
    await login(client)
    panel.clock.advance(8 * 3600 - 1)
    assert (await post(client, *ACTIONS[0]))[0] == 200
    panel.clock.advance(2)
    status, data = await post(client, *ACTIONS[0])
    assert status == 401
    assert data["error"] == "not_logged_in"
    assert len(panel.server.sessions) == 0


async def test_failed_logins_are_rate_limited(
    panel: Running, client: aiohttp.ClientSession
) -> None:
    for _ in range(5):
        assert (await login(client, "guess"))[0] == 401
    async with client.post(
        "/api/login", json={"user": USER, "password": PASSWORD}, headers=JSON
    ) as r:
        assert r.status == 429  # even the right password, until the window has passed
        assert (await r.json())["error"] == "too_many_attempts"
        assert 1 <= int(r.headers["Retry-After"]) <= 60
    panel.clock.advance(30)
    assert (await login(client))[0] == 429
    panel.clock.advance(31)
    assert (await login(client))[0] == 200
    # a success clears the count
    for _ in range(4):
        assert (await login(client, "guess"))[0] == 401
    assert (await login(client))[0] == 200
    assert (await login(client, "guess"))[0] == 401


# --- actions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "body"), ACTIONS)
async def test_actions_need_a_login(
    panel: Running, client: aiohttp.ClientSession, path: str, body: Any
) -> None:
    status, data = await post(client, path, body)
    assert status == 401
    assert data == {"error": "not_logged_in", "message": "log in first"}
    assert panel.backend.commands == []


async def test_actions_pass_the_user_as_actor(
    panel: Running, client: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    await login(client)
    caplog.set_level(logging.INFO, logger="gateway.panel.server")
    ref = AlarmRef(rule="h2_high", subject="h2-batt-01.h2")
    assert await post(client, "/api/alarms/acknowledge", {**ACK, "note": "on my way"}) == (
        200, {"ok": True, "changed": 1})
    assert await post(client, "/api/alarms/shelve", SHELVE) == (200, {"ok": True})
    # the answer says what the suppression hides: the alarms of the list its scope covers
    assert await post(client, "/api/suppress", SUPPRESS) == (200, {
        "ok": True, "covers": 1, "more": 0, "alarms": [
            {"rule": "h2_high", "subject": "h2-batt-01.h2", "severity": "critical",
             "title": "Hydrogen high in battery room 1", "state": "active_unacknowledged"}]})
    assert await post(client, "/api/unsuppress", UNSUPPRESS) == (200, {"ok": True})
    assert await post(client, "/api/outputs/reset", RESET) == (
        200, {"ok": True, "note": "output charge-inhibit-ess released"})
    assert panel.backend.commands == [
        ("acknowledge", [ref], USER, "on my way"),
        ("shelve", ref, USER, 30.0, "sensor being replaced"),
        ("suppress", "battery-1", USER, 120.0, "permitted hot work"),
        ("unsuppress", "battery-1", USER),
        ("reset_output", "charge-inhibit-ess", USER, "cells checked"),
    ]
    lines = [r.getMessage() for r in caplog.records]
    assert (
        'event=panel_acknowledge user=ops alarms=h2_high/h2-batt-01.h2 changed=1 '
        'note="on my way"' in lines
    )
    assert any(line.startswith("event=panel_shelve user=ops") for line in lines)
    assert any(line.startswith("event=panel_suppress user=ops scope=battery-1 covers=1")
               for line in lines)
    assert "event=panel_unsuppress user=ops scope=battery-1" in lines
    assert ('event=panel_reset_output user=ops output=charge-inhibit-ess '
            'result="output charge-inhibit-ess released" note="cells checked"' in lines)
    assert all(PASSWORD not in line for line in lines)


async def test_command_refused_is_409(panel: Running, client: aiohttp.ClientSession) -> None:
    await login(client)
    panel.backend.refuse = "no such alarm: h2_high/h2-batt-01.h2"
    for path, body in ACTIONS:
        assert await post(client, path, body) == (
            409, {"error": "refused", "message": "no such alarm: h2_high/h2-batt-01.h2"})


async def test_backend_crash_is_a_json_500_and_the_server_lives_on(
    panel: Running, client: aiohttp.ClientSession
) -> None:
    await login(client)

    def broken(*args: Any) -> int:
        raise RuntimeError("boom")

    panel.backend.acknowledge = broken  # type: ignore[method-assign,assignment]
    assert await post(client, *ACTIONS[0]) == (
        500, {"error": "internal_error", "message": "internal server error"})
    async with client.get("/healthz") as r:
        assert r.status == 200


# --- bad requests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers", "status", "error", "reason"),
    [
        ("{not json", JSON, 400, "malformed_json", "body is not valid JSON"),
        (b"\xff\xfe{}", JSON, 400, "malformed_json", "body is not valid JSON"),
        ("[" * 100_00 + "]" * 100_00, JSON, 400, "malformed_json", "body is not valid JSON"),
        ("", JSON, 400, "malformed_json", "body is not valid JSON"),
        ("[]", JSON, 400, "invalid_body", "Input should be a valid dictionary"),
        (json.dumps({**ACK, "extra": 1}), JSON, 400, "invalid_body", "extra: Extra inputs"),
        (json.dumps({"alarms": []}), JSON, 400, "invalid_body", "alarms: List should have"),
        (json.dumps({"alarms": [{"rule": "x"}]}), JSON, 400, "invalid_body",
         "alarms.0.subject: Field required"),
        (json.dumps(ACK), {"Content-Type": "text/plain"}, 415, "unsupported_media_type",
         "Content-Type must be application/json, not text/plain"),
        (json.dumps(ACK), {"Content-Type": "application/x-www-form-urlencoded"}, 415,
         "unsupported_media_type", "must be application/json"),
        (json.dumps(ACK), {**JSON, "Origin": "http://evil.example"}, 403, "forbidden",
         "another origin"),
        (json.dumps(ACK), {**JSON, "Origin": "http://[oops"}, 403, "forbidden",
         "another origin"),  # an unparsable origin was a 500
        (json.dumps(ACK), {**JSON, "Sec-Fetch-Site": "cross-site"}, 403, "forbidden",
         "cross-site"),
        ('{"alarms": "' + "x" * MAX_BODY + '"}', JSON, 413, "body_too_large", "larger than"),
    ],
)
async def test_bad_requests_get_a_reason(
    panel: Running,
    client: aiohttp.ClientSession,
    body: str | bytes,
    headers: dict[str, str],
    status: int,
    error: str,
    reason: str,
) -> None:
    await login(client)
    got_status, data = await post(client, "/api/alarms/acknowledge", body, headers)
    assert (got_status, data["error"]) == (status, error), data
    assert reason in data["message"]
    assert panel.backend.commands == []


async def test_validation_errors_list_details_and_never_echo_input(
    client: aiohttp.ClientSession,
) -> None:
    status, data = await post(client, "/api/login", {"user": "", "password": "p" * 300})
    assert status == 400
    assert {d["loc"] for d in data["details"]} == {"user", "password"}
    assert "p" * 300 not in json.dumps(data)


async def test_chunked_oversized_body_is_413(client: aiohttp.ClientSession) -> None:
    await login(client)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 16 * 1024

    async with client.post("/api/alarms/acknowledge", data=chunks(), headers=JSON) as r:
        assert r.status == 413
        assert (await r.json())["error"] == "body_too_large"


async def test_unknown_route_and_method(client: aiohttp.ClientSession) -> None:
    async with client.get("/api/nothing") as r:
        assert r.status == 404
        assert await r.json() == {"error": "not_found",
                                  "message": "no such page or API: GET /api/nothing"}
    async with client.get("/api/alarms/acknowledge") as r:
        assert r.status == 405
        assert (await r.json())["error"] == "method_not_allowed"
        assert r.headers["Allow"] == "POST"


async def test_a_malformed_user_hash_is_refused_at_start() -> None:
    user = replaced(PanelUser(name="bad", password_hash=HASH), password_hash="plaintext")
    settings = replaced(panel_settings(), users=(user,))  # unchecked: the check refuses it
    with pytest.raises(ValueError, match="panel user 'bad': a password hash must look like"):
        PanelServer(FakeBackend(), settings, ManualClock())


async def test_stop_frees_the_port_and_is_idempotent() -> None:
    server = PanelServer(FakeBackend(), panel_settings(), ManualClock())
    port = await server.start()
    await server.stop()
    await server.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as client, client.get(
            f"http://127.0.0.1:{port}/healthz"
        ):
            pass
    assert HASH  # the users' hashes came from hash_password


# --- fuzz -------------------------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["alarms", "rule", "subject", "alarm", "minutes",
                                       "reason", "scope", "note", "user", "password"])
                      | st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_bodies = st.one_of(
    st.binary(max_size=300),
    _json_values.map(lambda v: json.dumps(v).encode()),
    st.text(max_size=200).map(str.encode),
)
_paths = st.sampled_from(["/api/login", "/api/logout", *(path for path, _ in ACTIONS)])
_ctypes = st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain",
                           "", "multipart/form-data; boundary=x"])


@pytest.mark.slow
@given(path=_paths, body=_bodies, ctype=_ctypes, logged_in=st.booleans())
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_garbage_never_gives_a_500(
    panel: Running, path: str, body: bytes, ctype: str, logged_in: bool
) -> None:
    async with aiohttp.ClientSession(
        base_url=panel.url, cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as client:
        if logged_in:
            panel.server.throttle.succeeded("127.0.0.1")
            assert (await login(client))[0] == 200
        headers = {"Content-Type": ctype} if ctype else {}
        async with client.post(path, data=body, headers=headers) as r:
            assert r.status < 500, await r.text()
            data = await r.json()
            if r.status >= 400:
                assert data["error"] and data["message"]


async def test_parallel_guesses_cannot_outrun_the_limit(
    panel: Running, client: aiohttp.ClientSession
) -> None:
    results = await asyncio.gather(*(login(client, f"guess{i}") for i in range(12)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [401] * 5 + [429] * 7
