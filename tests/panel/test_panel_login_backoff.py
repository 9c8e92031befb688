"""A correct login never starts the per-user back-off (audit D6): the panel counts every
attempt as a failure before scrypt answers and a success takes it back — the back-off that
pre-counted failure set included. Real panel on loopback, clients on distinct loopback
addresses (phones and PCs), the panel's manual clock standing still."""

from __future__ import annotations

import aiohttp

from tests.panel.conftest import PASSWORD, USER, Running


async def _login(running: Running, address: str, password: str) -> tuple[int, str]:
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(running.url, connector=connector) as client, \
            client.post("/api/login", json={"user": USER, "password": password}) as r:
        return r.status, (await r.json()).get("message", "")


async def test_a_correct_login_at_the_user_limit_starts_no_back_off(panel: Running) -> None:
    for i in range(5):  # five guesses from five addresses: the user name is at its limit
        assert (await _login(panel, f"127.0.0.{21 + i}", "guess"))[0] == 401
    assert await _login(panel, "127.0.0.30", PASSWORD) == (200, "")
    # another of the operator's devices, new to the panel, is not made to wait
    assert await _login(panel, "127.0.0.31", PASSWORD) == (200, "")
    # the limit itself still holds: one more wrong guess starts the back-off
    assert (await _login(panel, "127.0.0.32", "guess"))[0] == 401
    status, message = await _login(panel, "127.0.0.33", PASSWORD)
    assert status == 429 and "try again in 2 s" in message, message
