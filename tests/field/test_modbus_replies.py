"""Register-read replies decoded in one `struct` call (gateway.field.modbus_replies): the same
outcome as pymodbus's own decoder for any frame, the debug line pymodbus writes while its
debug log is on, and no Python call per register in the links' framers."""

from __future__ import annotations

import logging
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.pdu import DecodePDU, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)

from gateway.config.site import ModbusRtuBus, ModbusTcpBus
from gateway.field.modbus_link import ModbusLink
from gateway.field.modbus_replies import ReadRepliesDecoder, UndecodableReply
from tests.helpers import calls_made


def _outcome(pdu: ModbusPDU | None) -> tuple[object, ...] | None:
    if pdu is None or isinstance(pdu, UndecodableReply):  # (pymodbus's None: no reply)
        return None
    return (pdu.function_code, pdu.isError(), list(pdu.registers), list(pdu.bits),
            getattr(pdu, "exception_code", None),
            isinstance(pdu, ReadHoldingRegistersResponse),
            isinstance(pdu, ReadInputRegistersResponse))


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """A PDU as it comes off the wire: mostly register reads, byte counts that fit the data or
    not (odd, past the end, short of it), and other functions and exceptions."""
    code = draw(st.sampled_from([3, 4, 3, 4, 1, 2, 6, 0x83, 0x84, 0x80, 0x7F, 99]))
    data = draw(st.binary(max_size=260))
    if code in (3, 4) and draw(st.booleans()):
        size = draw(st.one_of(st.just(len(data)), st.integers(0, 255)))
        data = bytes([min(size, 255)]) + data
    return bytes([code]) + data if draw(st.integers(0, 20)) else b""


@settings(max_examples=1000, deadline=None)
@given(frame=frames())
def test_any_frame_decodes_as_pymodbus_decodes_it(frame: bytes) -> None:
    """The same registers, the same class family, the same frames undecodable (a byte count
    past the end of the frame: pymodbus's None, on which its framer raises "Unable to decode";
    ours an `UndecodableReply`, the read's comm error); an odd count read as pymodbus reads
    it."""
    ours = ReadRepliesDecoder().decode(frame)
    assert _outcome(ours) == _outcome(DecodePDU(False).decode(frame))
    assert ours is not None or not frame


def test_with_pymodbus_debug_on_its_own_decoder_writes_its_debug_line(
        caplog: pytest.LogCaptureFixture) -> None:
    frame = bytes([3, 4]) + struct.pack(">2H", 513, 7)
    with caplog.at_level(logging.DEBUG, logger="pymodbus.logging"):
        pdu = ReadRepliesDecoder().decode(frame)
    assert pdu is not None and list(pdu.registers) == [513, 7]
    assert any("registers=[513, 7]" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("kind", ["tcp", "rtu"])
async def test_a_register_reply_is_decoded_without_a_call_per_register(kind: str) -> None:
    """pymodbus decodes a 125-register reply with a `struct.unpack` and an append per register
    and formats it for a debug line nobody reads (~250 calls, ~1 µs a register); the links'
    framers now decode it in a few calls, to the same registers, matched on unit and
    transaction id as before."""
    bus: ModbusTcpBus | ModbusRtuBus
    if kind == "tcp":
        bus = ModbusTcpBus(id="tcp1", type="modbus_tcp", host="127.0.0.1", port=1502)
    else:
        bus = ModbusRtuBus(id="rtu1", type="modbus_rtu", port="/dev/null-rtu", baudrate=9600)
    link = ModbusLink(bus)
    framer = link.client.ctx.framer
    registers = [(977 * i) % 0x10000 for i in range(125)]
    frame = framer.buildFrame(ReadHoldingRegistersResponse(registers=registers, dev_id=3,
                                                           transaction_id=7))
    tid = 7 if kind == "tcp" else 0
    decoded: list[tuple[int, ModbusPDU | None]] = []
    calls = calls_made(lambda: decoded.append(framer.handleFrame(frame, 3, tid)))
    [(used, pdu)] = decoded
    assert used == len(frame) and pdu is not None
    assert isinstance(pdu, ReadHoldingRegistersResponse)
    assert list(pdu.registers) == registers and (pdu.dev_id, pdu.transaction_id) == (3, tid)
    assert sum(calls.values()) < 40, calls
    assert framer.handleFrame(frame, 4, tid) == (len(frame), None)  # another unit's: dropped
