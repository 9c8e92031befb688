"""The panel's front (gateway.panel.front, issue 15): the port listens from the start, the
panel's server is imported and made at the first connection, off the event loop's thread, and
every connection — the first ones too, arriving together — is answered by it; nothing is
accepted before the server's bounds exist; a front that cannot make its server says so and
tries again; what the server would refuse at start is refused at start."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import aiohttp
import pytest

from gateway.clock import ManualClock
from gateway.config.section import replaced
from gateway.config.site import PanelUser
from gateway.panel import front
from gateway.panel.front import PanelFront
from tests.helpers import import_threads_probe
from tests.ops.test_lazy_imports import run_fresh
from tests.panel.conftest import HASH, USER, FakeBackend, panel_settings
from tests.panel.test_panel_at_rest import RUN_WITH_CLIENT


async def _get_state(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/api/state") as reply:
        return reply.status, await reply.json()


async def test_the_first_connections_together_are_answered_by_the_server_made_for_them() -> None:
    backend = FakeBackend()
    panel = PanelFront(backend, panel_settings(), ManualClock())
    port = await panel.start()
    try:
        assert not panel.opened
        url = f"http://127.0.0.1:{port}"
        answers = await asyncio.wait_for(
            asyncio.gather(*(_get_state(url) for _ in range(12))), 30)
        expected = json.loads(backend.state.model_dump_json())
        assert [status for status, _ in answers] == [200] * 12
        assert all(body == expected for _, body in answers)
        assert panel.opened and panel.server.port == port
        assert panel.server.connections is not None  # the server's bounds serve them
    finally:
        await panel.stop()
    with pytest.raises(OSError):  # the port is closed with the server
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_front_stopped_before_its_first_connection_frees_its_port() -> None:
    panel = PanelFront(FakeBackend(), panel_settings(), ManualClock())
    port = await panel.start()
    with pytest.raises(RuntimeError, match="already started"):
        await panel.start()
    await panel.stop()
    assert not panel.opened
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_server_read_before_the_start_serves_from_the_start() -> None:
    panel = PanelFront(FakeBackend(), panel_settings(), ManualClock())
    server = panel.server  # (tests and tools that reach into the server make it at once)
    port = await panel.start()
    try:
        assert server.port == port
        status, _ = await _get_state(f"http://127.0.0.1:{port}")
        assert status == 200 and panel.server is server
    finally:
        await panel.stop()


def test_a_malformed_password_hash_is_refused_when_the_front_is_made() -> None:
    user = replaced(PanelUser(name=USER, password_hash=HASH), password_hash="md5$x")
    settings = replaced(panel_settings(), users=(user,))  # unchecked: the check refuses it
    with pytest.raises(ValueError, match=r"^panel user 'ops': a password hash must look like"):
        PanelFront(FakeBackend(), settings, ManualClock())


async def test_a_front_that_cannot_make_its_server_says_so_and_serves_at_its_next_try(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(front, "SERVER_MODULE", "gateway.panel.no_such_server")
    monkeypatch.setattr(front, "RETRY_AFTER", 0.3)
    caplog.set_level(logging.INFO, logger="gateway.panel.server")
    panel = PanelFront(FakeBackend(), panel_settings(), ManualClock())
    port = await panel.start()
    try:
        first = asyncio.ensure_future(_get_state(f"http://127.0.0.1:{port}"))
        for _ in range(200):
            if "event=panel_open_failed" in caplog.text:
                break
            await asyncio.sleep(0.02)
        assert "No module named 'gateway.panel.no_such_server'" in caplog.text
        assert not first.done() and not panel.opened  # waiting in the backlog, not refused
        monkeypatch.setattr(front, "SERVER_MODULE", "gateway.panel.server")  # repaired
        status, _ = await asyncio.wait_for(first, 10)  # the waiting request is answered
        assert status == 200 and panel.opened
        assert "event=panel_opened" in caplog.text
    finally:
        await panel.stop()


_PROBE = import_threads_probe(("gateway.panel.server", "gateway.panel.views")) + """
    import http.client, json, logging, re, sys, threading, time
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    ports, lines = [], []
    class Lines(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())
            found = re.search(r"event=panel_started .*port=(\\d+)", record.getMessage())
            if found:
                ports.append(int(found[1]))
    logging.getLogger("gateway.panel.server").addHandler(Lines())
    logging.getLogger("gateway.panel.server").setLevel(logging.INFO)

    def get(port):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/state")
        reply = conn.getresponse()
        body = json.loads(reply.read())
        conn.close()
        return reply.status, sorted(body)[:3]

    HEAVY = ["gateway.panel.server", "gateway.ops.http", "h11"]
    seen = {}
    def client():
        while not ports:
            time.sleep(0.02)
        time.sleep(1.0)  # polling and rules running: the gateway at rest
        seen["rest"] = [m for m in HEAVY if m in sys.modules]
        with ThreadPoolExecutor(8) as pool:
            seen["first"] = list(pool.map(get, [ports[0]] * 8))
        seen["after"] = [m for m in HEAVY if m in sys.modules]
        seen["opened"] = sum("event=panel_opened" in line for line in lines)
        seen["on_main"] = on_main
"""


def test_a_running_gateway_makes_its_panel_server_at_the_first_request(tmp_path: Path) -> None:
    """A real `roomwarden run` (tests/ops/site.yaml): at rest its panel listens without its
    server's modules; eight first requests at once are all answered, by one server, whose
    modules and models were imported off the event loop's thread."""
    found = run_fresh(_PROBE + RUN_WITH_CLIENT, tmp_path)
    assert found["code"] == 0
    assert found["rest"] == []
    assert found["first"] == [[200, ["alarms", "drill", "evaluated"]]] * 8
    assert found["after"] == ["gateway.panel.server", "gateway.ops.http", "h11"]
    assert found["opened"] == 1
    # the server's modules and the models /api/state needs (pydantic) were imported in a
    # worker thread: the first page load did not hold the event loop the safety core runs on
    assert found["on_main"] == {"gateway.panel.server": False, "gateway.panel.views": False}
