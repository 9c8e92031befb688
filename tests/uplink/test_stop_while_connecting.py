"""A stop is not held by the uplink's connect (liveness audit L3). With a broker name that no
nameserver answered, `gateway_stopped` was logged within 0.5 s of SIGTERM but the process
exited 22.9 s later: `asyncio.run` waited for the default executor's thread, stuck in
getaddrinfo under `to_thread(client.connect)`. The connect now runs in a daemon thread of its
own (gateway.uplink.session.connect_apart).

Here the connect is held by a real socket rather than by DNS (a blackholed nameserver needs
root to bind port 53 and a private mount namespace): the broker's port on loopback is a
listener whose accept queue is full, so the kernel drops the gateway's SYNs and paho's connect
blocks for its 5 s connect timeout — in the thread that `asyncio.run` waited for, the same way
a lookup did."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config.loader import load_gateway_config
from gateway.config.section import validator
from gateway.sim.site import SimulatedSite
from gateway.uplink.session import Handlers, Session, client_options
from gateway.uplink.settings import UplinkSettings
from tests.apply.conftest import SITE, edit_config, for_tests, until
from tests.apply.test_service_process import GatewayProcess, devices_online

SYN_SENT = "02"


@pytest.fixture
def blackhole() -> Iterator[socket.socket]:
    """A loopback listener that never accepts, whose queue is full: a connect to its port
    neither succeeds nor fails until the connecting side gives up (or the queue drains)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname(), timeout=5)  # fills the queue
    try:
        yield listener
    finally:
        filler.close()
        listener.close()


@pytest.fixture
def blackholed_port(blackhole: socket.socket) -> int:
    return int(blackhole.getsockname()[1])


def connecting_to(port: int) -> bool:
    """A socket of this network namespace is in SYN_SENT towards 127.0.0.1:`port`."""
    with open("/proc/net/tcp", encoding="ascii") as table:
        next(table)
        for line in table:
            fields = line.split()
            remote, state = fields[2], fields[3]
            if state == SYN_SENT and int(remote.split(":")[1], 16) == port:
                return True
    return False


async def test_sigterm_while_the_uplink_connects_exits_promptly(
        tmp_path: Path, blackholed_port: int) -> None:
    def with_uplink(data: dict[str, Any]) -> None:
        for_tests(data)
        data["uplink"] = {"broker": "127.0.0.1", "port": blackholed_port, "protocol": "5",
                          "reconnect_min": 0.2, "reconnect_max": 1.0}

    async with SimulatedSite(load_gateway_config(SITE)) as site:
        factory = site.write_config(tmp_path / "gateway.yaml")
        factory.write_text(edit_config(factory.read_text(), with_uplink))
        gw = GatewayProcess(factory, tmp_path / "state", tmp_path / "control.sock")
        try:
            gw.start()
            await until(lambda: devices_online(gw.status()), 40, "devices online")
            # SIGTERM just as an attempt begins: its connect has ~5 s left to block
            await until(lambda: connecting_to(blackholed_port), 20, "the uplink connecting")
            await until(lambda: not connecting_to(blackholed_port), 20, "that attempt over")
            await until(lambda: connecting_to(blackholed_port), 20, "the next attempt")
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            code = await asyncio.to_thread(gw.proc.wait, 30)
            took = time.monotonic() - signalled
            log = gw.log.read_text()
            assert code == 0, log[-3000:]
            assert "event=gateway_stopped" in log
            # before: the rest of paho's 5 s connect timeout after `gateway_stopped`
            assert took < 2.5, f"exited {took:.1f} s after SIGTERM\n{log[-3000:]}"
        finally:
            gw.stop()


async def test_a_connect_given_up_is_closed_once_it_completes(blackhole: socket.socket) -> None:
    """The cancelled connect's thread runs on; when its connect completes after all, that
    socket is closed (no network thread will ever serve it), not left open."""
    port = int(blackhole.getsockname()[1])
    settings = validator(UplinkSettings).validate_python({"broker": "127.0.0.1", "port": port,
                                              "protocol": "5"})
    session = Session(client_options(settings, "given-up"), asyncio.get_running_loop(),
                      will=("t/state", b"offline"), subscriptions=[],
                      handlers=Handlers(lambda *_: None, lambda *_: None))
    opening = asyncio.create_task(session.open("127.0.0.1", port, 30, 10))
    await until(lambda: connecting_to(port), 10, "the connect under way")
    opening.cancel()
    began = time.monotonic()
    with contextlib.suppress(asyncio.CancelledError):
        await opening
    assert time.monotonic() - began < 0.5  # given up at once, the connect still blocked
    await session.end()
    blackhole.accept()[0].close()  # the queue drains: the SYN retransmitted gets through
    blackhole.settimeout(10)
    late, _ = blackhole.accept()
    with late:
        late.settimeout(10)
        while late.recv(4096):  # paho's CONNECT, then the end: the socket was closed
            pass
