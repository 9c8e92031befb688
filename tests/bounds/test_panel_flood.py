"""1,100 idle connections to the panel of a real `roomwarden run` process (1,024 descriptors,
as a default service gets): /healthz still answers, an operator logs in and acknowledges an
alarm, the gateway's descriptors stay bounded and its log stays small. Before, the same flood
exhausted the descriptors, took /healthz down and logged 124,674 traceback lines in 25 s.

Also the connection guard's rules on an in-process panel: idle connections are closed after
the idle timeout, slow-header clients too, and the address holding the most connections loses
its oldest idle one first."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.config.loader import load_gateway_config
from gateway.localservices import free_port
from gateway.ops.connections import (
    IDLE_TIMEOUT,
    LISTEN_BACKLOG,
    MAX_CONNECTIONS,
    ConnectionGuard,
)
from gateway.panel.passwords import hash_password
from gateway.sim.signals import Constant
from gateway.sim.site import SimulatedSite
from tests.apply.conftest import edit_config
from tests.panel.conftest import Running, panel_settings
from tests.panel.conftest import _running as running_panel

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"
USER, PASSWORD = "ops", "flood-test-password"
FLOOD = 1100
CHILD_FDS = 1024
BOUND = MAX_CONNECTIONS + 3 * LISTEN_BACKLOG + 16
"""Open connections, plus those being accepted or closed at one instant (a few listen backlogs),
plus a few the gateway opens meanwhile."""


def fds_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@contextlib.contextmanager
def more_descriptors(wanted: int) -> Iterator[None]:
    """Raise this process's soft RLIMIT_NOFILE for the flood's client sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _child_limits() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (CHILD_FDS, CHILD_FDS))


def open_idle(port: int, count: int, source: str = "127.0.0.2") -> list[socket.socket]:
    """`count` connections that never send a byte (some server ends are closed meanwhile:
    the client keeps its socket anyway, as an attacker would)."""
    socks: list[socket.socket] = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((source, 0))
        sock.settimeout(5)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            sock.close()
            continue
        socks.append(sock)
    return socks


async def until(check: Any, seconds: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


@pytest.fixture
async def gateway_process(tmp_path: Path) -> AsyncIterator[tuple[subprocess.Popen[bytes], str,
                                                                  SimulatedSite, Path]]:
    port = free_port()

    def with_panel(data: dict[str, Any]) -> None:
        data["panel"] = {"bind": "127.0.0.1", "port": port, "users": [
            {"name": USER, "password_hash": hash_password(PASSWORD)}]}

    async with SimulatedSite(load_gateway_config(SITE)) as site:
        config = site.write_config(tmp_path / "gateway.yaml")
        config.write_text(edit_config(config.read_text(encoding="utf-8"), with_panel),
                          encoding="utf-8")
        log_path = tmp_path / "gateway.log"
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block)
                [sys.executable, "-m", "gateway", "run", str(config), "--state-dir",
                 str(tmp_path / "state")], stdout=log_file, stderr=subprocess.STDOUT,
                preexec_fn=_child_limits)
        url = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as http:
                async def healthy() -> bool:
                    assert proc.poll() is None, log_path.read_text()
                    try:
                        async with http.get(url + "/healthz") as r:
                            return r.status == 200
                    except aiohttp.ClientError:
                        return False
                await until(healthy, 60, "the gateway's /healthz")
            yield proc, url, site, log_path
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 30)  # the simulator serves meanwhile
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)


async def test_a_flood_of_idle_connections_leaves_the_panel_usable(
        gateway_process: tuple[subprocess.Popen[bytes], str, SimulatedSite, Path]) -> None:
    proc, url, site, log_path = gateway_process
    before_fds = fds_of(proc.pid)
    log_before = log_path.stat().st_size
    site.set_signal("smoke-tx-01.alarm", Constant(value=True))  # an alarm to acknowledge
    site.set_signal("smoke-tx-02.alarm", Constant(value=True))
    with more_descriptors(FLOOD + 512):
        peaks: list[int] = []
        flooding = asyncio.create_task(asyncio.to_thread(open_idle, int(url.rsplit(":", 1)[1]),
                                                         FLOOD))
        while not flooding.done():
            peaks.append(fds_of(proc.pid))
            await asyncio.sleep(0.005)
        flood = await flooding
        try:
            assert len(flood) >= FLOOD - 50  # the clients got their connections
            peak = max(peaks)
            print(f"gateway descriptors: {before_fds} before, peak {peak} during the flood")
            assert peak <= before_fds + BOUND, (before_fds, peak)
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(cookie_jar=jar) as http:
                async with http.get(url + "/healthz", timeout=aiohttp.ClientTimeout(5)) as r:
                    assert r.status == 200, await r.text()
                async with http.post(url + "/api/login", json={"user": USER,
                                                               "password": PASSWORD}) as r:
                    assert r.status == 200, await r.text()

                fire: list[dict[str, str]] = []

                async def alarm_shown() -> bool:
                    async with http.get(url + "/api/state") as r:
                        state = await r.json()
                    fire[:] = [{"rule": a["rule"], "subject": a["subject"]}
                               for a in state["alarms"] if a["rule"] == "fire.smoke_coincidence"
                               and a["state"] == "active_unacknowledged"]
                    return bool(fire)
                await until(alarm_shown, 30, "the fire alarm on the panel")
                async with http.post(url + "/api/alarms/acknowledge",
                                     json={"alarms": fire[:1]}) as r:
                    body = await r.json()
                    assert r.status == 200 and body["changed"] == 1, body
            assert proc.poll() is None
            assert fds_of(proc.pid) <= before_fds + BOUND
        finally:
            for sock in flood:
                sock.close()
    # every idle connection left is closed after the idle timeout
    async def back_to_normal() -> bool:
        return fds_of(proc.pid) <= before_fds + 4
    await until(back_to_normal, IDLE_TIMEOUT + 15, "the gateway's descriptors back to normal")
    log = log_path.read_bytes()[log_before:]
    assert b"Traceback" not in log, log[-3000:].decode(errors="replace")
    assert len(log) < 20_000, len(log)  # a few lines, not 57 MB
    assert len(log.splitlines()) < 60, log.decode(errors="replace")


@pytest.fixture
async def panel() -> AsyncIterator[Running]:
    async for running in running_panel(panel_settings()):
        yield running


def guarded(panel: Running, monkeypatch: pytest.MonkeyPatch,
            **limits: float) -> tuple[ConnectionGuard, int]:
    """The panel's connection guard with some limits changed, and the panel's port."""
    guard = panel.server.connections
    assert guard is not None
    for name, value in limits.items():
        monkeypatch.setattr(guard, name, value)
    return guard, int(panel.url.rsplit(":", 1)[1])


async def settled(guard: ConnectionGuard, count: int, seconds: float = 5) -> None:
    async def reached() -> bool:
        return len(guard) == count
    await until(reached, seconds, f"{count} open connections")


async def test_idle_and_slow_header_connections_are_closed_after_the_timeout(
        panel: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    guard, port = guarded(panel, monkeypatch, idle_timeout=0.5)
    idle = socket.create_connection(("127.0.0.1", port))
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
    await settled(guard, 2)
    await settled(guard, 0, seconds=10)  # the idle and the slow connection closed
    assert guard.expired == 2
    for sock in (idle, slow):
        sock.settimeout(2)
        assert await asyncio.to_thread(sock.recv, 1024) == b""  # closed by the server
        sock.close()


async def test_the_busiest_address_loses_its_oldest_idle_connection_first(
        panel: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    guard, port = guarded(panel, monkeypatch, limit=8)
    operator = socket.create_connection(("127.0.0.1", port))  # opened first: the oldest
    await settled(guard, 1)
    attacker = await asyncio.to_thread(open_idle, port, 20, "127.0.0.3")

    async def all_accepted() -> bool:
        return guard.shed == 13  # 21 connections for 8 places
    await until(all_accepted, 10, "every connection accepted")
    assert len(guard) == 8
    operator.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    operator.settimeout(5)
    answer = await asyncio.to_thread(operator.recv, 4096)  # the server runs on this loop
    assert answer.startswith(b"HTTP/1.1 200")  # the operator's connection was kept
    for sock in [operator, *attacker]:
        sock.close()


async def test_a_connection_busy_in_a_request_is_neither_closed_nor_polled_hot(
        panel: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    guard, port = guarded(panel, monkeypatch, idle_timeout=0.3)
    looks = 0
    expire = guard._expire

    def counting(handler: Any) -> None:
        nonlocal looks
        looks += 1
        expire(handler)
    monkeypatch.setattr(guard, "_expire", counting)
    body = b'{"user": "ops", "password": "wrong"}'
    client = socket.create_connection(("127.0.0.1", port))
    client.sendall(b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:10])
    await settled(guard, 1)
    await asyncio.sleep(1.5)  # five idle timeouts, with the handler waiting for the body
    assert len(guard) == 1 and guard.expired == 0
    assert looks <= 8, looks  # one look per timeout, not a busy loop
    client.sendall(body[10:])
    client.settimeout(5)
    answer = await asyncio.to_thread(client.recv, 4096)
    assert answer.startswith(b"HTTP/1.1 401")
    client.close()
