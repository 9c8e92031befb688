"""A seal's deltas narrowed at C level (gateway/recorder/deltas.py) against `narrow` of their
list, and `scaled_body` against the list's way (1ccba84's `encode_scaled`, kept below but for
the names and the steps, which are no longer a body's): the same sealed bytes for any open
chunk of integers ('b', 'h', 'i', any length), deltas of every width included."""

from __future__ import annotations

from array import array
from itertools import pairwise
from operator import sub

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.recorder.chunk import _BODY, _FIRST, SCALES, deflate, narrow, scaled_body
from gateway.recorder.deltas import narrowed_deltas

LIMITS = {"b": 2**7, "h": 2**15, "i": 2**31}


def old_scaled_body(scale: int, ints: array[int], flags: bytes) -> bytes:
    """`encode_scaled` and `_deflate` before, less the steps."""
    m = ints.tolist()
    return old_deflate(len(m), SCALES.index(scale) + 1, m[0], list(map(sub, m[1:], m[:-1])),
                       b"", flags)


def old_deflate(n: int, mode: int, first: int, deltas: list[int], fixes: bytes,
                flags: bytes) -> bytes:
    value_code, value_data = narrow(deltas)
    head = _BODY.pack(n, mode, value_code)
    return deflate(b"".join((head, _FIRST.pack(first), value_data, fixes, flags)))


@st.composite
def open_chunks(draw: st.DrawFn) -> array[int]:
    """Integers of one type, near one another (a register's noise) or anywhere in the type."""
    typecode = draw(st.sampled_from("bhi"))
    limit = LIMITS[typecode]
    n = draw(st.sampled_from([1, 2, 3, 8, 16, 127, 128]))
    centre = draw(st.integers(-limit, limit - 1))
    spread = draw(st.sampled_from([0, 1, 60, 130, 40_000, 2 * limit]))
    items = [draw(st.integers(max(-limit, centre - spread), min(limit - 1, centre + spread)))
             for _ in range(n)]
    if n > 1 and draw(st.booleans()):  # the extremes of the type, and jumps between them
        items[draw(st.integers(0, n - 1))] = draw(st.sampled_from([-limit, limit - 1]))
    return array(typecode, items)


@settings(max_examples=400, deadline=None)
@given(ints=open_chunks())
def test_deltas_narrow_as_their_list_does(ints: array[int]) -> None:
    m = ints.tolist()
    found = narrowed_deltas(ints)
    wanted = narrow(list(map(sub, m[1:], m[:-1])))
    if found is not None:
        assert found == wanted
    else:  # left to `narrow`: a wider width than the items', or no deltas
        assert len(ints) < 2 or [1, 2, 4, 8][wanted[0]] > ints.itemsize


@settings(max_examples=200, deadline=None)
@given(ints=open_chunks(), scale=st.sampled_from(SCALES), flag=st.integers(0, 255))
def test_a_seal_makes_the_bytes_it_made_before(ints: array[int], scale: int, flag: int) -> None:
    flags = bytes([flag]) * len(ints)
    assert scaled_body(scale, ints, flags) == old_scaled_body(scale, ints, flags)


def test_a_register_s_noise_is_narrowed_here() -> None:
    """The common case does not fall back: 'h' values, deltas of one byte."""
    ints = array("h", [2283 + (i * 37) % 101 - 50 for i in range(128)])
    assert narrowed_deltas(ints) == narrow([b - a for a, b in pairwise(ints)])
    assert narrowed_deltas(ints) is not None
