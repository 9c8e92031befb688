"""Serial-text devices (Megatec Q1 UPS) over a real pseudo-terminal, and the reply parser."""

from __future__ import annotations

import asyncio
import os
import tty
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.clock import SystemClock
from gateway.config.loader import default_profiles_dir, load_profile
from gateway.config.profile import SerialTextProfile
from gateway.config.section import validator
from gateway.config.site import Device, SerialTextBus
from gateway.field.sample import Quality, Sample
from gateway.field.serial_text import SerialTextLink, SerialTextPoller

DOMAIN_EXAMPLE = b"(226.0 195.0 226.0 014 49.0 27.5 30.0 00001000"


def q1_profile() -> SerialTextProfile:
    profile = load_profile(default_profiles_dir() / "megatec_q1_ups.yaml")
    assert isinstance(profile, SerialTextProfile)
    return profile


Responder = Callable[[bytes], bytes | None]


class PtyDevice:
    """The far end of a pty: answers each request line with whatever `respond` returns."""

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.master, slave = os.openpty()
        tty.setraw(slave)
        tty.setraw(self.master)
        self.path = os.ttyname(slave)
        self._slave = slave
        self.requests: list[bytes] = []
        self._pending = b""
        asyncio.get_running_loop().add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            self._pending += os.read(self.master, 1024)
        except OSError:
            return
        while b"\r" in self._pending:
            line, _, self._pending = self._pending.partition(b"\r")
            self.requests.append(line)
            reply = self.respond(line)
            if reply:
                os.write(self.master, reply)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)
        os.close(self._slave)


@pytest.fixture
async def ups() -> AsyncIterator[tuple[PtyDevice, SerialTextPoller, dict[str, bytes | None]]]:
    behaviour: dict[str, bytes | None] = {"reply": DOMAIN_EXAMPLE + b"\r"}
    device = PtyDevice(lambda line: behaviour["reply"] if line == b"Q1" else b"NAK\r")
    profile = q1_profile()
    bus = SerialTextBus(id="ups-line", type="serial_text", port=device.path)
    link = SerialTextLink(bus)
    cfg = Device(id="ups1", bus="ups-line", profile=profile.id, room="r")
    poller = SerialTextPoller(cfg, profile, link, SystemClock())
    try:
        yield device, poller, behaviour
    finally:
        await link.close()
        device.close()


def values(samples: list[Sample]) -> dict[str, Sample]:
    return {s.point: s for s in samples}


async def test_q1_reply_becomes_samples(ups: tuple[PtyDevice, SerialTextPoller,
                                                   dict[str, bytes | None]]) -> None:
    device, poller, _ = ups
    result = await poller.poll()
    assert device.requests == [b"Q1"]
    assert result.answered
    got = values(result.samples)
    assert got["ups1.input_voltage"].value == 226.0
    assert got["ups1.load_pct"].value == 14
    assert got["ups1.battery_voltage"].value == 27.5
    assert got["ups1.temperature"].value == 30.0
    assert got["ups1.status"].value == 0b00001000
    assert got["ups1.status.utility_fail"].value is False
    assert got["ups1.status.standby_type"].value is True
    assert all(s.quality is Quality.GOOD for s in result.samples)


async def test_on_battery_and_low_battery_bits(ups: tuple[PtyDevice, SerialTextPoller,
                                                          dict[str, bytes | None]]) -> None:
    _, poller, behaviour = ups
    behaviour["reply"] = b"(000.0 000.0 220.0 035 00.0 22.1 31.0 11000000\r"
    got = values((await poller.poll()).samples)
    assert got["ups1.status.utility_fail"].value is True
    assert got["ups1.status.battery_low"].value is True
    assert got["ups1.input_voltage"].value == 0.0


@pytest.mark.parametrize(("reply", "error"), [
    (None, "no complete reply"),                      # silence
    (b"(226.0 195.0 22", "no complete reply"),         # truncated: no terminator
    (b"\x8f\x00garbage\xff\r", "does not match"),      # line noise
    (b"(226.0 195.0 226.0 014 49.0 27.5 --.- 00001000\r", "does not match"),  # unknown temp
])
async def test_bad_replies_are_comm_errors_and_the_next_good_one_is_read(
        ups: tuple[PtyDevice, SerialTextPoller, dict[str, bytes | None]],
        reply: bytes | None, error: str) -> None:
    _, poller, behaviour = ups
    behaviour["reply"] = reply
    result = await poller.poll()
    assert not result.answered
    assert result.error is not None and error in result.error
    assert result.samples and all(s.quality is Quality.COMM_ERROR and s.value is None
                                  for s in result.samples)
    behaviour["reply"] = DOMAIN_EXAMPLE + b"\r"
    result = await poller.poll()
    assert result.answered and values(result.samples)["ups1.input_voltage"].value == 226.0


@pytest.mark.parametrize("before", [b"Q1\r", b"\x00\x00\r", b"Q1\r\x8fnoise\r"],
                         ids=["adapter-echo", "noise-line", "echo-and-noise"])
async def test_an_echo_or_a_noise_line_before_the_reply_is_skipped(
        ups: tuple[PtyDevice, SerialTextPoller, dict[str, bytes | None]],
        before: bytes) -> None:
    """The field audit: an RS-485 adapter that echoes the request, or one noise line at the
    line's turnaround, made the UPS offline at every poll ('reply does not match the
    profile: Q1') while it answered every request."""
    _, poller, behaviour = ups
    behaviour["reply"] = before + DOMAIN_EXAMPLE + b"\r"
    result = await poller.poll()
    assert result.answered and result.error is None
    assert values(result.samples)["ups1.input_voltage"].value == 226.0


async def test_lines_that_never_match_end_the_poll_with_the_last_one(
        ups: tuple[PtyDevice, SerialTextPoller, dict[str, bytes | None]]) -> None:
    """Many lines and none the reply: a comm error naming the last, at the 16th line (not
    after reading a flood for the whole timeout)."""
    _, poller, behaviour = ups
    behaviour["reply"] = b"".join(b"junk %d\r" % i for i in range(40))
    result = await poller.poll()
    assert not result.answered and result.error is not None
    assert "does not match the profile: 'junk 15'" in result.error


async def test_a_port_that_does_not_exist_is_a_comm_error(tmp_path: Path) -> None:
    profile = q1_profile()
    bus = SerialTextBus(id="ups-line", type="serial_text", port=str(tmp_path / "ttyNONE"))
    poller = SerialTextPoller(Device(id="u", bus="ups-line", profile=profile.id, room="r"),
                              profile, SerialTextLink(bus), SystemClock())
    result = await poller.poll()
    assert not result.answered and result.error
    assert all(s.quality is Quality.COMM_ERROR for s in result.samples)


@given(st.binary(max_size=200))
def test_any_reply_bytes_give_samples_never_an_exception(raw: bytes) -> None:
    profile = q1_profile()
    poller = SerialTextPoller(Device(id="u", bus="b", profile=profile.id, room="r"), profile,
                              SerialTextLink(SerialTextBus(id="b", type="serial_text",
                                                           port="/dev/null")), SystemClock())
    result = poller.parse_reply(raw, 1)
    expected = {p.id for p in poller.points} | {f.id for p in poller.points for f in p.flags}
    assert {s.point for s in result.samples} == expected


@given(st.floats(0, 300), st.floats(0, 300), st.integers(0, 200), st.floats(40, 70),
       st.floats(0, 99), st.floats(0, 99), st.integers(0, 255))
def test_every_well_formed_q1_reply_parses(vin: float, vout: float, load: int, freq: float,
                                           batt: float, temp: float, status: int) -> None:
    profile = q1_profile()
    assert profile.reply_format is not None
    line = profile.reply_format.format(
        input_voltage=vin, input_fault_voltage=vin, output_voltage=vout, load_pct=load,
        input_frequency=freq, battery_voltage=batt, temperature=temp, status=status)
    poller = SerialTextPoller(Device(id="u", bus="b", profile=profile.id, room="r"), profile,
                              SerialTextLink(SerialTextBus(id="b", type="serial_text",
                                                           port="/dev/null")), SystemClock())
    result = poller.parse_reply(line.rstrip("\r").encode(), 1)
    assert result.answered, line
    got = values(result.samples)
    assert got["u.status"].value == status
    assert got["u.load_pct"].value == load
    assert got["u.input_voltage"].value == pytest.approx(round(vin, 1))
    assert got["u.status.utility_fail"].value == bool(status & 0x80)


def loose_profile() -> SerialTextProfile:
    """A site's own profile with patterns that take any token (\\S+), no valid ranges."""
    fields = [{"name": f"{kind}_{i}", "group": f"{kind}_{i}", "type": kind, "scale": scale,
               "quantity": "temperature", "unit": "°C", "description": kind}
              for i, (kind, scale) in enumerate([("int", 1.0), ("int", 0.1), ("float", 1.0),
                                                 ("float", 0.01), ("bitstring", 1.0)])]
    pattern = " ".join(f"(?P<{f['group']}>\\S+)" for f in fields)
    return validator(SerialTextProfile).validate_python({
        "kind": "serial_text", "id": "loose", "manufacturer": "site", "model": "own",
        "generic": True, "description": "d", "request": "R\r", "reply_terminator": "\r",
        "reply_timeout": "1s", "reply_pattern": f"^{pattern}$", "fields": fields})


TOKENS = st.one_of(
    st.integers(-(2**70), 2**70).map(str), st.floats().map(repr),
    st.sampled_from(["inf", "-inf", "nan", "1e999", "9" * 400, "1" * 65, "1" * 64, "-0",
                     "Infinity"]),
    st.text(st.characters(whitelist_categories=["Nd"]), min_size=1, max_size=500))


@given(st.lists(TOKENS, min_size=5, max_size=5))
def test_a_loose_profile_never_raises_and_keeps_only_finite_64_bit_readings(
        tokens: list[str]) -> None:
    """Whatever a sensor sends for a number: no exception out of the poller, and a good sample
    is a finite number, an integer within 64 bits (an infinity or 400 digits is `invalid`)."""
    profile = loose_profile()
    poller = SerialTextPoller(Device(id="u", bus="b", profile=profile.id, room="r"), profile,
                              SerialTextLink(SerialTextBus(id="b", type="serial_text",
                                                           port="/dev/null")), SystemClock())
    result = poller.parse_reply(" ".join(tokens).encode(), 1)
    assert result.answered
    assert len(result.samples) == 5
    for sample in result.samples:
        if sample.quality is Quality.GOOD:
            assert isinstance(sample.value, int | float)
            assert -(2**63) <= sample.value < 2**64 or isinstance(sample.value, float)
            assert abs(sample.value) <= 1.8e308
