"""Serial-text devices that misbehave, on real pseudo-terminals (the serial-text audit):

- a device that reads nothing (hung USB firmware): once the line's output queue was full,
  pyserial's write looped on EAGAIN inside the event loop — the whole gateway froze at 100 %
  CPU, every other bus with it;
- a late reply's tail, or a cut-down banner line, passed a loose profile's pattern as the
  reply (a wrong reading marked good); a good reply followed by noise in one read was lost;
- the port was read between polls too: a babbling device cost CPU all the time;
- profiles `roomwarden check` passed crashed `roomwarden run` at its start, or made a busy
  loop (an unknown encoding, a bad escape, an empty terminator, a zero timeout or interval);
- a pattern the check passed (eight `(.*)` fields) and a 160-character line held the event loop
  65 s (the redos audit): no bus polled, `status` unanswered, SIGTERM ignored.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import tty
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from gateway.clock import SystemClock
from gateway.config.loader import default_profiles_dir, load_profile
from gateway.config.profile import SerialTextProfile
from gateway.config.section import validator
from gateway.config.site import Device, SerialTextBus
from gateway.field.serial_text import SerialTextLink, SerialTextPoller

REPLY = b"T=23.4 H=45.1\r"


def th_profile(**changes: Any) -> SerialTextProfile:
    profile = load_profile(default_profiles_dir() / "generic_ascii_th_sensor.yaml")
    assert isinstance(profile, SerialTextProfile)
    made = validator(SerialTextProfile)
    return made.validate_python({**made.dump_python(profile), **changes})


class Line:
    """A pty; the test plays the device on its master end by hand."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)

    def requests(self) -> bytes:
        try:
            return os.read(self.master, 65536)
        except BlockingIOError:
            return b""

    async def next_request(self) -> bytes:
        """Wait until the gateway writes a request, and read it."""
        loop = asyncio.get_running_loop()
        while True:
            ready = loop.create_future()
            loop.add_reader(self.master, ready.set_result, None)
            try:
                await ready
            finally:
                loop.remove_reader(self.master)
            if data := self.requests():
                return data

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
async def line() -> AsyncIterator[Line]:
    pty = Line()
    yield pty
    pty.close()


def q1_profile(**changes: Any) -> SerialTextProfile:
    profile = load_profile(default_profiles_dir() / "megatec_q1_ups.yaml")
    assert isinstance(profile, SerialTextProfile)
    made = validator(SerialTextProfile)
    return made.validate_python({**made.dump_python(profile), **changes})


def poller_on(line: Line, profile: SerialTextProfile | None = None
              ) -> tuple[SerialTextLink, SerialTextPoller]:
    profile = profile or th_profile()
    link = SerialTextLink(SerialTextBus(id="line", type="serial_text", port=line.path))
    device = Device(id="th1", bus="line", profile=profile.id, room="r")
    return link, SerialTextPoller(device, profile, link, SystemClock())


def readings(result: Any) -> dict[str, tuple[Any, str]]:
    return {s.point: (s.value, s.quality.value) for s in result.samples}


@pytest.mark.timeout(60)
async def test_a_device_that_reads_nothing_fails_its_poll_and_holds_nothing(
        line: Line) -> None:
    link, poller = poller_on(line, th_profile(reply_timeout="300ms"))
    # hours of requests the device never read: the line's output queue is full
    writer = os.open(line.path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        while True:
            os.write(writer, b"READ\r")
    except BlockingIOError:
        pass
    finally:
        os.close(writer)
    beats = 0

    async def heartbeat() -> None:
        nonlocal beats
        while True:
            await asyncio.sleep(0.01)
            beats += 1

    task = asyncio.create_task(heartbeat())
    try:
        result = await asyncio.wait_for(poller.poll(), 5)
        assert not result.answered and all(q == "comm_error"
                                           for _, q in readings(result).values())
        await asyncio.sleep(0.1)
        assert beats >= 5  # the event loop ran on
        line.requests()  # the device reads again (its stale requests were flushed anyway)

        async def answer() -> None:
            await line.next_request()
            line.send(REPLY)

        responder = asyncio.create_task(answer())
        result = await poller.poll()
        await responder
        assert result.answered, result.error
        assert readings(result)["th1.temperature"] == (23.4, "good")
    finally:
        task.cancel()
        await link.close()


async def reply_after_request(line: Line, data: bytes) -> None:
    await line.next_request()
    line.send(data)


async def poll_answered_with(poller: SerialTextPoller, line: Line, data: bytes) -> Any:
    """One poll, the device sending `data` once the request came."""
    answer = asyncio.create_task(reply_after_request(line, data))
    result = await poller.poll()
    await answer
    return result


async def test_the_tail_of_a_late_reply_is_never_taken_for_the_next(line: Line) -> None:
    """A site's loose profile: the old reply's first byte came in one poll, its rest in the
    next; it read "3.4 45.1" as temperature 3.4, good."""
    loose = th_profile(reply_pattern=r"^(?P<temperature>\S+) (?P<humidity>\S+)\r?$",
                       reply_format="{temperature:.1f} {humidity:.1f}\r",
                       reply_timeout="300ms")
    link, poller = poller_on(line, loose)
    try:
        first = asyncio.create_task(reply_after_request(line, b"2"))
        assert not (await poller.poll()).answered
        await first
        second = asyncio.create_task(reply_after_request(line, b"3.4 45.1\r"))
        third = asyncio.create_task(reply_after_request_later(line, b"20.0 40.0\r"))
        result = await poller.poll()
        await asyncio.gather(second, third)
        assert result.answered, result.error
        assert readings(result)["th1.temperature"] == (20.0, "good")
    finally:
        await link.close()


async def reply_after_request_later(line: Line, data: bytes) -> None:
    await asyncio.sleep(0.1)
    line.send(data)


async def test_a_good_reply_followed_by_noise_is_taken(line: Line) -> None:
    link, poller = poller_on(line)
    try:
        result = await poll_answered_with(poller, line, REPLY + b"\x00noise" * 500)
        assert result.answered, result.error
        assert readings(result)["th1.humidity"] == (45.1, "good")
    finally:
        await link.close()


async def test_a_banner_is_never_cut_into_a_reply(line: Line) -> None:
    """A 3,000-byte banner line before the reply: its cut-down tail matched a loose pattern
    (21.5 and 99, good) before the real reply came."""
    loose = th_profile(reply_pattern=r"^(?P<temperature>\S+) (?P<humidity>\S+)\r?$",
                       reply_format="{temperature:.1f} {humidity:.1f}\r")
    link, poller = poller_on(line, loose)
    try:
        banner = b"x" * 2990 + b" 21.5 99\r"
        result = await poll_answered_with(poller, line, banner + b"23.4 45.1\r")
        assert result.answered, result.error
        assert readings(result)["th1.temperature"] == (23.4, "good")
    finally:
        await link.close()


async def test_a_line_without_end_fails_at_once_not_at_the_timeout(line: Line) -> None:
    link, poller = poller_on(line, th_profile(reply_timeout="5s"))
    loop = asyncio.get_running_loop()
    try:
        answer = asyncio.create_task(reply_after_request(line, b"y" * 4000))
        began = loop.time()
        result = await poller.poll()
        await answer
        assert not result.answered and "no terminator within 512 bytes" in str(result.error)
        assert loop.time() - began < 4  # (not the 5 s timeout: a wide bound)
    finally:
        await link.close()


async def test_the_port_is_not_read_between_polls(line: Line) -> None:
    """A babbling device costs nothing between polls: the port is watched only while a reply
    is awaited; what it said meanwhile is dropped at the next poll."""
    link, poller = poller_on(line)
    try:
        assert (await poll_answered_with(poller, line, REPLY)).answered
        fd = link._port.fileno() if link._port is not None else -1
        assert not asyncio.get_running_loop().remove_reader(fd)  # nobody watches it
        line.send(b"T=99.9 H=99.9\r" * 100 + b"T=98")  # babble, ending inside a line
        result = await poll_answered_with(poller, line, b".0 H=1.0\rT=23.4 H=45.1\r")
        assert readings(result)["th1.temperature"] == (23.4, "good")
    finally:
        await link.close()


@pytest.mark.parametrize(("change", "message"), [
    ({"encoding": "bogus-codec"}, "is not a text encoding"),
    ({"request": "READ\\"}, "ends in a lone"),
    ({"request": "\u20acREAD\r"}, "cannot be sent in ascii"),
    ({"reply_terminator": ""}, "reply_terminator must not be empty"),
    ({"reply_timeout": "0s"}, "reply_timeout must be more than 0s"),
    ({"reply_timeout": "300m"}, "longer than the limit of 10s"),
    ({"default_poll_interval": "0s"}, "default_poll_interval must be at least 50ms"),
])
def test_a_profile_the_poller_cannot_run_is_refused_by_the_check(
        change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        th_profile(**change)


@pytest.mark.parametrize("pattern", [r"^T=(?P<temperature>(\d+)+\.\d) H=(?P<humidity>\S+)$",
                                     r"^(?P<temperature>(\w+ )*x) (?P<humidity>\S+)$",
                                     r"^(?P<temperature>(?:a|\d+)*) (?P<humidity>\S+)$"])
def test_a_pattern_that_can_take_minutes_is_refused(pattern: str) -> None:
    """`(\\d+)+\\.\\d` on 40 digits and no dot takes hours, on the event loop (the audit)."""
    with pytest.raises(ValidationError, match="repeats a repeat without bound"):
        th_profile(reply_pattern=pattern)


def test_bounded_and_possessive_repeats_are_taken() -> None:
    for pattern in (r"^T=(?P<temperature>(\d{1,3} )+) H=(?P<humidity>\S+)$",
                    r"^T=(?P<temperature>(\d++)+) H=(?P<humidity>\S+)$"):
        assert th_profile(reply_pattern=pattern).reply_pattern == pattern


@pytest.mark.process
@pytest.mark.parametrize(("change", "message"), [
    ({"encoding": "bogus-codec"}, "is not a text encoding"),
    ({"reply_terminator": ""}, "reply_terminator must not be empty"),
    ({"reply_pattern": r"^T=(?P<temperature>(\d+)+\.\d) H=(?P<humidity>\S+)\r?$"},
     "repeats a repeat without bound"),
])
def test_roomwarden_check_names_the_profile_and_why(tmp_path: Path, change: dict[str, Any],
                                                    message: str) -> None:
    """As a technician meets it: `roomwarden check` on a site whose own profile the poller
    could not run fails, naming the profile file and the reason (it passed, and `roomwarden
    run` then died at its start)."""
    source = default_profiles_dir() / "generic_ascii_th_sensor.yaml"
    profile = {**yaml.safe_load(source.read_text(encoding="utf-8")), "id": "site_th",
               **change}
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "site_th.yaml").write_text(yaml.safe_dump(profile))
    site = {"gateway": {"id": "gw-a", "site": "s"}, "profiles_dir": "profiles",
            "rooms": [{"id": "room1", "type": "equipment"}],
            "buses": [{"id": "line", "type": "serial_text", "port": "/dev/ttyUSB9"}],
            "devices": [{"id": "th1", "bus": "line", "profile": "site_th", "room": "room1"}]}
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(site))
    checked = subprocess.run([sys.executable, "-m", "gateway", "check", "site.yaml"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert checked.returncode != 0
    out = checked.stdout + checked.stderr
    assert "site_th.yaml" in out and message in out and "Traceback" not in out


class LoopGaps:
    """A ticker task: the longest the event loop went without running it (to the end of the
    `with`: a hold just before it ends counts, though the ticker never ran after it)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._last = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.01)
            now = loop.time()
            self.longest = max(self.longest, now - self._last)
            self._last = now

    def __enter__(self) -> LoopGaps:
        self._last = asyncio.get_running_loop().time()
        self._task = asyncio.create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.longest = max(self.longest, asyncio.get_running_loop().time() - self._last)


AUDIT_PATTERN = (r"^\((?P<input_voltage>.*) (?P<input_fault_voltage>.*) (?P<output_voltage>.*)"
                 r" (?P<load_pct>.*) (?P<input_frequency>.*) (?P<battery_voltage>.*)"
                 r" (?P<temperature>.*) (?P<status>[01]{8})\r?$")
Q1_REPLY = b"(230.0 230.0 229.9 040 50.0 54.6 24.0 00001000\r"


async def test_the_audit_pattern_and_a_160_character_line_hold_no_event_loop(
        line: Line) -> None:
    """The redos audit's profile (it passes the check) and its 160-character reply: under
    `re`, on the event loop, 65 s at 100 % CPU. Now a bad reply in well under a second, the
    loop running meanwhile, and the next good reply read."""
    link, poller = poller_on(line, q1_profile(reply_pattern=AUDIT_PATTERN,
                                              reply_timeout="300ms"))
    try:
        with LoopGaps() as gaps:
            bad = ("(" + "1 " * 80)[:160].encode()
            result = await poll_answered_with(poller, line, bad + b"\r")
        assert gaps.longest < 1.0, f"the event loop was held {gaps.longest:.1f} s"
        assert not result.answered and "does not match the profile" in str(result.error)
        assert {q for _, q in readings(result).values()} == {"comm_error"}
        result = await poll_answered_with(poller, line, Q1_REPLY)
        assert result.answered, result.error
        assert readings(result)["th1.input_voltage"] == (230.0, "good")
    finally:
        await link.close()


BACKTRACKING = r"^T=(?P<temperature>(?:\d|\d\d)+(?:\.\d)?) H=(?P<humidity>\S+)\r?$"
"""No repeat in a repeat, so the check takes it; on 34 digits and no ` H=` it takes ~3 s under
`re` and `regex` alike (one way to split the digits after another): no check of a pattern's
shape finds them all, so the poller bounds the time a match may take."""


@pytest.mark.timeout(120)
async def test_a_reply_whose_match_outruns_the_budget_is_a_bad_reply(
        line: Line, caplog: pytest.LogCaptureFixture) -> None:
    profile = th_profile(reply_pattern=BACKTRACKING, reply_timeout="5s")
    link, poller = poller_on(line, profile)
    loop = asyncio.get_running_loop()
    caplog.set_level(logging.WARNING, logger="roomwarden.field")
    try:
        for _ in range(2):
            began = loop.time()
            with LoopGaps() as gaps:
                result = await poll_answered_with(poller, line, b"T=" + b"1" * 34 + b"x\r")
            took = loop.time() - began
            assert gaps.longest < 1.0, f"the event loop was held {gaps.longest:.1f} s"
            assert not result.answered
            assert "took more than 50 ms" in str(result.error), result.error
            assert {q for _, q in readings(result).values()} == {"comm_error"}
            assert took < 1.0  # (not the 5 s reply timeout: ended at once)
        assert poller.costly_replies == 2
        warned = [r for r in caplog.records if "serial_reply_too_costly" in r.getMessage()]
        assert len(warned) == 1  # (the second within COSTLY_LOG_INTERVAL: counted, not logged)
        result = await poll_answered_with(poller, line, REPLY)  # polled on: a good reply
        assert result.answered, result.error
        assert readings(result)["th1.temperature"] == (23.4, "good")
    finally:
        await link.close()



async def test_a_silent_device_is_given_up_at_the_bus_timeout_not_the_profiles(
        line: Line) -> None:
    """The bus's `timeout` bounds a reply (what `roomwarden plan` shows): a profile's longer
    `reply_timeout` was waited instead — the audit's `300m` waited 5 hours a poll, the device
    `online` all the while."""
    profile = th_profile(reply_timeout="5s")
    link = SerialTextLink(SerialTextBus(id="line", type="serial_text", port=line.path,
                                        timeout=0.2))
    device = Device(id="th1", bus="line", profile=profile.id, room="r")
    poller = SerialTextPoller(device, profile, link, SystemClock())
    try:
        assert poller.reply_timeout == 0.2 and poller.worst_poll_seconds < 1.0
        began = asyncio.get_running_loop().time()
        result = await asyncio.wait_for(poller.poll(), 10)
        took = asyncio.get_running_loop().time() - began
        assert not result.answered and "within 0.2s" in (result.error or ""), result.error
        assert took < 2.0, took  # (5 s: the profile's)
    finally:
        await link.close()
