"""What an RS-485 line does to RTU replies (the field audit, reproduced over a pseudo-terminal
with a byte-level peer, tests/fixtures/rtu_peer.py): a late reply is never taken for the next
one, a noise byte or a neighbour's frame in the same read costs no reply, a bit read's reply
carries exactly the bytes asked. Register `a` of unit `u` reads `u * 1000 + a`, so a value on
the wrong point shows."""

from __future__ import annotations

import asyncio
import itertools
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU

from gateway.clock import SystemClock
from gateway.config.loader import load_gateway_config
from gateway.field.buses import build_bus_loops
from gateway.field.modbus_link import CommFailure, ModbusLink
from gateway.field.rtu_line import HuntingRtuFramer
from gateway.field.sample import Quality, Sample
from tests.fixtures.rtu_peer import RtuPeer, crc16, rtu_peer

TIMEOUT = 0.3


def two_blocks_site(tmp: Path, port: str, units: tuple[int, ...] = (1,), *,
                    inputs: bool = True) -> Path:
    """Units with two holding blocks of the same function and count (a BMS's cells 0–3 and
    100–103): a reply to one is indistinguishable from a reply to the other but by time; and
    (`inputs`) three discrete inputs."""
    profiles = tmp / "profiles"
    profiles.mkdir(exist_ok=True)
    points = [{"name": f"{block}{i}", "register": "holding", "address": base + i,
               "type": "int16"} for block, base in (("a", 0), ("b", 100)) for i in range(4)]
    points += [{"name": f"di{i}", "register": "discrete_input", "address": i}
               for i in range(3 if inputs else 0)]
    (profiles / "blocks.yaml").write_text(yaml.safe_dump(
        {"kind": "modbus", "id": "blocks", "manufacturer": "test", "model": "blocks",
         "generic": True, "points": points}))
    config = {"gateway": {"id": "gw", "site": "test"}, "profiles_dir": str(profiles),
              "rooms": [{"id": "room", "type": "equipment"}],
              "buses": [{"id": "rs485", "type": "modbus_rtu", "port": port,
                         "baudrate": 19200, "timeout": f"{int(TIMEOUT * 1000)}ms"}],
              "devices": [{"id": f"dev{u}", "bus": "rs485", "unit": u, "profile": "blocks",
                           "room": "room", "poll_interval": "500ms"} for u in units]}
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def expected(sample: Sample) -> int | bool:
    """What the peer's register or input behind `sample` holds."""
    device, point = sample.point.split(".")
    unit = int(device.removeprefix("dev"))
    if point.startswith("di"):
        return int(point[2:]) % 2 == 1
    return unit * 1000 + (0 if point[0] == "a" else 100) + int(point[1:])


REGISTERS = re.compile(r"dev\d+\.(a|b|di)\d")


async def poll_for(config: Path, seconds: float) -> tuple[list[Sample], ModbusLink]:
    """The register and input samples of `seconds` of polling (not the device's own)."""
    samples: list[Sample] = []

    def keep(batch: list[Sample]) -> None:
        samples.extend(s for s in batch if REGISTERS.match(s.point))

    [loop] = build_bus_loops(load_gateway_config(config), keep, SystemClock())
    task = asyncio.create_task(loop.run())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert isinstance(loop.link, ModbusLink)
    return samples, loop.link


def good(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if s.quality is Quality.GOOD]


@pytest.mark.slow
async def test_a_late_reply_is_never_taken_for_the_next_request(tmp_path: Path) -> None:
    """The audit's case: the device stalls 0.6 s (twice the timeout) on the second block of
    a poll, then answers its queued requests in order. Before: the next poll's first block
    read the late reply of the second, quality good (a0 = 1100, register 100's value)."""
    with rtu_peer() as peer:
        peer.stall = {100: 2 * TIMEOUT}  # a poll: block a answered, block b late
        samples, link = await poll_for(two_blocks_site(tmp_path, peer.port, inputs=False), 4.0)
    wrong = [s for s in good(samples) if s.value != expected(s)]
    assert not wrong, wrong[:4]
    assert link.guard is not None and link.guard.late_frames >= 1  # it came, and was dropped
    failed = [s for s in samples if s.quality is Quality.COMM_ERROR]
    assert {s.point for s in failed} >= {f"dev1.b{i}" for i in range(4)}
    last = max(s.ts for s in failed)
    assert len({s.ts for s in good(samples) if s.ts > last}) >= 3, "and it reads again"


@pytest.mark.slow
@pytest.mark.parametrize("line", ["noise-byte-before", "neighbour-frame-first"])
async def test_a_reply_among_noise_or_a_neighbours_frame_is_read(tmp_path: Path,
                                                                 line: str) -> None:
    """Before: one noise byte before every reply (a transceiver's glitch at turnaround) made
    the device offline while it answered every request; a neighbour's frame in the same read
    lost the reply with it."""
    with rtu_peer() as peer:
        if line == "noise-byte-before":
            peer.noise_before = b"\x55"
        else:
            peer.foreign_first = True
        samples, _ = await poll_for(two_blocks_site(tmp_path, peer.port), 1.8)
    assert samples and all(s.quality is Quality.GOOD and s.value == expected(s)
                           for s in samples), [s for s in samples if s.quality is not
                                               Quality.GOOD][:3]


@pytest.mark.slow
async def test_a_dead_unit_waits_its_turn_without_holding_up_the_bus(tmp_path: Path) -> None:
    """A unit that failed is not read again for two timeouts; the bus loop polls the others
    meanwhile: the answering unit keeps its 500 ms cadence."""
    peer = RtuPeer(units=(1,)).start()  # unit 2 never answers
    try:
        samples, link = await poll_for(two_blocks_site(tmp_path, peer.port, (1, 2)), 3.0)
    finally:
        peer.stop()
    assert link.guard is not None
    alive = sorted({s.ts for s in samples if s.point == "dev1.a0"})
    assert len(alive) >= 5 and all(s.quality is Quality.GOOD for s in samples
                                   if s.point.startswith("dev1."))
    gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(alive)]
    # the cadence, plus at most one timeout of the dead unit and scheduling slack
    assert max(gaps) <= 0.5 + TIMEOUT + 0.25, gaps


async def test_a_write_answered_for_another_address_is_no_answer(tmp_path: Path) -> None:
    """A write's answer echoes its address: one for another (a late reply to an earlier
    write) is a comm failure, so the output driver retries and reads back."""
    with rtu_peer() as peer:
        link = ModbusLink(load_gateway_config(two_blocks_site(tmp_path, peer.port)).config
                          .buses[0])  # type: ignore[arg-type]
        await link.open()
        try:
            await link.write_coil(3, True, 1)  # answered right
            peer.echo_elsewhere = True
            with pytest.raises(CommFailure, match="at 4 to a write of function 5 at 3"):
                await link.write_coil(3, True, 1)
        finally:
            await link.close()


def holding_reply(unit: int, registers: list[int]) -> bytes:
    body = bytes([unit, 3, 2 * len(registers)]) + b"".join(r.to_bytes(2, "big")
                                                            for r in registers)
    return body + crc16(body)


@settings(derandomize=True, max_examples=300)
@given(unit=st.integers(1, 247), registers=st.lists(st.integers(0, 0xFFFF), min_size=1,
                                                     max_size=8),
       noise=st.binary(max_size=6), tail=st.binary(max_size=6), foreign=st.booleans())
def test_the_framer_finds_a_reply_behind_noise_and_consumes_only_it(
        unit: int, registers: list[int], noise: bytes, tail: bytes, foreign: bool) -> None:
    """Any noise (bytes other than the unit's own id, which could start a frame of its own)
    and any neighbour's frame before a reply: the reply is decoded, and what follows it is
    left for the next frame. (Noise both before and after a reply can hide it: a noise byte
    that announces a frame longer than what came is waited for, unless a good frame ends at
    the last byte — the price of never finding frames inside a reply still arriving.)"""
    noise = bytes(b for b in noise if b != unit)
    tail = b"" if noise else tail
    before = noise + (holding_reply(unit % 247 + 1, [1, 2]) if foreign else b"")
    data = before + holding_reply(unit, registers) + tail
    framer = HuntingRtuFramer(DecodePDU(False))
    used, pdu = framer.handleFrame(data, unit, 0)
    assert pdu is not None and pdu.dev_id == unit
    assert list(pdu.registers) == registers
    assert used == len(before) + 5 + 2 * len(registers)


@settings(derandomize=True, max_examples=300)
@given(unit=st.integers(1, 247), registers=st.lists(st.integers(0, 0xFFFF), min_size=1,
                                                     max_size=125),
       cuts=st.lists(st.integers(1, 40), min_size=1, max_size=40), noise=st.binary(max_size=3))
def test_a_reply_arriving_in_pieces_is_found_whole_and_only_then(
        unit: int, registers: list[int], cuts: list[int], noise: bytes) -> None:
    """A long reply comes in pieces (a USB adapter's reads): the framer waits for the whole of
    it and never takes bytes inside it for a frame (its data are arbitrary: a byte with the
    high bit set announces a 5-byte exception frame), also behind a noise byte or two."""
    noise = bytes(b for b in noise if b != unit)
    wire = noise + holding_reply(unit, registers)
    framer = HuntingRtuFramer(DecodePDU(False))
    buffer, sent, pieces = b"", 0, iter(cuts)
    while sent < len(wire):
        step = next(pieces, len(wire))
        buffer += wire[sent:sent + step]
        sent += step
        used, pdu = framer.handleFrame(buffer, unit, 0)
        buffer = buffer[used:]
        if pdu is not None:
            assert sent >= len(wire), "found before the reply was complete"
            assert list(pdu.registers) == registers
            return
    raise AssertionError("the complete reply was not found")


def test_pymodbus_own_framer_loses_those_replies() -> None:
    """Why HuntingRtuFramer exists (if pymodbus fixes its framer, this test says so)."""
    framer = FramerRTU(DecodePDU(False))
    assert framer.handleFrame(b"\x55" + holding_reply(1, [7]), 1, 0)[1] is None
    assert framer.handleFrame(holding_reply(2, [1]) + holding_reply(1, [7]), 1, 0)[1] is None
