"""The serial-text emulator: a Megatec Q1 UPS on an emulated 2400 baud line."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
import serial

from gateway.config.loader import load_profile
from gateway.config.profile import SerialTextProfile
from gateway.config.site import Device
from gateway.sim.faults import Fault, FaultMode
from gateway.sim.serial_sim import TextDevice
from gateway.sim.signals import Constant, SignalTable
from gateway.sim.site import SimulatedSite
from tests.sim.conftest import Q1_PROFILE

PATTERN = re.compile(Q1_PROFILE["reply_pattern"])


async def _ask(path: str, request: bytes = b"Q1\r", timeout: float = 1.5) -> bytes:
    """Send a request and read up to the first CR (or until timeout), in a thread, like a
    blocking serial client would."""
    def talk() -> bytes:
        with serial.Serial(path, baudrate=2400, timeout=timeout) as port:
            port.reset_input_buffer()
            port.write(request)
            data: bytes = port.read_until(b"\r")
            return data
    return await asyncio.to_thread(talk)


async def test_q1_reply_matches_the_pattern(site: SimulatedSite) -> None:
    reply = await _ask(site.endpoint("ups"))
    match = PATTERN.match(reply.decode("ascii"))
    assert match is not None, reply
    assert 220 <= float(match["input_voltage"]) <= 230
    assert match["status"] == "00000000"
    site.set_signal("ups1.status.utility_fail", Constant(value=True))
    site.set_signal("ups1.input_voltage", Constant(value=0.0))
    match = PATTERN.match((await _ask(site.endpoint("ups"))).decode("ascii"))
    assert match is not None
    assert match["status"] == "10000000"
    assert float(match["input_voltage"]) == 0.0
    assert site.read_point("ups1.status.utility_fail") is True


@pytest.mark.slow
async def test_q1_faults(site: SimulatedSite) -> None:
    path = site.endpoint("ups")
    site.set_fault("ups1", Fault(mode=FaultMode.NO_REPLY))
    assert await _ask(path, timeout=0.4) == b""
    site.set_fault("ups1", Fault(mode=FaultMode.TRUNCATED))
    reply = await _ask(path, timeout=0.6)
    assert reply and not reply.endswith(b"\r")
    site.set_fault("ups1", Fault(mode=FaultMode.GARBAGE))
    reply = await _ask(path)
    assert reply.endswith(b"\r") and PATTERN.match(reply.decode("ascii", "replace")) is None
    site.set_fault("ups1", Fault(mode=FaultMode.CRC_ERROR))
    reply = await _ask(path)
    assert reply.endswith(b"\r") and PATTERN.match(reply.decode("ascii", "replace")) is None
    site.set_fault("ups1", Fault(mode=FaultMode.EXCEPTION))
    assert await _ask(path) == b"Q1\r"
    site.set_fault("ups1", Fault(mode=FaultMode.SLOW_REPLY, delay=0.5))
    start = time.monotonic()
    reply = await _ask(path)
    assert time.monotonic() - start >= 0.5
    assert PATTERN.match(reply.decode("ascii"))
    site.set_fault("ups1", Fault())
    assert PATTERN.match((await _ask(path)).decode("ascii"))


async def test_noise_on_the_line_is_ignored(site: SimulatedSite) -> None:
    reply = await _ask(site.endpoint("ups"), request=b"\x00\xffXYZ\rQ1\r")
    assert PATTERN.match(reply.decode("ascii"))


def test_shipped_serial_profiles_format_matching_replies() -> None:
    directory = Path(__file__).resolve().parents[2] / "hardware" / "profiles"
    profiles = [p for p in map(load_profile, sorted(directory.glob("*.yaml")))
                if isinstance(p, SerialTextProfile) and p.reply_format]
    if not profiles:
        pytest.skip("no shipped serial-text profiles with a reply_format")
    for profile in profiles:
        device = Device(id="dev9", bus="b", profile=profile.id, room="r")
        text = TextDevice(device, profile, SignalTable())
        reply = text.reply().decode(profile.encoding)
        assert re.match(profile.reply_pattern, reply), (profile.id, reply)
