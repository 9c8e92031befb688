"""Register reads decoded from the reply's bytes (issue 15): `ModbusLink.read_words` hands the
block decoder the registers as they came, two big-endian bytes each, where `read` made a list
of ints that the decoder packed back into bytes. Checked against verbatim copies of the code
before (the decoder's `__call__`, the replies' `decode`, the link's `_values`): the same
samples bit for bit, the same registers, the same errors with the same words."""

from __future__ import annotations

import asyncio
import functools
import struct
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu import DecodePDU, ModbusPDU
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse

from gateway.config.profile import RegisterType
from gateway.config.site import ModbusTcpBus
from gateway.field.block import GOOD, INVALID, BlockDecoder, _new, _Run
from gateway.field.modbus_link import FUNCTION_CODES, CommFailure, ModbusLink, exception_reply
from gateway.field.modbus_replies import ReadRepliesDecoder, UndecodableReply
from gateway.field.planner import ReadRequest, plan_requests
from gateway.field.readings import register_samples
from gateway.field.sample import Sample
from tests.field.test_block import WORDS, _key, requests, runs
from tests.field.test_modbus_replies import frames
from tests.helpers import bound

# --- the code before, verbatim (1ccba84) -------------------------------------------------------


def old_block_call(self: Any, registers: Sequence[int], ts: int, out: list[Sample]) -> None:
    """`BlockDecoder.__call__` before."""
    if len(registers) != self._count:
        register_samples(self._request, registers, ts, out)
        return
    try:
        raw_bytes = self._words.pack(*registers)
    except struct.error:  # not 16-bit words: the generic path says what it makes of them
        register_samples(self._request, registers, ts, out)
        return
    raws = self._block.unpack_from(raw_bytes)
    for step in self._steps:
        if type(step) is _Run:
            step.decode(raws, ts, out)
            continue
        pid, read, scaling, flags, at = step
        if read is None:
            raw = raws[at]
        elif type(read) is tuple:
            own, byte = read
            raw = own.unpack_from(raw_bytes, byte)[0]
        else:
            assert isinstance(read, ReadRequest)
            register_samples(read, registers, ts, out)
            continue
        scale, offset, identity, divide, low, high, back = scaling
        value = raw if identity else (raw / scale + offset if divide else raw * scale + offset)
        quality = GOOD if low <= value <= high else INVALID
        if back and type(value) is float and type(raw) is int and value.is_integer():
            value = int(value)
        out.append(_new(Sample, (pid, value, ts, quality)))
        if flags:
            word = int(raw)
            for fid, bit, active_low in flags:
                out.append(_new(Sample, (fid, bool((word >> bit) & 1) != active_low, ts,
                                         GOOD)))


_WORDS: dict[int, struct.Struct] = {}


def old_words(data: bytes, function_code: int) -> list[int]:
    """`modbus_replies._words` before: the replies' `decode` set `registers` to this."""
    size = data[0]
    if size >= len(data):
        raise ModbusIOException(f"byte_count {size} > length of packet {len(data)}",
                                function_code=function_code)
    count = size // 2
    words = _WORDS.get(count)
    if words is None:
        words = _WORDS[count] = struct.Struct(f">{count}H")
    return list(words.unpack_from(data, 1))


def old_values(request: ReadRequest, reply: Any) -> Sequence[int] | Sequence[bool]:
    """`ModbusLink._values` before."""
    if reply is None:
        raise CommFailure("no reply")
    if reply.isError():
        code = getattr(reply, "exception_code", None)
        if isinstance(code, int) and code:
            raise exception_reply(code)
        raise CommFailure(f"error reply: {reply}")
    expected = FUNCTION_CODES[request.register]
    if reply.function_code != expected:  # pymodbus matches replies by unit and transaction
        raise CommFailure(f"reply of function {reply.function_code} to a read of function "
                          f"{expected}")
    if request.register.is_bit:
        bits: list[bool] = list(reply.bits)
        if len(bits) != 8 * -(-request.count // 8):  # the bytes that carry them, exactly
            raise CommFailure(f"reply carries {len(bits)} bits, asked {request.count}")
        return bits[:request.count]
    registers: list[int] = list(reply.registers)
    if len(registers) != request.count:
        raise CommFailure(f"reply carries {len(registers)} registers, asked {request.count}")
    return registers


# --- the checks --------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(plan=st.one_of(requests(), runs()), data=st.data())
def test_the_decoder_reads_the_replys_bytes_as_it_read_its_registers(
        plan: list[ReadRequest], data: st.DataObject) -> None:
    """Any 16-bit words of any request (what a reply carries): `words` gives the samples the
    decoder gave for the list of them before, and the point-by-point reference."""
    for request in plan:
        registers = data.draw(st.lists(WORDS, min_size=request.count, max_size=request.count))
        decoder = BlockDecoder(request)
        before: list[Sample] = []
        old_block_call(decoder, registers, 7, before)
        reference: list[Sample] = []
        register_samples(request, registers, 7, reference)
        now: list[Sample] = []
        decoder.words(struct.pack(f">{request.count}H", *registers), 7, now)
        called: list[Sample] = []
        decoder(registers, 7, called)
        assert [_key(s) for s in now] == [_key(s) for s in before] \
            == [_key(s) for s in reference] == [_key(s) for s in called]


@settings(max_examples=1000, deadline=None)
@given(frame=frames())
def test_a_reply_keeps_the_bytes_of_the_registers_it_read_before(frame: bytes) -> None:
    """The lean replies' `words` are the bytes of exactly the registers they read before
    (an odd byte count's whole words), and `registers` unpacks them; the same error where the
    byte count runs past the frame (an `UndecodableReply`, where pymodbus's decoder gives
    None)."""
    pdu = ReadRepliesDecoder().decode(frame)
    if not frame or frame[0] not in (3, 4):
        return
    try:
        before = old_words(frame[1:], frame[0])
    except (ModbusIOException, IndexError, struct.error):
        assert isinstance(pdu, UndecodableReply)
        return
    assert pdu is not None
    words = getattr(pdu, "words", None)
    assert words is not None and len(words) == 2 * len(before)
    assert list(struct.unpack(f">{len(before)}H", words)) == before == pdu.registers


def _outcome(extract: Any, request: ReadRequest, reply: Any) -> tuple[str, object]:
    try:
        return ("ok", extract(request, reply))
    except Exception as exc:
        return (type(exc).__name__, str(exc))


@functools.cache
def _link() -> ModbusLink:
    """A TCP link (pymodbus's client wants a running loop to be made; its checks use none)."""
    async def make() -> ModbusLink:
        return ModbusLink(ModbusTcpBus(id="tcp1", type="modbus_tcp", host="127.0.0.1",
                                       port=1502))
    return asyncio.run(make())


@settings(max_examples=1000, deadline=None)
@given(frame=frames(), count=st.integers(1, 130),
       register=st.sampled_from([RegisterType.HOLDING, RegisterType.INPUT]),
       pymodbus_own=st.booleans())
def test_read_words_fails_as_read_failed_and_reads_what_it_read(
        frame: bytes, count: int, register: RegisterType, pymodbus_own: bool) -> None:
    """For any reply (pymodbus's own decoder's, as while its debug log is on, or ours) to any
    register read: `read_words`'s check raises what `read`'s raised, with the same words, or
    gives the bytes of the registers `read` gave. An undecodable frame (pymodbus's None, which
    never reached the check: its framer raised) fails both with the reason."""
    reply: ModbusPDU | None = (DecodePDU(False) if pymodbus_own else ReadRepliesDecoder()
                               ).decode(frame)
    link = _link()
    request = ReadRequest(register, 0, count, ())
    if isinstance(reply, UndecodableReply):
        assert _outcome(link._words, request, reply) == ("CommFailure", reply.reason) \
            == _outcome(link._values, request, reply)
        return
    before = _outcome(old_values, request, reply)
    now = _outcome(link._words, request, reply)
    if before[0] == "ok":
        registers = before[1]
        assert now == ("ok", struct.pack(f">{count}H", *registers))  # type: ignore[misc]
        assert _outcome(link._values, request, reply) == before
    else:
        assert now == before
        assert _outcome(link._values, request, reply) == before


def test_a_reply_made_with_registers_has_no_words() -> None:
    """A reply given its registers (pymodbus's `__init__` does) says so: `words` None, the
    registers as given (the link then packs them itself)."""
    pdu = ReadRepliesDecoder().decode(bytes([3, 4, 1, 2, 3, 4]))
    assert pdu is not None and getattr(pdu, "words", None) == bytes([1, 2, 3, 4])
    pdu.registers = [7, 8]
    assert getattr(pdu, "words", 0) is None and pdu.registers == [7, 8]
    assert isinstance(pdu, ReadHoldingRegistersResponse)


@pytest.mark.parametrize("count", [1, 100])
def test_a_short_byte_string_falls_back_to_the_reference(count: int) -> None:
    """`words` of fewer bytes than the request (never from `read_words`, which checks the
    count): the reference's samples of the whole words there are."""
    points = [{"name": f"r{i}", "register": "holding", "address": i, "type": "int16",
               "scale": 0.1} for i in range(count)]
    (request,) = plan_requests(bound(points))
    got: list[Sample] = []
    BlockDecoder(request).words(b"\x00\x05\x01", 3, got)
    expected: list[Sample] = []
    register_samples(request, [5], 3, expected)
    assert [_key(s) for s in got] == [_key(s) for s in expected]
