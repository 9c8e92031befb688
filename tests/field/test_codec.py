"""Every data type and byte order round-trips through the codec (property-based)."""

from __future__ import annotations

import math
import struct

from hypothesis import given
from hypothesis import strategies as st

from gateway.config.profile import ByteOrder, DataType
from gateway.field.codec import decode, encode, registers_to_bytes

ORDERS = st.sampled_from(list(ByteOrder))
INT_RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 1),
}


@st.composite
def int_values(draw: st.DrawFn) -> tuple[DataType, int]:
    kind = draw(st.sampled_from(list(INT_RANGES)))
    low, high = INT_RANGES[kind]
    return kind, draw(st.integers(low, high))


@given(int_values(), ORDERS)
def test_integers_round_trip(kind_value: tuple[DataType, int], order: ByteOrder) -> None:
    kind, value = kind_value
    registers = encode(value, kind, order)
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert decode(registers, kind, order) == value


@given(st.floats(width=32, allow_nan=False), ORDERS)
def test_float32_round_trips(value: float, order: ByteOrder) -> None:
    assert decode(encode(value, DataType.FLOAT32, order), DataType.FLOAT32, order) == value


@given(st.floats(allow_nan=False), ORDERS)
def test_float64_round_trips(value: float, order: ByteOrder) -> None:
    assert decode(encode(value, DataType.FLOAT64, order), DataType.FLOAT64, order) == value


def test_nan_stays_nan() -> None:
    assert math.isnan(decode(encode(math.nan, DataType.FLOAT32), DataType.FLOAT32))  # type: ignore[arg-type]


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=20),
       st.sampled_from([ByteOrder.ABCD, ByteOrder.BADC]))
def test_strings_round_trip(text: str, order: ByteOrder) -> None:
    length = max(1, math.ceil(len(text) / 2))
    assert decode(encode(text, DataType.STRING, order, length), DataType.STRING, order) == text


@given(st.integers(0, 0xFFFF), st.integers(0, 15))
def test_bit_in_register(word: int, bit: int) -> None:
    assert decode([word], DataType.BOOL, ByteOrder.ABCD, bit) == bool(word >> bit & 1)


def test_orders_match_the_vendor_conventions() -> None:
    # 0x41200000 is 10.0 as IEEE-754 float32; how four common meters send it:
    assert decode([0x4120, 0x0000], DataType.FLOAT32, ByteOrder.ABCD) == 10.0
    assert decode([0x0000, 0x4120], DataType.FLOAT32, ByteOrder.CDAB) == 10.0
    assert decode([0x2041, 0x0000], DataType.FLOAT32, ByteOrder.BADC) == 10.0
    assert decode([0x0000, 0x2041], DataType.FLOAT32, ByteOrder.DCBA) == 10.0
    assert decode([0xFF38], DataType.INT16) == -200
    assert decode([0x38FF], DataType.INT16, ByteOrder.BADC) == -200
    assert registers_to_bytes([0x0102, 0x0304], ByteOrder.DCBA) == bytes([4, 3, 2, 1])


@given(st.lists(st.integers(0, 0xFFFF), min_size=4, max_size=4), ORDERS)
def test_decoding_arbitrary_registers_never_crashes(registers: list[int],
                                                     order: ByteOrder) -> None:
    for kind in (DataType.FLOAT64, DataType.INT64, DataType.UINT64):
        decode(registers, kind, order)
    for kind in (DataType.FLOAT32, DataType.INT32, DataType.UINT32):
        value = decode(registers[:2], kind, order)
        raw = registers_to_bytes(registers[:2], order)
        fmt = {DataType.FLOAT32: ">f", DataType.INT32: ">i", DataType.UINT32: ">I"}[kind]
        expected = struct.unpack(fmt, raw)[0]
        assert value == expected or (math.isnan(expected) and math.isnan(value))  # type: ignore[arg-type]
