"""Whose session goes when the panel's session table is full (gateway.panel.sessions): a user
holds at most MAX_SESSIONS_PER_USER, a login beyond that ends the user's own least recently
used one, and a full table gives up a session of the user holding the most. Before, the table
evicted its oldest session whoever held it: a view-only user (`may: []`) logging in 256 times
(20 s) logged the duty operator out during an alarm, again and again (an audit). The real
panel on loopback, and the table itself on the panel's manual clock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.clock import ManualClock
from gateway.config.section import replaced
from gateway.config.site import PanelUser
from gateway.panel.sessions import MAX_SESSIONS, MAX_SESSIONS_PER_USER, SessionTable
from tests.panel.conftest import (
    ACK,
    HASH,
    JSON,
    PASSWORD,
    USER,
    Running,
    _running,
    panel_settings,
)


@pytest.fixture
async def two_users() -> AsyncIterator[Running]:
    settings = replaced(panel_settings(), users=(
        PanelUser(name=USER, password_hash=HASH),
        PanelUser(name="viewer", password_hash=HASH, may=())))
    async for running in _running(settings):
        yield running


async def login(client: aiohttp.ClientSession, user: str) -> str:
    async with client.post("/api/login", data=json.dumps({"user": user, "password": PASSWORD}),
                           headers=JSON) as r:
        assert r.status == 200, await r.text()
        return r.cookies["roomwarden_session"].value


async def me(running: Running, token: str) -> str | None:
    async with aiohttp.ClientSession(running.url, cookies={"roomwarden_session": token}) as c, \
            c.get("/api/me") as r:
        return (await r.json()).get("user") if r.status == 200 else None


async def test_a_view_only_user_logging_in_again_and_again_logs_nobody_else_out(
        two_users: Running) -> None:
    jar = aiohttp.DummyCookieJar()  # every login a new browser: no cookie sent back
    async with aiohttp.ClientSession(two_users.url, cookie_jar=jar) as client:
        ops = await login(client, USER)
        viewer = [await login(client, "viewer") for _ in range(MAX_SESSIONS + 4)]
    assert await me(two_users, ops) == USER  # the duty operator is still logged in
    async with aiohttp.ClientSession(two_users.url, cookies={"roomwarden_session": ops}) as c, \
            c.post("/api/alarms/acknowledge", data=json.dumps(ACK), headers=JSON) as r:
        assert r.status == 200, await r.text()
    # the viewer's newest sessions live, their older ones went (their own)
    assert [await me(two_users, t) for t in viewer[-MAX_SESSIONS_PER_USER:]] == \
        ["viewer"] * MAX_SESSIONS_PER_USER
    assert await me(two_users, viewer[-MAX_SESSIONS_PER_USER - 1]) is None
    assert len(two_users.server.sessions) == 1 + MAX_SESSIONS_PER_USER


def test_a_full_table_gives_up_a_session_of_the_user_holding_the_most() -> None:
    clock = ManualClock()
    table = SessionTable(clock, ttl=3600, limit=4, per_user=3)
    alice = table.create("alice")  # the oldest session, but alice's only one
    bob = [table.create("bob") for _ in range(3)]
    table.user(bob[0])  # bob's first is used again: his second is now his least recent
    carol = table.create("carol")  # full: bob (3) gives one up, alice (1) keeps hers
    assert [table.user(t) for t in (alice, bob[0], bob[1], bob[2], carol)] == \
        ["alice", "bob", None, "bob", "carol"]
    dave = table.create("dave")  # bob holds the most (2): his least recently used goes
    assert [table.user(t) for t in (alice, bob[0], bob[2], carol, dave)] == \
        ["alice", None, "bob", "carol", "dave"]
    erin = table.create("erin")  # one each: the least recently used goes (alice's)
    assert [table.user(t) for t in (alice, bob[2], carol, dave, erin)] == \
        [None, "bob", "carol", "dave", "erin"]
