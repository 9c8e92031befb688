"""A live control socket is never unlinked (liveness audit L2): a second gateway given the
socket path of a running one used to unlink it as "stale" and bind its own; once that one
stopped, `roomwarden status` said no gateway was running while the first still ran. Now the
second one refuses to start (`roomwarden run`), or its ControlServer refuses (a socket bound
since `run` looked), and the first keeps answering. A socket file left by a process that died
is still replaced."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.config.loader import load_gateway_config
from gateway.contract.wire import ConfigStatus
from gateway.control import ControlError, ControlServer, ControlSocketInUse, request
from gateway.sim.site import SimulatedSite
from tests.apply.conftest import SITE, edit_config, for_tests


def server(path: Path, name: str) -> ControlServer:
    async def refuse(*_args: Any) -> ConfigStatus:
        raise AssertionError("no apply in these tests")

    async def nothing() -> None:
        return None

    return ControlServer(path, status=lambda: {"name": name}, apply_text=refuse,
                         apply_envelope=refuse, reload=nothing)


async def status_of(path: Path) -> Any:
    answers = await asyncio.to_thread(lambda: list(request(path, {"op": "status"}, timeout=10)))
    return answers[-1]["status"]["name"]


async def test_a_second_control_server_refuses_a_live_socket_and_leaves_it(
        tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    first, second = server(path, "first"), server(path, "second")
    await first.start()
    try:
        with pytest.raises(ControlSocketInUse, match="another gateway is listening"):
            await second.start()
        await second.stop()  # one that never started leaves the path alone
        assert path.exists()
        assert await status_of(path) == "first"
    finally:
        await first.stop()
    assert not path.exists()


async def test_a_socket_left_by_a_dead_process_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.listen(1)
    dead.close()  # the file stays; nobody listens: connect is refused
    assert path.exists()
    control = server(path, "new")
    await control.start()
    try:
        assert await status_of(path) == "new"
    finally:
        await control.stop()


async def test_roomwarden_run_on_a_live_socket_refuses_and_the_first_keeps_answering(
        tmp_path: Path) -> None:
    """(A real simulated site: before the fix the second gateway ran, for 5 s.)"""
    path = tmp_path / "control.sock"
    first = server(path, "first")
    async with SimulatedSite(load_gateway_config(SITE)) as site:
        config = site.write_config(tmp_path / "gateway.yaml")
        config.write_text(edit_config(config.read_text(), for_tests))
        await first.start()
        try:
            second = await asyncio.to_thread(subprocess.run, [
                sys.executable, "-m", "gateway", "run", str(config), "--state-dir",
                str(tmp_path / "other-state"), "--socket", str(path), "--duration", "5s"],
                capture_output=True, text=True, timeout=60)
            assert second.returncode == 1, second.stderr[-3000:]
            assert "cannot start" in second.stderr and str(path) in second.stderr, \
                second.stderr
            assert "event=gateway_start" not in second.stderr
            assert path.exists()
            assert await status_of(path) == "first"
        finally:
            await first.stop()


def test_a_gateway_that_never_answers_is_a_plain_error_not_a_traceback(tmp_path: Path) -> None:
    """`roomwarden status` against a gateway whose loop is stuck (the socket accepts, nothing
    answers) raised TimeoutError with a traceback; it says what it waited for."""
    path = tmp_path / "hung.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    try:
        with pytest.raises(ControlError, match=r"did not answer within 0.3 s"):
            list(request(path, {"op": "status"}, timeout=0.3))
    finally:
        server.close()
