"""Serial text devices: send a request line, read a reply line, map regex groups to points.

Megatec Q1 UPSs and simple ASCII sensors are both just profiles of this one mechanism (see
`hardware/profiles/megatec_q1_ups.yaml`). The port is opened with pyserial in non-blocking
mode and read through the event loop, so a silent, babbling or stuck device never blocks other
buses (`SerialTextLink`). A reply line is matched against the profile's pattern in a worker
thread with a deadline (`MATCH_BUDGET`), so no pattern and no line can hold the event loop or
make a poll run long (`SerialTextPoller`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import serial

from gateway.clock import Clock
from gateway.config.profile import SerialTextProfile, TextField
from gateway.config.site import Device, SerialTextBus
from gateway.field.poll import DevicePollerBase, PollResult
from gateway.field.readings import failed_samples, point_samples
from gateway.field.sample import Quality, Sample

if TYPE_CHECKING:
    import regex

log = logging.getLogger("roomwarden.field")

MAX_REPLY_BYTES = 512
MAX_PENDING_BYTES = 8 * 1024
"""Bytes held at most while a reply is awaited (lines are taken as they complete)."""
MAX_DRAIN = 64 * 1024
"""Bytes read and dropped at most at an exchange's start (the rest is flushed)."""
_TRUE = {"1", "true", "on", "yes", "y", "t"}
_FALSE = {"0", "false", "off", "no", "n", "f"}


MAX_SKIPPED_LINES = 16
"""Lines a poll skips before it gives up waiting for one that matches the profile."""


MATCH_BUDGET = 0.05
"""Seconds one poll may spend matching its reply lines against the profile's pattern, all of
them together. A real reply (at most `MAX_REPLY_BYTES`) takes microseconds against a sane
pattern; past the budget the reply is a bad one (`CostlyReply`). Patterns that backtrack take
seconds to hours on a line that nearly matches, and no check of a pattern's shape finds them all
(the redos audit: eight `(.*)` fields in a row passed the check, and a 160-character line held
the event loop 65 s under `re`)."""
COSTLY_LOG_INTERVAL = 600.0
"""Seconds between two warnings of a device's costly replies (each poll's error says it)."""


class CostlyReply(Exception):
    """A reply line whose match against the profile's pattern outran `MATCH_BUDGET`."""

    def __init__(self, line: bytes) -> None:
        self.line = line
        super().__init__(f"matching the reply against the profile's reply_pattern took more "
                         f"than {MATCH_BUDGET * 1000:g} ms (a pattern that backtracks: bound "
                         f"its repeats): {line[:80]!r}")


def timed_fullmatch(pattern: regex.Pattern[str], text: str, budget: float, concurrent: bool
                    ) -> tuple[regex.Match[str] | None, float]:
    """`pattern.fullmatch(text)` within `budget` seconds, and the seconds it took; TimeoutError
    past the budget. `concurrent`: let go of the GIL while matching (in a worker thread, so the
    event loop runs meanwhile; `re` never lets go of it, so a thread alone would not help)."""
    began = time.monotonic()
    if budget <= 0:
        raise TimeoutError("no match budget left")
    match = pattern.fullmatch(text, timeout=budget, concurrent=concurrent)
    return match, time.monotonic() - began


async def _any_line(line: bytes) -> bool:
    return True


class NoMatchingReply(TimeoutError):
    """Lines came, none matching the profile's reply."""

    def __init__(self, last: bytes, count: int) -> None:
        self.last = last
        super().__init__(f"{count} line(s) that do not match the profile's reply, the last "
                         f"{last[:80]!r}")


class SerialTextLink:
    """A serial port exchanging request/reply lines.

    The port is read only while a reply is awaited (between exchanges a babbling device costs
    nothing but its kernel buffer); at an exchange's start what the device sent since the last
    one is read and dropped (at most `MAX_DRAIN` bytes); if that ended inside a line and the
    first line to complete makes a reply with it (a late reply's head, then its tail), that
    line is dropped too, so the tail of an old reply never passes for the new one (a head of
    junk, a truncated reply, costs nothing). The request goes out with one non-blocking write
    after the output queue is flushed: a device that reads nothing (its queue full) fails
    that poll, it never holds the event loop."""

    def __init__(self, bus: SerialTextBus) -> None:
        self.bus = bus
        self._port: serial.Serial | None = None
        self._buffer = bytearray()
        self._arrived = asyncio.Event()
        self._lost: Exception | None = None

    async def open(self) -> None:
        if self._port is not None:
            return
        self._port = serial.Serial(self.bus.port, baudrate=self.bus.baudrate,
                                   parity=self.bus.parity, stopbits=self.bus.stopbits,
                                   bytesize=self.bus.bytesize, timeout=0, write_timeout=0,
                                   exclusive=True)

    @property
    def connected(self) -> bool:
        """Whether the port is open now (the config health check asks)."""
        return self._port is not None

    async def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(ValueError, OSError):  # (not watched, or closed)
                asyncio.get_running_loop().remove_reader(port.fileno())
            port.close()

    def _lose(self, port: serial.Serial, exc: BaseException) -> None:
        """The port failed (unplugged): closed; the next exchange opens it again."""
        log.warning("event=serial_read_failed bus=%s error=%r", self.bus.id, exc)
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(port.fileno())
        if self._port is port:
            self._port = None
        port.close()

    def _on_readable(self) -> None:
        port = self._port
        if port is None:
            return
        try:
            data = port.read(4096)
        except (serial.SerialException, OSError) as exc:
            self._lost = exc
            self._lose(port, exc)
            self._arrived.set()
            return
        if data:
            if len(self._buffer) < MAX_PENDING_BYTES:
                self._buffer += data
            self._arrived.set()

    def _drain(self, port: serial.Serial) -> bytes:
        """What the device sent since the last exchange (at most `MAX_DRAIN`; more is
        flushed unread)."""
        stale = bytearray()
        while len(stale) < MAX_DRAIN:
            data = port.read(4096)  # (timeout 0: what is there, b"" when nothing)
            if not data:
                return bytes(stale)
            stale += data
        port.reset_input_buffer()
        return bytes(stale)

    async def exchange(self, request: bytes, terminator: bytes, timeout: float,
                       accept: Callable[[bytes], Awaitable[bool]] = _any_line) -> bytes:
        """Send `request`, return the first reply line `accept` takes, without its terminator.
        Other lines — the request echoed by an RS-485 adapter, a noise line at the line's
        turnaround, lines longer than MAX_REPLY_BYTES — are skipped (at most
        MAX_SKIPPED_LINES).

        Raises TimeoutError when no complete line arrives in time (NoMatchingReply when lines
        came but none was taken), what `accept` raises (CostlyReply), ValueError when
        MAX_REPLY_BYTES come without a terminator, and OSError when the port is gone or takes
        no request."""
        if self._port is None:
            await self.open()
        port = self._port
        assert port is not None
        try:
            stale = self._drain(port)
            port.reset_output_buffer()  # a request the device never read goes, not queues
            written = os.write(port.fileno(), request)
        except BlockingIOError:
            written = -1
        except (serial.SerialException, OSError) as exc:
            self._lose(port, exc)
            raise OSError(f"serial port {self.bus.port}: {exc}") from None
        if written != len(request):
            raise OSError(f"serial port {self.bus.port} takes no request (its output queue "
                          "is full: the device reads nothing)")
        before = bytes(self._buffer) + stale  # (what the last exchange left, then since)
        cut = before.rfind(terminator)
        partial = before[cut + len(terminator):] if cut >= 0 else before
        self._buffer.clear()
        self._lost = None
        loop = asyncio.get_running_loop()
        loop.add_reader(port.fileno(), self._on_readable)
        try:
            return await self._reply(terminator, timeout, accept, partial[-MAX_REPLY_BYTES:])
        finally:
            if self._port is port:
                with contextlib.suppress(ValueError, OSError):
                    loop.remove_reader(port.fileno())

    async def _reply(self, terminator: bytes, timeout: float,
                     accept: Callable[[bytes], Awaitable[bool]], partial: bytes) -> bytes:
        """The reply line (see `exchange`). `partial`: a line begun before the request (b"":
        none); the first line to complete ends it if the two make a reply (a late one)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        skipped: list[bytes] = []
        while True:
            end = self._buffer.find(terminator)
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[:end + len(terminator)]
                if partial:
                    late, partial = await accept(partial + line), b""
                    if late:  # the rest of a reply begun before the request: an old reading
                        continue
                if len(line) <= MAX_REPLY_BYTES and await accept(line):
                    return line
                skipped.append(line[:MAX_REPLY_BYTES])
                if len(skipped) >= MAX_SKIPPED_LINES:
                    raise NoMatchingReply(skipped[-1], len(skipped))
                continue
            if self._lost is not None:
                raise OSError(f"serial port {self.bus.port} closed: {self._lost}")
            if len(self._buffer) >= MAX_REPLY_BYTES:
                raise ValueError(f"no terminator within {MAX_REPLY_BYTES} bytes "
                                 f"({bytes(self._buffer[:40])!r}…)")
            remaining = deadline - loop.time()
            if remaining <= 0:
                if skipped:
                    raise NoMatchingReply(skipped[-1], len(skipped))
                raise TimeoutError(f"no complete reply within {timeout:g}s ("
                                   f"{len(self._buffer)} bytes received"
                                   + (f": {bytes(self._buffer[:40])!r}" if self._buffer
                                      else "") + f"; the reply ends with {terminator!r})")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                continue


class SerialTextPoller(DevicePollerBase[SerialTextProfile, SerialTextLink]):
    """Polls one serial-text device. Its reply lines are matched with the `regex` module, which
    can stop a match at a deadline and let go of the GIL meanwhile (the standard `re` can do
    neither): each poll has `MATCH_BUDGET` for all its matching, run in a worker thread; a line
    that outruns it is a bad reply (`CostlyReply`: comm_error samples, a failed poll, a warning
    at most every `COSTLY_LOG_INTERVAL`), and the device is polled on as before."""

    def __init__(self, device: Device, profile: SerialTextProfile, link: SerialTextLink,
                 clock: Clock) -> None:
        super().__init__(device, profile, link, clock)
        import regex  # (at the first serial-text device: 2 MiB a gateway without one does
        # not hold — issue 15)

        self.pattern = regex.compile(profile.reply_pattern)
        self.request = profile.request_bytes
        self.terminator = profile.terminator_bytes
        self.costly_replies = 0
        """Reply lines whose match outran the budget, since the start."""
        self._budget = MATCH_BUDGET
        self._accepted: tuple[bytes, regex.Match[str]] | None = None
        self._warn_costly_after = float("-inf")

    @property
    def reply_timeout(self) -> float:
        """How long the whole reply may take: the profile's `reply_timeout`, bounded by the
        bus's `timeout` (what `roomwarden plan` shows, and what bounds a dead device's cost)."""
        return min(self.profile.reply_timeout, self.link.bus.timeout)

    @property
    def worst_poll_seconds(self) -> float:
        """The whole reply must arrive within `reply_timeout`; matching its lines takes at
        most `MATCH_BUDGET` more."""
        return self.reply_timeout + MATCH_BUDGET

    async def poll(self) -> PollResult:
        samples: list[Sample] = []
        self._budget, self._accepted = MATCH_BUDGET, None
        try:
            raw = await self.link.exchange(self.request, self.terminator,
                                           self.reply_timeout, self.matches)
        except NoMatchingReply as exc:  # said as parse_reply says it, the line it ended on
            return self._samples(exc.last, None, self.clock.now_ns())
        except CostlyReply as exc:
            return self._costly(exc, self.clock.now_ns())
        except (TimeoutError, OSError, ValueError, serial.SerialException) as exc:
            failed_samples(self.points, self.clock.now_ns(), Quality.COMM_ERROR, samples)
            return PollResult(samples, answered=False, error=str(exc) or repr(exc), requests=1)
        accepted, self._accepted = self._accepted, None
        if accepted is None or accepted[0] != raw:  # (never: the link returns what it took)
            return self.parse_reply(raw, self.clock.now_ns())
        return self._samples(raw, accepted[1], self.clock.now_ns())

    async def matches(self, raw: bytes) -> bool:
        """A line is this device's reply (not an echo of the request, not noise). Matched in a
        worker thread within what is left of the poll's budget; CostlyReply past it."""
        text = raw.decode(self.profile.encoding, errors="replace")
        try:
            match, spent = await asyncio.to_thread(timed_fullmatch, self.pattern, text,
                                                   self._budget, True)
        except TimeoutError:
            self._budget = 0.0
            raise CostlyReply(raw) from None
        self._budget -= spent
        if match is None:
            return False
        self._accepted = (raw, match)
        return True

    def parse_reply(self, raw: bytes, ts: int) -> PollResult:
        """Samples from one reply line (pure: any bytes in, never an exception out; matched
        on the calling thread, within `MATCH_BUDGET`)."""
        text = raw.decode(self.profile.encoding, errors="replace")
        try:
            match, _ = timed_fullmatch(self.pattern, text, MATCH_BUDGET, False)
        except TimeoutError:
            return self._costly(CostlyReply(raw), ts)
        return self._samples(raw, match, ts)

    def _costly(self, exc: CostlyReply, ts: int) -> PollResult:
        """A bad reply: every point comm_error, the poll failed; counted, and warned of at
        most every `COSTLY_LOG_INTERVAL` (the poll's error says it each time)."""
        self.costly_replies += 1
        now = self.clock.monotonic()
        if now >= self._warn_costly_after:
            self._warn_costly_after = now + COSTLY_LOG_INTERVAL
            log.warning("event=serial_reply_too_costly device=%s profile=%s count=%d error=%s",
                        self.device_id, self.profile.id, self.costly_replies, exc)
        samples: list[Sample] = []
        failed_samples(self.points, ts, Quality.COMM_ERROR, samples)
        return PollResult(samples, answered=False, requests=1, error=str(exc))

    def _samples(self, raw: bytes, match: regex.Match[str] | None, ts: int) -> PollResult:
        """Samples from a reply line and its match (None: it does not match)."""
        samples: list[Sample] = []
        if match is None:
            text = raw.decode(self.profile.encoding, errors="replace")
            failed_samples(self.points, ts, Quality.COMM_ERROR, samples)
            return PollResult(samples, answered=False, requests=1,
                              error=f"reply does not match the profile: {text[:80]!r}")
        for point in self.points:
            spec = point.spec
            assert isinstance(spec, TextField)
            try:
                value = parse_field(spec, match.group(spec.group))
            except ValueError:
                failed_samples((point,), ts, Quality.INVALID, samples)
                continue
            point_samples(point, value, ts, samples)
        return PollResult(samples, answered=True, requests=1)


INT_LIMIT = 2**63
"""An `int` field is a 64-bit integer, as the wire and the databases carry it; a
`bitstring` has at most 64 bits."""


def parse_field(spec: TextField, text: str | None) -> int | float | bool | str:
    """A regex group's text as the field's type; ValueError if it is not one (or an integer
    beyond 64 bits)."""
    if text is None:
        raise ValueError("group did not match")
    text = text.strip()
    if spec.type == "float":
        return float(text)
    if spec.type == "int":
        number = int(text)
        if not -INT_LIMIT <= number < INT_LIMIT:
            raise ValueError(f"{text[:40]!r} is beyond a 64-bit integer")
        return number
    if spec.type == "bitstring":
        if not text or set(text) - {"0", "1"}:
            raise ValueError(f"{text[:40]!r} is not a bit string")
        if len(text) > 64:
            raise ValueError(f"a bit string of {len(text)} bits (64 at most)")
        return int(text, 2)
    if spec.type == "bool":
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"{text!r} is not a boolean")
    return text
