"""Who may do what on the panel, and from where (the attacker/user audit): per-user rights
(`panel.users[].may`, 403 with the reason), only the names the panel is reached by in `Host`
(421: DNS rebinding), no `Origin: null` on a state-changing request, cross-site refusals
logged (rate-limited), and clients behind a trusted proxy told apart for the login throttle.
A real panel on loopback with the small backend of tests/panel/conftest.py."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from ipaddress import ip_network
from typing import Any

import aiohttp
import pytest

from gateway.config.section import replaced
from gateway.config.site import PanelUser
from gateway.ops.connections import RateLimitFilter
from tests.helpers import refused_in
from tests.panel.conftest import (
    ACK,
    ALARM,
    HASH,
    JSON,
    PASSWORD,
    SHELVE,
    USER,
    Running,
    _running,
    panel_settings,
)

RESET = {"alarm": ALARM}
SUPPRESS = {"scope": "tx-3f", "minutes": 10080, "reason": "hot work"}
ACTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("/api/alarms/acknowledge", ACK, "acknowledge"),
    ("/api/alarms/reset", RESET, "acknowledge"),
    ("/api/alarms/shelve", SHELVE, "shelve"),
    ("/api/alarms/unshelve", RESET, "shelve"),
    ("/api/suppress", SUPPRESS, "suppress"),
    ("/api/unsuppress", {"scope": "tx-3f"}, "suppress"),
    ("/api/outputs/reset", {"output": "charge-inhibit-ess"}, "reset_output"),
]


@pytest.fixture
async def rights_panel() -> AsyncIterator[Running]:
    settings = replaced(panel_settings(), users=(
        PanelUser(name=USER, password_hash=HASH),  # no `may:`: every right, as before
        PanelUser(name="viewer", password_hash=HASH, may=()),
        PanelUser(name="acker", password_hash=HASH, may=("acknowledge",)),
    ))
    async for running in _running(settings):
        yield running


async def post(client: aiohttp.ClientSession, path: str, body: Any,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with client.post(path, data=json.dumps(body), headers={**JSON, **(headers or {})}) \
            as r:
        return r.status, await r.json()


def session(running: Running, **kwargs: Any) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(base_url=running.url, cookie_jar=aiohttp.CookieJar(unsafe=True),
                                 **kwargs)


# --- per-user rights ------------------------------------------------------------------------


async def test_a_user_may_do_only_what_its_may_lists(rights_panel: Running) -> None:
    async with session(rights_panel) as viewer, session(rights_panel) as acker, \
            session(rights_panel) as ops:
        for client, name in ((viewer, "viewer"), (acker, "acker"), (ops, USER)):
            assert (await post(client, "/api/login", {"user": name, "password": PASSWORD}))[0] \
                == 200
        async with viewer.get("/api/me") as r:
            assert (await r.json())["may"] == []
        async with ops.get("/api/me") as r:
            assert (await r.json())["may"] == sorted(
                ["acknowledge", "acknowledge_all", "shelve", "suppress", "reset_output"])
        # the audit: a user meant to view suppressed a room with a live fire in it
        for path, body, right in ACTIONS:
            status, data = await post(viewer, path, body)
            assert (status, data["error"]) == (403, "not_permitted"), (path, data)
            assert right in data["message"] and "viewer may only view" in data["message"]
        assert rights_panel.backend.commands == []
        # an acknowledger acknowledges and resets, nothing more
        for path, body, right in ACTIONS:
            status, data = await post(acker, path, body)
            if right == "acknowledge":
                assert status == 200, (path, data)
            else:
                assert status == 403 and "acker may not" in data["message"], (path, data)
                assert "acker may acknowledge" in data["message"]
        assert [c[0] for c in rights_panel.backend.commands] == ["acknowledge", "reset"]
        # a user without `may:` keeps every right (existing configs work on)
        for path, body, _right in ACTIONS:
            assert (await post(ops, path, body))[0] == 200, path
        assert len(rights_panel.backend.commands) == 2 + len(ACTIONS)


def test_an_unknown_right_is_refused_by_check_with_file_line_and_path(tmp_path: Any) -> None:
    from pathlib import Path

    import yaml

    from gateway.config.loader import load_gateway_config

    repo = Path(__file__).resolve().parents[2]
    data = yaml.safe_load((repo / "firmware_configs" / "telecom_equipment_room.yaml").read_text())
    data["profiles_dir"] = str(repo / "hardware" / "profiles")
    data["panel"] = {"users": [{"name": "ops", "password_hash": HASH},
                               {"name": "viewer", "password_hash": HASH, "may": ["view"]}],
                     "hosts": ["panel.site.example", "not a host:80"]}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    text = refused_in(path, "panel")
    assert "panel.users[1].may[0]: Input should be 'acknowledge'" in text
    assert "panel.hosts[1]:" in text and "no DNS name or IP address" in text
    ok = data["panel"]
    ok["users"][1]["may"] = []
    ok["hosts"] = ["panel.site.example"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    users = load_gateway_config(path).config.panel.users
    assert users[0].may == ("acknowledge", "acknowledge_all", "shelve", "suppress",
                            "reset_output") and users[1].may == ()


# --- Host: DNS rebinding ----------------------------------------------------------------------


async def test_only_the_panels_own_names_are_answered(panel: Running) -> None:
    port = panel.server.port
    async with session(panel) as client:
        foreign = {"Host": f"attacker.example:{port}"}
        for path in ("/", "/api/state", "/api/events", "/api/me", "/static/panel.js"):
            async with client.get(path, headers=foreign) as r:
                assert r.status == 421, path
                body = await r.json()
                assert body["error"] == "misdirected_request"
                assert "attacker.example" in body["message"] and "panel.hosts" in body["message"]
        # a login sent to the rebound name, with its matching Origin, is not processed
        status, body = await post(client, "/api/login", {"user": USER, "password": PASSWORD},
                                  {**foreign, "Origin": f"http://attacker.example:{port}"})
        assert status == 421 and len(panel.server.sessions) == 0
        # its own names answer: the address, localhost, the machine's name and addresses
        hostname = socket.gethostname()
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST.:{port}",
                     f"{hostname}:{port}", f"{hostname.split('.')[0]}:{port}", f"[::1]:{port}"):
            async with client.get("/api/state", headers={"Host": host}) as r:
                assert r.status == 200, host
        # … on the panel's port only; garbage is no name
        for host in ("127.0.0.1:1", "localhost", "127.0.0.1:80", "attacker.example",
                     "203.0.113.9:" + str(port), "[::1", "a:b:c"):
            async with client.get("/api/state", headers={"Host": host}) as r:
                assert r.status == 421, host
        # monitoring reaches a gateway by names the gateway cannot know
        async with client.get("/healthz", headers=foreign) as r:
            assert r.status == 200


async def test_names_in_panel_hosts_are_answered_on_any_port() -> None:
    settings = panel_settings(hosts=("panel.site.example", "[fd00::2]"))
    async for running in _running(settings):
        async with session(running) as client:
            for host in ("panel.site.example", "Panel.Site.Example:443", "[fd00::2]:8443"):
                async with client.get("/api/state", headers={"Host": host}) as r:
                    assert r.status == 200, host
            async with client.get("/api/state", headers={"Host": "other.site.example"}) as r:
                assert r.status == 421


# --- Origin: null, and the refusals' log line ---------------------------------------------------


def _forget_earlier_refusals(monkeypatch: pytest.MonkeyPatch) -> RateLimitFilter | None:
    """The rate limit of the refusals' log line, with this worker's earlier refusals (other
    tests') forgotten."""
    found = next((f for f in logging.getLogger("gateway.panel.server").filters
                  if isinstance(f, RateLimitFilter)
                  and f.prefix == "event=panel_cross_site_refused"), None)
    if found is not None:
        monkeypatch.setattr(found, "_last", {})
    return found


async def test_an_opaque_origin_is_refused(panel: Running) -> None:
    async with session(panel) as client:
        assert (await post(client, "/api/login", {"user": USER, "password": PASSWORD}))[0] == 200
        for path, body, _right in ACTIONS:
            status, data = await post(client, path, body, {"Origin": "null"})
            assert (status, data.get("error")) == (403, "forbidden"), (path, data)
            assert "Origin: null" in data["message"]
        assert (await post(client, "/api/logout", {}, {"Origin": "null"}))[0] == 403
        assert panel.backend.commands == []
        assert (await post(client, "/api/alarms/acknowledge", ACK))[0] == 200  # its own page


async def test_cross_site_refusals_are_logged_rate_limited(
        panel: Running, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    limit = _forget_earlier_refusals(monkeypatch)
    caplog.set_level(logging.INFO, logger="gateway.panel.server")
    async with session(panel) as client:
        assert (await post(client, "/api/login", {"user": USER, "password": PASSWORD}))[0] == 200
        for _ in range(3):
            status, _ = await post(client, "/api/suppress", SUPPRESS,
                                   {"Origin": "http://evil.example", "Sec-Fetch-Site": "none"})
            assert status == 403
        assert panel.backend.commands == []
    lines = [r.getMessage() for r in caplog.records if "panel_cross_site_refused" in r.msg]
    # the first refusal is logged with who, where and from which origin; the next ones within
    # the minute are counted, not logged (a flood of them cannot fill the log)
    assert lines == ["event=panel_cross_site_refused client=127.0.0.1 path=/api/suppress "
                     "origin='http://evil.example' fetch_site='none'"], lines
    assert limit is not None and limit.seen >= 3


# --- behind a trusted proxy ---------------------------------------------------------------------


async def _login_via(running: Running, forwarded: str, password: str) -> int:
    async with session(running) as client:
        status, _ = await post(client, "/api/login", {"user": USER, "password": password},
                               {"X-Forwarded-For": forwarded})
        return status


async def test_behind_a_trusted_proxy_one_guesser_locks_out_only_itself() -> None:
    settings = panel_settings(trusted_proxies=(ip_network("127.0.0.0/8"),))
    async for running in _running(settings):
        for _ in range(5):  # a guesser, as the proxy names it
            assert await _login_via(running, "198.51.100.1, 10.0.0.66", "guess") == 401
        assert await _login_via(running, "10.0.0.66", PASSWORD) == 429
        # the operator behind the same proxy logs in
        assert await _login_via(running, "10.0.0.7", PASSWORD) == 200
        # a header that does not parse counts as the proxy itself
        assert await _login_via(running, "not-an-address", PASSWORD) == 200


async def test_without_trusted_proxies_the_header_counts_for_nothing(panel: Running) -> None:
    for _ in range(5):
        assert await _login_via(panel, "10.0.0.66", "guess") == 401
    # anyone can write the header: without `panel.trusted_proxies` it names nobody
    assert await _login_via(panel, "10.0.0.7", PASSWORD) == 429
