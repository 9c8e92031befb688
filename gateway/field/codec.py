"""Register codec: 16-bit Modbus registers <-> typed values, for every data type and byte order.

Pure functions, no I/O. pymodbus's own converters know only word order, not the byte-swapped
orders (BADC, DCBA) meters and BMSs use, so this module does the packing with `struct`, with one
precompiled `struct.Struct` per (type, width) so the hot path does no format parsing.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from functools import cache

from gateway.config.profile import WIDTH_REGISTERS, ByteOrder, DataType

_FORMATS: dict[DataType, str] = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.INT64: "q",
    DataType.UINT64: "Q",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}


class DecodeError(ValueError):
    """The registers cannot be a value of the point's type (too few, or not text)."""


@cache
def _struct(kind: DataType) -> struct.Struct:
    return struct.Struct(">" + _FORMATS[kind])


@cache
def _words(count: int) -> struct.Struct:
    return struct.Struct(f">{count}H")


def registers_to_bytes(registers: Sequence[int], order: ByteOrder) -> bytes:
    """The value's bytes, most significant first, from registers as they arrived."""
    words = list(registers)
    if order.swaps_words:
        words.reverse()
    raw = _words(len(words)).pack(*words)
    if order.swaps_bytes:
        swapped = bytearray(raw)
        swapped[0::2], swapped[1::2] = raw[1::2], raw[0::2]
        raw = bytes(swapped)
    return raw


def bytes_to_registers(raw: bytes, order: ByteOrder) -> list[int]:
    """Inverse of registers_to_bytes."""
    if order.swaps_bytes:
        swapped = bytearray(raw)
        swapped[0::2], swapped[1::2] = raw[1::2], raw[0::2]
        raw = bytes(swapped)
    words = list(_words(len(raw) // 2).unpack(raw))
    if order.swaps_words:
        words.reverse()
    return words


def decode(registers: Sequence[int], kind: DataType, order: ByteOrder = ByteOrder.ABCD,
           bit: int | None = None) -> int | float | bool | str:
    """Decode one value from exactly the registers it occupies."""
    if kind is DataType.BOOL:
        if not registers:
            raise DecodeError("no register for a bool")
        word = registers[0]
        if bit is None:
            return bool(word)
        if order.swaps_bytes:
            word = ((word & 0xFF) << 8) | (word >> 8)
        return bool((word >> bit) & 1)
    if kind is DataType.STRING:
        text = registers_to_bytes(registers, _string_order(order))
        return text.rstrip(b"\x00 ").decode("ascii", errors="replace")
    width = WIDTH_REGISTERS[kind]
    if len(registers) != width:
        raise DecodeError(f"{kind} needs {width} registers, got {len(registers)}")
    if width == 1:
        word = registers[0]
        if order.swaps_bytes:
            word = ((word & 0xFF) << 8) | (word >> 8)
        return word - 0x10000 if kind is DataType.INT16 and word & 0x8000 else word
    value: int | float = _struct(kind).unpack(registers_to_bytes(registers, order))[0]
    return value


def encode(value: int | float | bool | str, kind: DataType, order: ByteOrder = ByteOrder.ABCD,
           length: int | None = None) -> list[int]:
    """Registers for `value` (the inverse of decode); used by the simulator and by writes."""
    if kind is DataType.BOOL:
        return [1 if value else 0]
    if kind is DataType.STRING:
        size = 2 * (length or math.ceil(len(str(value)) / 2))
        raw = str(value).encode("ascii")[:size].ljust(size, b"\x00")
        return bytes_to_registers(raw, _string_order(order))
    if kind in (DataType.FLOAT32, DataType.FLOAT64):
        raw = _struct(kind).pack(float(value))
    else:
        raw = _struct(kind).pack(int(value))
    return bytes_to_registers(raw, order)


def _string_order(order: ByteOrder) -> ByteOrder:
    """Strings are read register by register: only the byte swap applies."""
    return ByteOrder.BADC if order.swaps_bytes else ByteOrder.ABCD


def bit_of(value: int, bit: int, active_low: bool = False) -> bool:
    return bool((value >> bit) & 1) != active_low
