"""What an RS-485 line does to Modbus RTU replies, and how the gateway keeps them apart.

RTU replies carry the unit and the function, never the register address, so a master can
only tell replies apart by *when* they come. Two things go wrong on real lines (the field
audit reproduced both over a pseudo-terminal):

* **A late reply taken for the next one.** A device that stalls past the bus timeout answers
  anyway; if the gateway has already asked that unit again with the same function and count,
  the late reply is accepted as the new one — another block's values on these points, quality
  good (a BMS's cells 32–63 shown as cells 0–31, a door contact read as smoke). `UnitGuard`
  keeps a unit that failed an exchange from being read again until two bus timeouts have
  passed since the failure (libmodbus's protocol recovery sleeps one response timeout); the
  bus loop polls the other devices meanwhile, so nobody else waits. A frame that arrives while
  no request waits for it (`late_frame`) starts that wait again and is logged. Writes are not
  held back (an alarm output never waits): their answer must echo the write's address (the
  output driver reads the value back). A device whose replies come later than three timeouts
  can still be misread, as with any Modbus master: raise the bus's `timeout` above its worst
  reply time (the log line says so).
* **A good reply thrown away with the noise around it.** pymodbus's RTU framer drops the whole
  receive buffer when the first byte it tries does not start a frame with a good CRC, and
  consumes the whole buffer when it skips another unit's frame: one noise byte at the line's
  turnaround, or a neighbour's reply in the same USB read, lost a valid reply.
  `HuntingRtuFramer` hunts for a frame one byte at a time and consumes exactly the frame it
  found.
"""

from __future__ import annotations

import logging
import time

from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerRTU

from gateway.ops.connections import RateLimitFilter

log = logging.getLogger("roomwarden.field")
log.addFilter(RateLimitFilter(prefix="event=late_frame", kind=lambda record: str(record.args)))
"""One `late_frame` line a minute per bus and unit."""


class HuntingRtuFramer(FramerRTU):
    """pymodbus's RTU framer, hunting byte by byte for a complete frame with a good CRC and
    consuming exactly up to its end (the rest stays for the next frame).

    A start is skipped only once it is proven not to begin a frame (no such function, or the
    frame it announces is complete and fails its CRC). While the first plausible start is
    still incomplete the framer waits for more bytes, as pymodbus's does: it does not look
    for frames inside a reply still arriving (at a 1/65,536 chance per start, a long reply's
    data would now and then hold one). The one exception is a good frame that ends exactly at
    the last byte received — a slave sends one frame and falls silent — so a noise byte that
    announces a long frame does not cost the reply behind it."""

    def decode(self, data: bytes) -> tuple[int, int, int, bytes]:
        """(bytes consumed, unit, 0, PDU) of the first good frame; (0, 0, 0, b"") to wait
        for more bytes."""
        for start in range(len(data) - self.MIN_SIZE + 1):
            size = self._announced(data[start:])
            if size is None:  # no frame starts here
                continue
            if size == 0 or start + size > len(data):  # plausible, not complete yet
                return self._ending_at_the_end(data, start + 1)
            frame = data[start:start + size]
            if self._crc_ok(frame):
                return start + size, frame[0], 0, frame[1:-2]
        return 0, 0, 0, self.EMPTY

    def _ending_at_the_end(self, data: bytes, first: int) -> tuple[int, int, int, bytes]:
        for start in range(first, len(data) - self.MIN_SIZE + 1):
            if self._announced(data[start:]) == len(data) - start \
                    and self._crc_ok(data[start:]):
                return len(data), data[start], 0, data[start + 1:-2]
        return 0, 0, 0, self.EMPTY

    def _announced(self, candidate: bytes) -> int | None:
        """The size of the frame `candidate` would start (0: not known yet; None: none)."""
        try:
            pdu_class = self.decoder.lookupPduClass(candidate)
            if pdu_class is None:
                return None
            return int(pdu_class.calculateRtuFrameSize(candidate))
        except IndexError:  # too short to tell
            return 0
        except ModbusException:  # a function without an RTU size
            return None

    def _crc_ok(self, frame: bytes) -> bool:
        return self.check_CRC(frame[:-2], int.from_bytes(frame[-2:], "big"))


QUIET_TIMEOUTS = 2
"""After a failed exchange a unit is not read again for this many bus timeouts: a reply up to
three timeouts late is discarded."""


class UnitGuard:
    """When each unit of one RTU bus may be asked again after a failed exchange."""

    def __init__(self, bus_id: str, timeout: float) -> None:
        self.bus_id = bus_id
        self.quiet = QUIET_TIMEOUTS * timeout
        self._unsettled: dict[int, float] = {}
        """unit → monotonic time before which it is not asked again."""
        self.late_frames = 0
        """Frames that came while no request waited for them (since start)."""

    def failed(self, unit: int) -> None:
        """An exchange with `unit` failed: its reply may still be on its way."""
        self._unsettled[unit] = time.monotonic() + self.quiet

    def late_frame(self, unit: int) -> None:
        """A frame of `unit` came while no request waited for it: a late reply."""
        self.late_frames += 1
        self.failed(unit)
        log.warning("event=late_frame bus=%s unit=%d (a reply after the bus timeout, "
                    "discarded: raise the bus's timeout above this device's reply time)",
                    self.bus_id, unit)

    def wait_before(self, unit: int) -> float:
        """Seconds to wait before asking `unit` (0: ask now)."""
        until = self._unsettled.get(unit)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left <= 0:
            del self._unsettled[unit]
            return 0.0
        return left

