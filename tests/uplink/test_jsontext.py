"""gateway.contract.jsontext writes JSON exactly as pydantic-core's `to_json` does (issue 15: the
uplink's bytes without pydantic-core): every float (the exponent's spelling, the decimal
exponent -5 written out, -0.0, the extremes, non-finite ones), ints of any size, strings of any
characters (escapes, non-ASCII, a float's text inside a string), nesting and key order; and a
lone surrogate refused as `to_json` refuses it."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import PydanticSerializationError
from pydantic_core import to_json as reference

from gateway.contract.jsontext import to_json

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-2**70, 2**70) | st.floats()
    | st.text(st.characters(codec="utf-8")),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=4), inner, max_size=4), max_leaves=20)


@settings(max_examples=3000)
@given(st.floats() | st.floats(1e-6, 1e-3) | st.floats(1e15, 1e17) | st.floats(width=32))
def test_every_float_as_pydantic_core_writes_it(x: float) -> None:
    assert to_json(x) == reference(x)
    assert to_json([x, -x]) == reference([x, -x])


@settings(max_examples=2000)
@given(st.integers(0, 2**64 - 1))
def test_every_bit_pattern_of_a_double(bits: int) -> None:
    x = struct.unpack("<d", bits.to_bytes(8, "little"))[0]
    assert to_json(x) == reference(x)


def test_each_decimal_exponent() -> None:
    for exponent in range(-330, 310):
        for mantissa in ("1", "1.5", "9.999999999999999", "2.2250738585072014"):
            x = float(f"{mantissa}e{exponent}")
            assert to_json([x, -x]) == reference([x, -x]), x


def test_the_special_cases() -> None:
    for x in (-0.0, 0.0, 5e-324, 1.7976931348623157e308, 1e16, 1e-5, 9.99e-5, 1e-4,
              float("inf"), float("-inf"), float("nan")):
        assert to_json(x) == reference(x), x
    text = ["1e-05", "a\"e-0\\", "\x00\x1f\x7f\u2028é😀", "\b\f\n\r\t"]
    assert to_json({"k": text, "e-05": 1.5e-05}) == reference({"k": text, "e-05": 1.5e-05})


@settings(max_examples=2000)
@given(json_values)
def test_any_json_value(value: Any) -> None:
    assert to_json(value) == reference(value)


def test_a_lone_surrogate_is_refused_by_both() -> None:
    with pytest.raises(PydanticSerializationError):
        reference(["\ud800"])
    with pytest.raises(ValueError):
        to_json(["\ud800"])
