"""Password guessing is throttled per user name and for the whole panel, not only per address:
40 guesses for one user from 8 addresses (5 each, under the per-address limit) used to meet no
throttle at all. The back-off is bounded, and an operator on a device that logged in before is
never locked out by someone else's guessing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gateway.clock import ManualClock
from gateway.panel.throttle import MAX_BACKOFF, OVERALL, PER_USER, WINDOW, LoginThrottle
from tests.panel.conftest import PASSWORD, USER, Running, panel_settings
from tests.panel.conftest import _running as running_panel


@pytest.fixture
async def panel() -> AsyncIterator[Running]:
    async for running in running_panel(panel_settings()):
        yield running


async def attempt(panel: Running, address: str, password: str,
                  user: str = USER) -> tuple[int, Any, dict[str, str]]:
    """One login from `address` (a loopback address of its own: 127.0.0.2, .3 …)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http, http.post(
            panel.url + "/api/login", data=json.dumps({"user": user, "password": password}),
            headers={"Content-Type": "application/json"}) as r:
        return r.status, await r.json(), dict(r.headers)


@pytest.mark.slow
async def test_forty_guesses_from_eight_addresses_are_throttled(panel: Running) -> None:
    statuses = []
    for i in range(40):
        status, body, headers = await attempt(panel, f"127.0.0.{2 + i % 8}", f"guess-{i}")
        statuses.append(status)
        if status == 429:
            assert body["error"] == "too_many_attempts"
            assert "for this user name" in body["message"]
            assert 1 <= int(headers["Retry-After"]) <= MAX_BACKOFF
    # the first PER_USER + 1 were checked (and wrong), the other 34 never reached scrypt
    assert statuses.count(401) == PER_USER + 1 and statuses.count(429) == 40 - PER_USER - 1
    assert statuses[:PER_USER + 1] == [401] * (PER_USER + 1)
    # the operator, on a new device, waits out the (short) back-off and gets in
    assert (await attempt(panel, "127.0.0.20", PASSWORD))[0] == 429
    panel.clock.advance(2.5)
    assert (await attempt(panel, "127.0.0.20", PASSWORD))[0] == 200


@pytest.mark.slow
async def test_the_back_off_is_bounded_however_long_the_guessing_goes_on(
        panel: Running) -> None:
    waits = []
    for i in range(30):
        status, _body, headers = await attempt(panel, f"127.0.0.{2 + i % 8}", f"guess-{i}")
        if status == 429:
            wait = int(headers["Retry-After"])
            waits.append(wait)
            panel.clock.advance(wait)
    assert waits and max(waits) <= MAX_BACKOFF
    assert waits[-3:] == [int(MAX_BACKOFF)] * 3  # it grew to the cap and stayed there
    panel.clock.advance(MAX_BACKOFF)
    assert (await attempt(panel, "127.0.0.30", PASSWORD))[0] == 200


@pytest.mark.slow
async def test_an_operator_on_a_known_device_is_not_locked_out(panel: Running) -> None:
    assert (await attempt(panel, "127.0.0.1", PASSWORD))[0] == 200  # their phone, yesterday
    for i in range(20):
        await attempt(panel, f"127.0.0.{2 + i % 4}", f"guess-{i}")
    assert (await attempt(panel, "127.0.0.21", PASSWORD))[0] == 429  # a stranger's device
    assert (await attempt(panel, "127.0.0.1", PASSWORD))[0] == 200  # the known one


def test_the_whole_panel_has_a_ceiling_and_it_lifts_after_a_window() -> None:
    clock = ManualClock()
    users = [f"user{i}" for i in range(50)]
    throttle = LoginThrottle(clock, users)
    for i in range(OVERALL):  # one guess per user name, each from its own address
        assert throttle.check(f"10.0.0.{i}", users[i]) is None
        throttle.failed(f"10.0.0.{i}", users[i])
    refusal = throttle.check("10.0.1.1", users[OVERALL])
    assert refusal is not None and refusal.scope == "panel" and refusal.wait <= WINDOW
    clock.advance(WINDOW + 0.1)
    assert throttle.check("10.0.1.1", users[OVERALL]) is None


def test_the_tables_stay_bounded() -> None:
    clock = ManualClock()
    throttle = LoginThrottle(clock, ["ops"], max_clients=100)
    for i in range(5000):
        throttle.failed(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", f"name-{i}")
    assert len(throttle._addresses) == 100
    assert set(throttle._users) == {"?"}  # unknown names share one bucket
