"""Another application on the same host (cookies ignore ports) may set cookies that Python's
`http.cookies` cannot parse; sent before ours, they must not log the operator out: a real panel
on loopback, a real login, then /api/me with those cookies in front of the session's."""

from __future__ import annotations

import aiohttp
import pytest

from gateway.panel.sessions import COOKIE
from tests.panel.conftest import PASSWORD, USER, Running


@pytest.mark.parametrize("foreign", [
    'grafana_session=abc', 'theme="dark mode"', 'pref={"a":1}', 'x=a b', 'x=a,b', 'x=[1]',
    'x=\\"', 'x="', 'lang=zh-CN; _ga=GA1.1.123', 'nameless',
])
async def test_foreign_cookies_before_the_session_keep_the_operator_logged_in(
        private_panel: Running, foreign: str) -> None:
    async with aiohttp.ClientSession(base_url=private_panel.url) as client:
        async with client.post("/api/login", json={"user": USER, "password": PASSWORD}) as r:
            assert r.status == 200
            token = r.cookies[COOKIE].value
        for cookie in (f"{foreign}; {COOKIE}={token}", f"{COOKIE}={token}; {foreign}"):
            async with client.get("/api/me", headers={"Cookie": cookie}) as r:
                assert r.status == 200
                assert (await r.json())["user"] == USER, cookie
            async with client.get("/api/state", headers={"Cookie": cookie}) as r:
                assert r.status == 200, cookie
