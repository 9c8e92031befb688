"""A fake service manager: a real AF_UNIX datagram socket the test binds (a path in a temporary
directory, or an abstract-namespace name), reading sd_notify messages with the sender's
credentials as systemd does (SO_PASSCRED)."""

from __future__ import annotations

import asyncio
import os
import select
import socket
import struct
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Message:
    at: float
    """time.monotonic() when it arrived"""
    pid: int | None
    """the sender, from SCM_CREDENTIALS (what NotifyAccess=main checks)"""
    fields: dict[str, str]
    raw: bytes


class NotifySocket:
    def __init__(self, bind_to: str | bytes, address: str) -> None:
        self.address = address
        """what $NOTIFY_SOCKET says"""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(bind_to)
        self.sock.setblocking(False)
        self.messages: list[Message] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def _read_all(self) -> None:
        while True:
            try:
                data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except BlockingIOError:
                return
            pid = None
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid, _uid, _gid = struct.unpack("iII", payload[:12])
            lines = [x for x in data.decode().split("\n") if x]
            fields = dict(line.split("=", 1) for line in lines)
            self.messages.append(Message(time.monotonic(), pid, fields, data))

    def wait(self, predicate: Callable[[list[Message]], bool], timeout: float = 5.0) -> bool:
        """Read (blocking up to `timeout`) until `predicate(self.messages)` holds."""
        deadline = time.monotonic() + timeout
        while True:
            self._read_all()
            if predicate(self.messages):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            select.select([self.sock], [], [], remaining)

    def start_async(self) -> None:
        """Timestamp messages as they arrive while an asyncio test runs."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._read_all)

    def stop_async(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None

    def pings(self, since: float = 0.0) -> list[Message]:
        self._read_all()
        return [m for m in self.messages if m.fields.get("WATCHDOG") == "1" and m.at >= since]

    def statuses(self) -> list[str]:
        self._read_all()
        return [m.fields["STATUS"] for m in self.messages if "STATUS" in m.fields]

    def close(self) -> None:
        self.stop_async()
        self.sock.close()


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    """A path socket (short directory: sun_path holds 108 bytes)."""
    directory = Path(tempfile.mkdtemp(prefix="rw-notify-"))
    path = directory / "notify.sock"
    fake = NotifySocket(str(path), str(path))
    yield fake
    fake.close()
    path.unlink(missing_ok=True)
    directory.rmdir()


@pytest.fixture
def abstract_notify_socket() -> Iterator[NotifySocket]:
    name = f"roomwarden-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    fake = NotifySocket(b"\0" + name.encode(), "@" + name)
    yield fake
    fake.close()
