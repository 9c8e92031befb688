"""Per-device fault modes of the simulator, and what each does to a reply on each transport.

A `Fault` is a pydantic model (parsed at the boundary by the control channel); a `FaultTable`
maps device ids to their current fault, settable at run time. `apply_fault` is the pure part:
given a fault, a transport and the reply frame the device would send, it returns the bytes to
send instead. The servers call it on every outgoing frame (Modbus: from pymodbus's
`trace_packet` hook; serial text: from the emulator).

What each mode means per transport (RTU = modbus_rtu, TCP = modbus_tcp, text = serial_text):

* none: the reply, unchanged.
* no_reply: nothing is sent (on TCP the socket stays up; the client times out).
* slow_reply: the reply, `delay` seconds late (a client that gave up meanwhile gets it late).
* crc_error: RTU: the reply with both CRC bytes inverted. TCP has no CRC (the kernel drops
  corrupt segments), so the meaningful equivalent is a frame the client must reject: the MBAP
  protocol id is made non-zero. text: the line's characters are changed (digits to letters and
  so on); the protocol has no checksum, so corruption shows as a line that does not match.
* garbage: `garbage_bytes` random bytes instead of the reply, or before it with
  `garbage_before`. On TCP this desynchronises the stream, as a broken gateway does. On text:
  random printable characters ended by the terminator.
* truncated: only the first `keep` bytes (default: half the frame), no terminator on text.
* exception: RTU and TCP: an exception reply with `exception_code`, produced by the
  datastore action. text: the request is echoed back, which is what a Megatec unit does for a
  command it refuses.
* wrong_function: RTU and TCP: the reply under the other read function (a holding read
  answered as an input read, coils as discrete inputs and back; the CRC made right on RTU), as
  a device that mixes up its register tables, or a late reply to another read. text: unchanged.

`probability` < 1 makes any fault intermittent: each reply is faulted with that probability.
"""

from __future__ import annotations

import random
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, model_validator

from gateway.records import dataclass
from gateway.strict import StrictModel

Transport = Literal["modbus_rtu", "modbus_tcp", "serial_text"]

EXCEPTION_CODES = (1, 2, 3, 4, 5, 6, 7, 8, 10, 11)


class FaultMode(StrEnum):
    NONE = "none"
    NO_REPLY = "no_reply"
    SLOW_REPLY = "slow_reply"
    CRC_ERROR = "crc_error"
    GARBAGE = "garbage"
    TRUNCATED = "truncated"
    EXCEPTION = "exception"
    WRONG_FUNCTION = "wrong_function"


class Fault(StrictModel):
    """One device's fault. Fields other than `mode` apply to the modes named in their docs."""

    mode: FaultMode = FaultMode.NONE
    delay: Annotated[float, Field(ge=0, le=600)] = 0.0
    """slow_reply: seconds the reply is held back."""
    exception_code: int = 4
    """exception: the Modbus exception code (1-8, 10, 11); 4 = server device failure."""
    garbage_bytes: Annotated[int, Field(ge=1, le=256)] = 8
    """garbage: how many random bytes."""
    garbage_before: bool = False
    """garbage: True = random bytes, then the real reply; False = random bytes instead."""
    keep: Annotated[int, Field(ge=0)] | None = None
    """truncated: bytes kept of the reply (default: half, at least one byte short)."""
    probability: Annotated[float, Field(ge=0, le=1)] = 1.0
    """Chance that a reply is faulted (1 = every reply)."""

    @model_validator(mode="after")
    def _check(self) -> Fault:
        if self.exception_code not in EXCEPTION_CODES:
            raise ValueError(f"exception_code must be one of {EXCEPTION_CODES}")
        if self.mode is FaultMode.SLOW_REPLY and self.delay <= 0:
            raise ValueError("slow_reply needs a delay > 0")
        return self


NO_FAULT = Fault()


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What to send for one reply: `data` after `delay` seconds (empty data: send nothing)."""

    data: bytes
    delay: float = 0.0


def apply_fault(fault: Fault, transport: Transport, frame: bytes, rng: random.Random, *,
                request: bytes = b"", terminator: bytes = b"\r") -> Outgoing:
    """The bytes a device with `fault` sends instead of `frame` (its intended reply).

    `fault` is taken as triggered (the caller rolls `probability`, see `FaultTable.active`).
    The exception mode is produced by the Modbus datastore, not here, except on serial text
    where it echoes `request`."""
    mode = fault.mode
    if mode is FaultMode.NONE or not frame:
        return Outgoing(frame)
    if mode is FaultMode.NO_REPLY:
        return Outgoing(b"")
    if mode is FaultMode.SLOW_REPLY:
        return Outgoing(frame, fault.delay)
    if mode is FaultMode.EXCEPTION:
        return Outgoing(request if transport == "serial_text" else frame)
    if mode is FaultMode.TRUNCATED:
        keep = fault.keep if fault.keep is not None else len(frame) // 2
        return Outgoing(frame[:min(keep, len(frame) - 1)])
    if mode is FaultMode.CRC_ERROR:
        return Outgoing(_corrupt(transport, frame, terminator))
    if mode is FaultMode.GARBAGE:
        junk = _garbage(transport, fault.garbage_bytes, rng, terminator)
        return Outgoing(junk + frame if fault.garbage_before else junk)
    if mode is FaultMode.WRONG_FUNCTION:
        return Outgoing(_other_function(transport, frame))
    raise AssertionError(mode)


OTHER_READ = {1: 2, 2: 1, 3: 4, 4: 3}


def _other_function(transport: Transport, frame: bytes) -> bytes:
    if transport == "serial_text":
        return frame
    at = 1 if transport == "modbus_rtu" else 7  # after the unit, or after the MBAP header
    if len(frame) <= at or frame[at] not in OTHER_READ:
        return frame
    out = bytearray(frame)
    out[at] = OTHER_READ[frame[at]]
    if transport == "modbus_rtu":
        from pymodbus.framer.rtu import FramerRTU

        out[-2:] = FramerRTU.compute_CRC(bytes(out[:-2])).to_bytes(2, "big")
    return bytes(out)


def _corrupt(transport: Transport, frame: bytes, terminator: bytes) -> bytes:
    if transport == "modbus_rtu":
        if len(frame) < 3:
            return frame
        return frame[:-2] + bytes(b ^ 0xFF for b in frame[-2:])
    if transport == "modbus_tcp":
        if len(frame) < 8:
            return frame
        return frame[:2] + b"\x5a\xa5" + frame[4:]
    body = frame[:-len(terminator)] if terminator and frame.endswith(terminator) else frame
    flipped = bytes(_flip_printable(b) for b in body)
    return flipped + frame[len(body):]


def _flip_printable(byte: int) -> int:
    """A different printable character (digits become letters, letters become digits...)."""
    if 0x30 <= byte <= 0x39:
        return byte + 0x11  # '0'-'9' -> 'A'-'J'
    if 0x20 <= byte < 0x7F:
        return 0x30 + byte % 10
    return byte ^ 0x55


def _garbage(transport: Transport, count: int, rng: random.Random, terminator: bytes) -> bytes:
    if transport == "serial_text":
        forbidden = set(terminator)
        alphabet = [c for c in range(0x21, 0x7F) if c not in forbidden]
        return bytes(rng.choice(alphabet) for _ in range(count)) + terminator
    return bytes(rng.randrange(256) for _ in range(count))


class FaultTable:
    """device id → current fault, with a seeded RNG for intermittent faults and garbage."""

    def __init__(self, devices: list[str] | None = None, seed: int = 0) -> None:
        self._faults: dict[str, Fault] = dict.fromkeys(devices or [], NO_FAULT)
        self.rng = random.Random(seed)

    def add_device(self, device_id: str) -> None:
        self._faults.setdefault(device_id, NO_FAULT)

    def devices(self) -> list[str]:
        return sorted(self._faults)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._faults

    def set(self, device_id: str, fault: Fault) -> None:
        if device_id not in self._faults:
            raise KeyError(f"no simulated device {device_id!r}")
        self._faults[device_id] = fault

    def clear(self, device_id: str) -> None:
        self.set(device_id, NO_FAULT)

    def get(self, device_id: str) -> Fault:
        try:
            return self._faults[device_id]
        except KeyError:
            raise KeyError(f"no simulated device {device_id!r}") from None

    def active(self, device_id: str) -> Fault:
        """The fault to apply to this reply: the device's fault, or none when an intermittent
        fault does not strike this time."""
        fault = self._faults.get(device_id, NO_FAULT)
        if fault.mode is FaultMode.NONE:
            return fault
        if fault.probability < 1.0 and self.rng.random() >= fault.probability:
            return NO_FAULT
        return fault
