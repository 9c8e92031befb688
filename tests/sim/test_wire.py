"""The emulated RS-485 line: relays bytes between two ptys, at the line's speed."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from gateway.sim.wire import LineSettings, SerialLine


async def _read_exactly(fd: int, n: int, timeout: float) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    deadline = loop.time() + timeout
    while len(data) < n:
        if loop.time() > deadline:
            break
        try:
            data += os.read(fd, n - len(data))
        except BlockingIOError:
            await asyncio.sleep(0.002)
    return data


def _open(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)


def test_bits_per_char() -> None:
    assert LineSettings(9600).bits_per_char == 10
    assert LineSettings(9600, parity="E").bits_per_char == 11
    assert LineSettings(9600, stopbits=2).transfer_time(96) == pytest.approx(0.11)


async def test_relays_both_ways_unpaced() -> None:
    async with SerialLine(LineSettings(baudrate=None)) as line:
        server, client = _open(line.server_path), _open(line.client_path)
        try:
            os.write(client, b"\x01\x03\x00\x00")
            assert await _read_exactly(server, 4, 1.0) == b"\x01\x03\x00\x00"
            os.write(server, b"reply\r\n\x00\xff")  # raw: no newline translation
            assert await _read_exactly(client, 9, 1.0) == b"reply\r\n\x00\xff"
        finally:
            os.close(server)
            os.close(client)


async def test_line_speed_9600_baud() -> None:
    n = 480  # 0.5 s at 9600 8N1
    async with SerialLine(LineSettings(9600)) as line:
        server, client = _open(line.server_path), _open(line.client_path)
        try:
            start = time.monotonic()
            os.write(client, bytes(range(256)) + bytes(n - 256))
            data = await _read_exactly(server, n, 5.0)
            elapsed = time.monotonic() - start
        finally:
            os.close(server)
            os.close(client)
    assert len(data) == n
    assert elapsed >= n * 10 / 9600 * 0.95


async def test_half_duplex_shares_the_line() -> None:
    async with SerialLine(LineSettings(9600)) as line:
        server, client = _open(line.server_path), _open(line.client_path)
        try:
            start = time.monotonic()
            os.write(client, bytes(96))  # 0.1 s
            os.write(server, bytes(96))  # waits for the line: arrives at 0.2 s
            got = await _read_exactly(client, 96, 3.0)
            elapsed = time.monotonic() - start
            await _read_exactly(server, 96, 3.0)
        finally:
            os.close(server)
            os.close(client)
    assert len(got) == 96
    assert elapsed >= 0.19


async def test_close_releases_every_descriptor() -> None:
    before = len(os.listdir("/proc/self/fd"))
    line = SerialLine()
    line.open()
    assert len(os.listdir("/proc/self/fd")) == before + 4
    line.close()
    line.close()
    assert len(os.listdir("/proc/self/fd")) == before
    with pytest.raises(RuntimeError):
        _ = line.client_path
