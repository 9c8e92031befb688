"""pymodbus's decoding of register-read replies, without its per-register loop and its debug text.

pymodbus 3.x's client (`pymodbus/pdu/decoders.py`, `register_message.py`) decodes a read of
holding or input registers one register at a time — a `struct.unpack` call and a list append
per register — and then formats the whole reply as text (`str(pdu)`, every register in
decimal) as an argument of a debug line, before the logger is asked whether debug is on. At
2,000 points a second that was ~1 µs a register, as much as decoding the points themselves.

`ReadRepliesDecoder` takes the place of the client's `DecodePDU` (`ModbusLink` installs it in
the framer, TCP and RTU alike). For function codes 3 and 4 it builds the same response classes'
instances (subclasses of pymodbus's, with the same function code) whose `decode` reads all the
registers with one precompiled `struct.Struct`, and skips the debug text while pymodbus's
logger has debug off; every other reply (coils, exceptions, writes, anything while debugging)
is pymodbus's own path. Same outcome for every frame: the same registers, an odd byte count
read as pymodbus reads it (its whole words), the same frames undecodable — a byte count past
the frame's end, an unknown function (`tests/field/test_modbus_replies.py` compares the two on
arbitrary frames).

An undecodable frame is answered as an `UndecodableReply`, not None: on None pymodbus's framer
raises `ModbusIOException` inside `data_received`, where no call of ours can catch it — asyncio
logged "Fatal error: protocol.data_received() call failed" with its traceback and dropped the
connection, and the read waited out its timeout (the field audit: a device whose byte count
ran one past its data). The reply goes to the waiting read, which fails at once with
`CommFailure` naming the reason (`ModbusLink`). A TCP frame's length is its MBAP header's, so
the stream is still in step and the connection is kept: the next read is answered. (An RTU
frame's length is its byte count, so such a frame is never complete there; the RTU framer
hunts on.)
The reply is still matched as before: pymodbus's framer checks the transaction id and the
unit, `ModbusLink` the function and the register count.

The replies keep their registers as they came, two big-endian bytes each (`words`), and make
the list of `registers` only when it is asked for: the block decoder unpacks the words itself
(`ModbusLink.read_words`), so a list of ints made here and packed back into bytes there was
~390 instructions a register (issue 15).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence

from pymodbus.exceptions import ModbusException, ModbusIOException
from pymodbus.logging import Log
from pymodbus.pdu import DecodePDU, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)

_WORDS: dict[int, struct.Struct] = {}
"""A big-endian `Struct` of n 16-bit words, by n (at most 127: a byte count is one byte)."""


def words_struct(count: int) -> struct.Struct:
    """The big-endian `Struct` of `count` 16-bit words (made once per count)."""
    words = _WORDS.get(count)
    if words is None:
        words = _WORDS[count] = struct.Struct(f">{count}H")
    return words


def _words(data: bytes, function_code: int) -> bytes:
    """The registers' bytes of a read reply's data (byte count, then the words): the whole
    words pymodbus's `ReadHoldingRegistersResponse.decode` reads."""
    size = data[0]
    if size >= len(data):
        raise ModbusIOException(f"byte_count {size} > length of packet {len(data)}",
                                function_code=function_code)
    return data[1:1 + size // 2 * 2]


class _WordsReply(ModbusPDU):
    """A register-read reply that keeps its registers' bytes (`words`) and unpacks them into
    `registers` only when asked (pymodbus's `__init__` sets `registers`: then `words` is None
    and `registers` is what was set)."""

    words: bytes | None = None
    _registers: list[int] | None = None

    def decode(self, data: bytes) -> None:
        self.words = _words(data, self.function_code)
        self._registers = None

    @property
    def registers(self) -> list[int]:
        if self._registers is None:
            words = self.words or b""
            self._registers = list(words_struct(len(words) // 2).unpack(words))
        return self._registers

    @registers.setter
    def registers(self, value: Sequence[int]) -> None:
        self._registers, self.words = list(value), None


class HoldingRegistersReply(_WordsReply, ReadHoldingRegistersResponse):
    """pymodbus's reply to a holding-register read, decoded in one slice."""


class InputRegistersReply(_WordsReply, ReadInputRegistersResponse):
    """pymodbus's reply to an input-register read, decoded in one slice."""


_LEAN: dict[int, type[ModbusPDU]] = {3: HoldingRegistersReply, 4: InputRegistersReply}
_DEBUG = logging.DEBUG
_PYMODBUS_LOG = logging.getLogger(Log.__module__)
"""The logger pymodbus's `Log` writes to ("pymodbus.logging")."""


class UndecodableReply(ModbusPDU):
    """A frame no reply could be decoded from (see the module docstring): the answer to the
    read that waits for it, which `ModbusLink` fails with `reason`."""

    def __init__(self, function_code: int, reason: str) -> None:
        super().__init__()
        self.function_code = function_code
        self.reason = reason


class ReadRepliesDecoder(DecodePDU):
    """The client's PDU decoder, lean for register-read replies (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(False)  # a client's decoder: it decodes responses

    def decode(self, frame: bytes) -> ModbusPDU | None:
        lean = _LEAN.get(frame[0]) if frame else None
        if lean is None or _PYMODBUS_LOG.isEnabledFor(_DEBUG):  # (pymodbus's own debug line)
            pdu: ModbusPDU | None = super().decode(frame)  # (it logs why it failed)
            if pdu is None and frame:
                return UndecodableReply(frame[0], f"undecodable reply of function {frame[0]}")
            return pdu
        pdu = lean()
        try:
            pdu.decode(frame[1:])
        except (ModbusException, ValueError, IndexError, struct.error) as exc:
            Log.warning("Unable to decode frame {}", exc)  # type: ignore[no-untyped-call]
            return UndecodableReply(frame[0], f"undecodable reply: {_reason(exc)}")
        return pdu


def _reason(exc: Exception) -> str:
    """pymodbus's message without its "Modbus Error: [Input/Output] " prefix."""
    text = str(exc)
    return text.rsplit("] ", 1)[-1] if text.startswith("Modbus Error: [") else text
