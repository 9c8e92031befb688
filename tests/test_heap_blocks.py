"""What `roomwarden run` does to keep large short-lived blocks from growing glibc's heap
(gateway.heap): a large block the heap has no room for gets a mapping of its own even after
glibc raised its threshold (it grew the heap for it); asyncio's socket transports read 4 KiB
at a time (a Modbus TCP reply used to take a 256 KiB buffer); the running service sets both,
and gives the read size back when it stops. Each in a real process or over a real socket."""

from __future__ import annotations

import asyncio
import ctypes
import os
import subprocess
import sys
from pathlib import Path

from gateway.config.loader import load_gateway_config
from gateway.heap import ENVIRONMENT, MAPPED_FROM, READ_SIZE, TRIM_FROM, socket_read_size
from gateway.sim.site import SimulatedSite
from gateway.supervisor import Service
from tests.service.test_watchdog import until, write_site
from tests.service.unitfile import unit_environment

MAPPED = """
import ctypes
from gateway.heap import map_large_blocks

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2

def where(size):
    before = libc.mallinfo2()
    block = bytearray(size)
    after = libc.mallinfo2()
    return after.hblks - before.hblks, after.arena > before.arena

big = bytearray(4 << 20)  # mapped; freed, it raises glibc's threshold to its size
del big
if SET:
    assert map_large_blocks()
print(*where(1 << 20))
"""


def test_a_large_block_is_mapped_rather_than_grow_the_heap() -> None:
    """A block of 1 MiB, more than the heap has free: after a 4 MiB block was freed glibc grows
    the heap for it (and keeps the pages); after `map_large_blocks`, it maps it."""
    def run(set_: bool) -> list[str]:
        return subprocess.run([sys.executable, "-c", f"SET = {set_}\n{MAPPED}"],
                              capture_output=True, text=True, check=True,
                              timeout=60).stdout.split()

    assert run(False) == ["0", "True"]  # not mapped; the heap grew
    assert run(True) == ["1", "False"]


HELD = """
import sys
from gateway.heap import map_large_blocks
print(map_large_blocks(), "ctypes" in sys.modules)
import ctypes

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
blocks = [libc.malloc(30 * 1024) for _ in range(50)]  # 1.5 MiB at the heap's top, freed
grown = libc.mallinfo2().arena
for block in reversed(blocks):
    libc.free(block)
print(libc.mallinfo2().arena >= grown)  # kept: trimmed past 2 MiB free only
big = bytearray(4 << 20)  # mapped; freed, it raises glibc's own threshold to its size
del big
before = libc.mallinfo2()
block = bytearray(before.fordblks + (1 << 20))  # more than the heap has free
after = libc.mallinfo2()
print(after.hblks - before.hblks, after.arena > before.arena)
"""


def test_the_unit_gives_glibc_both_settings_and_ctypes_stays_out() -> None:
    """systemd/roomwarden.service sets glibc's thresholds in the environment (issue 15): glibc
    takes them at start and `map_large_blocks` has nothing to do (no ctypes imported, 0.35
    MiB); the heap then behaves as after `map_large_blocks` in a gateway started by hand —
    1.5 MiB freed at the heap's top kept, a block larger than the heap's free space mapped
    after a 4 MiB one was freed —, and as glibc's defaults do not without either."""
    unit = unit_environment()
    assert (unit["MALLOC_MMAP_THRESHOLD_"], unit["MALLOC_TRIM_THRESHOLD_"]) == (
        str(MAPPED_FROM), str(TRIM_FROM))
    bare = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT}

    def run(env: dict[str, str], code: str = HELD) -> list[str]:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True, timeout=60, env=env).stdout.split()

    assert run({**bare, **{k: unit[k] for k in ENVIRONMENT}}) == ["True", "False", "True", "1",
                                                                  "False"]
    assert run(bare) == ["True", "True", "True", "1", "False"]  # set with ctypes
    assert run(bare, HELD.replace("print(map_large_blocks(), ", "print(True, ")) == [
        "True", "False", "False", "0", "True"]  # glibc's own: trimmed, and the heap grown


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def a_block_past_the_free_heap_is_mapped() -> bool:
    """Whether a block larger than all the heap's free space gets a mapping of its own (glibc
    maps it only if it is past its threshold: 40 KiB once `map_large_blocks` set it, up to 32
    MiB by glibc's own adjustment in a process that freed such blocks)."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    before = libc.mallinfo2()
    block = bytearray(before.fordblks + (1 << 20))
    mapped: bool = libc.mallinfo2().hblks > before.hblks
    del block
    return mapped


class Reads(asyncio.Protocol):
    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.done = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.sizes.append(len(data))

    def connection_lost(self, exc: Exception | None) -> None:
        self.done.set()


async def read_sizes(payload: bytes) -> list[int]:
    """The sizes of the reads that bring `payload` over a loopback TCP connection."""
    async def send(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(payload)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(send, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        await asyncio.sleep(0)
        _, reads = await asyncio.get_running_loop().create_connection(Reads, "127.0.0.1", port)
        await asyncio.wait_for(reads.done.wait(), 10)
    finally:
        server.close()
        await server.wait_closed()
    assert sum(reads.sizes) == len(payload)
    return reads.sizes


async def test_sockets_are_read_4_kib_at_a_time_while_set() -> None:
    before = socket_read_size(READ_SIZE)
    try:
        sizes = await read_sizes(bytes(300_000))
    finally:
        assert socket_read_size(before) == READ_SIZE
    assert max(sizes) <= READ_SIZE
    assert before == 256 * 1024  # asyncio's own


async def test_the_running_service_reads_sockets_4_kib_at_a_time(tmp_path: Path) -> None:
    config = load_gateway_config(write_site(tmp_path, interval="1s"))
    site = SimulatedSite(config)
    await site.start()
    try:
        service = Service(site.write_config(tmp_path / "sim.yaml"), state_dir=tmp_path / "state",
                          control_path=tmp_path / "control.sock", panel_port=0)
        task = asyncio.create_task(service.run())
        try:
            assert await until(lambda: service.gateway.started.is_set(), 10.0)
            assert max(await read_sizes(bytes(100_000))) <= READ_SIZE
            assert a_block_past_the_free_heap_is_mapped()
        finally:
            service.stop()
            await asyncio.wait_for(task, 15)
        assert max(await read_sizes(bytes(300_000))) > READ_SIZE  # given back
    finally:
        await site.stop()
