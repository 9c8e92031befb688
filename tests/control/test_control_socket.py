"""The control socket answers every refusal before it closes, and records who really asked (the
attacker/user audit): a request without its newline gets a `timeout` answer (it was closed
after 30 s with nothing sent); a 5 MiB request gets its `bad request` answer (the client got
EPIPE); with 8 connections held, a `status` and a drill `stop` still get through and anything
else hears why it is busy and when to retry; an unsigned apply is recorded as
`<author> (as <the socket's user>)` in the config store and the log. A RoomWarden service (the
object `roomwarden run` uses) on a simulated room, its control socket in tmp."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.control import MAX_CONNECTIONS, request
from tests.apply.conftest import Running, ask, connected, edit_config, running_service

pytestmark = pytest.mark.slow


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    async with running_service(tmp_path) as run:
        yield run


def _exchange(path: Path, payload: bytes, *, wait: float = 10.0) -> tuple[bytes, float]:
    """Send `payload` (a pipe closed early is no error: the answer says why), read until the
    gateway closes; (what came, seconds it took)."""
    start = time.monotonic()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(wait)
        sock.connect(os.fspath(path))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(payload)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:  # closed with (a part of) the request unread: after its
            pass                      # answer, which came first
    return data, time.monotonic() - start


def _answer(raw: bytes) -> dict[str, Any]:
    answer = json.loads(raw.splitlines()[-1])
    assert isinstance(answer, dict)
    return answer


async def test_a_request_without_its_newline_is_answered_when_its_time_is_up(
        running: Running) -> None:
    running.service.control.request_timeout = 1.0  # 30 s in service
    raw, took = await asyncio.to_thread(_exchange, running.control, b'{"op": "status"}')
    answer = _answer(raw)
    assert answer["ok"] is False and answer["error"].startswith("timeout: "), answer
    assert "newline" in answer["error"] and took < 5


async def test_an_oversized_request_is_read_to_its_end_and_answered(running: Running) -> None:
    big = {"op": "apply", "author": "tech", "config": "x" * (5 * 1024 * 1024)}
    answers = await asyncio.to_thread(lambda: list(request(running.control, big, timeout=30)))
    assert answers[-1]["ok"] is False
    assert answers[-1]["error"].startswith("bad request: larger than 4194304 bytes")
    raw, _took = await asyncio.to_thread(
        _exchange, running.control, json.dumps(big).encode() + b"\n")
    assert "larger than" in _answer(raw)["error"]
    status = await ask(running.control, {"op": "status"})  # and the socket serves on
    assert status[-1]["ok"] is True and running.service.gateway.config_version == 0


async def test_status_and_drill_stop_get_through_when_every_slot_is_held(
        running: Running) -> None:
    held = connected(running.control, MAX_CONNECTIONS)
    try:
        await asyncio.sleep(0.3)
        status = await ask(running.control, {"op": "status"})
        assert status[-1]["ok"] is True
        stop = await ask(running.control, {"op": "drill", "action": "stop", "actor": "tech"})
        assert "busy" not in str(stop[-1].get("error", "")), stop  # (no drill runs: refused)
        busy = await ask(running.control, {"op": "reload"})
        error = busy[-1]["error"]
        assert busy[-1]["ok"] is False and error.startswith("busy: 8 requests"), error
        assert "at most 8 at once" in error and "try again in a few seconds" in error
        # the spare slot held too: even a status hears why and when to retry
        held += connected(running.control, 1)
        await asyncio.sleep(0.3)
        raw, _took = await asyncio.to_thread(_exchange, running.control, b'{"op": "status"}\n')
        assert "try again in a few seconds" in _answer(raw)["error"]
    finally:
        for sock in held:
            sock.close()
    await asyncio.sleep(0.3)
    assert (await ask(running.control, {"op": "status"}))[-1]["ok"] is True


async def test_a_local_apply_records_the_user_the_kernel_names(
        running: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    me = pwd.getpwuid(os.getuid()).pw_name

    def offset(data: dict[str, Any]) -> None:
        device = next(d for d in data["devices"] if d["id"] == "th-tx-a03")
        device.setdefault("points", {})["temperature"] = {"offset": -0.5}

    text = edit_config(running.text, offset)
    answers = await ask(running.control, {"op": "apply", "config": text, "author": "root"})
    assert answers[-1]["ok"] is True, answers[-1]
    meta = running.service.store.active_meta()
    assert meta is not None and meta.author == f"root (as {me})"
    assert f"author=root (as {me})" in caplog.text
    # a long author is shortened to fit beside the user, never refused half-way
    text = edit_config(running.text, lambda data: data["flashing"].update(health_timeout="9s"))
    answers = await ask(running.control, {"op": "apply", "config": text, "author": "a" * 120})
    assert answers[-1]["ok"] is True, answers[-1]
    meta = running.service.store.active_meta()
    assert meta is not None and meta.author is not None
    assert meta.author.endswith(f"… (as {me})") and len(meta.author) == 64
