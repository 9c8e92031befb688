"""An emulated RS-485 line: two pseudo-terminals joined by a relay paced at the line speed.

`SerialLine` opens two pty pairs, puts them in raw mode and relays bytes between their master
ends in the asyncio loop. The device side (a Modbus RTU server, a serial-text emulator) opens
`server_path`; the gateway opens `client_path`, exactly as it would open /dev/ttyUSB0.

Pacing: the line is half duplex and shared by both directions. A chunk of n bytes read at
time t arrives on the other side at max(t, line_free_at) + n × bits_per_char / baud, and the
line is busy until then; so a 9600 baud bus is as slow as one (8N1: 10 bits per character,
8E1: 11). With `baudrate=None` bytes pass at once (an unpaced null modem).

The relay keeps its own file descriptor of each slave open, so a side that closes and reopens
its port (a gateway reconnecting) never makes the master read EIO. `close()` closes all four
descriptors. Faults are not applied on the line: the servers know frame boundaries exactly
and apply them to whole frames (see `gateway.sim.faults`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
import tty
from collections import deque
from types import TracebackType
from typing import Literal

from gateway.records import dataclass

READ_SIZE = 4096


@dataclass(frozen=True, slots=True)
class LineSettings:
    """Character framing and speed of a serial line."""

    baudrate: int | None = 9600
    """Bits per second; None = unpaced."""
    bytesize: int = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: int = 1

    @property
    def bits_per_char(self) -> int:
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits

    @property
    def char_time(self) -> float:
        """Seconds one character occupies the line (0 when unpaced)."""
        return self.bits_per_char / self.baudrate if self.baudrate else 0.0

    def transfer_time(self, nbytes: int) -> float:
        return nbytes * self.char_time


@dataclass(slots=True)
class _Side:
    master: int
    slave: int
    path: str
    pending: deque[bytes]
    """Bytes due to be written to this side's master (arrived, not yet accepted by the pty)."""
    writing: bool = False
    received: int = 0
    """Bytes this side has sent onto the line."""


def _open_pty() -> tuple[int, int, str]:
    master, slave = os.openpty()
    tty.setraw(slave, termios.TCSANOW)
    attrs = termios.tcgetattr(slave)
    attrs[3] &= ~termios.ECHO  # lflag: raw already clears it; be explicit
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


class SerialLine:
    """Two pty device paths joined by a paced, half-duplex relay. Use as an async context
    manager, or call `open()` (inside a running loop) and `close()`."""

    def __init__(self, settings: LineSettings | None = None) -> None:
        self.settings = settings if settings is not None else LineSettings()
        self._server: _Side | None = None
        self._client: _Side | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._line_free_at = 0.0
        self._generation = 0

    # --- life cycle -------------------------------------------------------------------------

    def open(self) -> None:
        if self._loop is not None:
            raise RuntimeError("line is already open")
        self._loop = asyncio.get_running_loop()
        sides: list[_Side] = []
        try:
            for _ in range(2):
                master, slave, path = _open_pty()
                sides.append(_Side(master, slave, path, deque()))
        except OSError:
            for side in sides:
                os.close(side.master)
                os.close(side.slave)
            self._loop = None
            raise
        self._server, self._client = sides
        self._loop.add_reader(self._server.master, self._on_readable, self._server, self._client)
        self._loop.add_reader(self._client.master, self._on_readable, self._client, self._server)

    def close(self) -> None:
        """Stop relaying and close every descriptor (idempotent)."""
        loop = self._loop
        self._generation += 1
        for side in (self._server, self._client):
            if side is None:
                continue
            if loop is not None and not loop.is_closed():
                loop.remove_reader(side.master)
                loop.remove_writer(side.master)
            for fd in (side.master, side.slave):
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._server = self._client = None
        self._loop = None

    async def __aenter__(self) -> SerialLine:
        self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._loop is not None

    @property
    def server_path(self) -> str:
        """The device end (what a simulated device opens)."""
        if self._server is None:
            raise RuntimeError("line is not open")
        return self._server.path

    @property
    def client_path(self) -> str:
        """The gateway end (what goes into the gateway config as the bus `port`)."""
        if self._client is None:
            raise RuntimeError("line is not open")
        return self._client.path

    @property
    def bytes_from_server(self) -> int:
        return self._server.received if self._server is not None else 0

    @property
    def bytes_from_client(self) -> int:
        return self._client.received if self._client is not None else 0

    # --- relay ------------------------------------------------------------------------------

    def _on_readable(self, source: _Side, target: _Side) -> None:
        try:
            data = os.read(source.master, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:  # EIO cannot happen while we hold the slave; be safe anyway
            return
        if not data:
            return
        source.received += len(data)
        loop = self._loop
        assert loop is not None
        duration = self.settings.transfer_time(len(data))
        if duration <= 0:
            self._deliver(target, data)
            return
        now = loop.time()
        arrive = max(now, self._line_free_at) + duration
        self._line_free_at = arrive
        loop.call_at(arrive, self._arrived, self._generation, target, data)

    def _arrived(self, generation: int, target: _Side, data: bytes) -> None:
        if self._loop is None or generation != self._generation:
            return  # the line was closed meanwhile
        self._deliver(target, data)

    def _deliver(self, target: _Side, data: bytes) -> None:
        target.pending.append(data)
        if not target.writing:
            self._flush(target)

    def _flush(self, target: _Side) -> None:
        loop = self._loop
        if loop is None:
            return
        while target.pending:
            chunk = target.pending[0]
            try:
                written = os.write(target.master, chunk)
            except BlockingIOError:
                written = 0
            except OSError:
                target.pending.clear()
                break
            if written < len(chunk):
                target.pending[0] = chunk[written:]
                if not target.writing:
                    target.writing = True
                    loop.add_writer(target.master, self._flush, target)
                return
            target.pending.popleft()
        if target.writing:
            target.writing = False
            loop.remove_writer(target.master)
