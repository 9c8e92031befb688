"""The flight recorder's chunk codec (gateway/recorder/chunk.py): the whole-chunk passes pick
the decimal mode, first value, steps and fix bytes the per-value reference loop picks (the
ring's first codec, kept here), deltas go in the narrowest width, the three-value test never
turns down a scale that fits, and any chunk comes back bit for bit."""

from __future__ import annotations

import itertools
import math
import struct
from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.recorder.chunk import (
    SCALES,
    _near,
    decode_chunk,
    encode_chunk,
    encode_steps,
    narrow,
    pack_values,
    unshuffle,
)

_DOUBLE = struct.Struct("<d")
_WORD = struct.Struct("<Q")


def bits(value: float) -> int:
    word: int = _WORD.unpack(_DOUBLE.pack(value))[0]
    return word


def reference_pack(values: array[float]) -> tuple[int, list[int], bytes]:
    """The ring's first `_pack_values` (a Python loop per value): (mode, words, fixes), words
    being the first m and its deltas, or the XOR-ed bits in mode 0."""
    raw_bits = array("Q", values.tobytes())
    for mode, scale in enumerate(SCALES, start=1):
        scaled: list[int] = []
        fixes: bytearray | None = None
        try:
            for i, v in enumerate(values):
                m = round(v * scale)
                if abs(m) >= 2**62:
                    break
                exact = m / scale
                if exact != v or (v == 0.0 and raw_bits[i]):
                    fix = raw_bits[i] ^ bits(exact)
                    if fix > 0xFF:
                        break
                    if fixes is None:
                        fixes = bytearray(len(values))
                    fixes[i] = fix
                scaled.append(m)
            else:
                words = [scaled[0]] + [b - a for a, b in itertools.pairwise(scaled)]
                if fixes is None:
                    return mode, words, b""
                return mode + len(SCALES), words, bytes(fixes)
        except (OverflowError, ValueError):
            break
    return 0, [raw_bits[0]] + [b ^ a for a, b in itertools.pairwise(raw_bits)], b""


specials = st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, -5e-324,
                            2.2250738585072014e-308, 1e308, -1e308, 2.0**62, 2.0**62 / 1000,
                            2.0**59, -(2.0**59), 4611686018427387.5, 0.5, 2.5, 1e-7,
                            0.49999999999999994, -0.49999999999999994, 0.125, 0.0125, -2.5,
                            2.0**40, 2.0**40 / 100, 2.0**40 - 0.5, 2.0**52 + 1, 2.0**53 + 2])
decimals = st.builds(lambda m, k: m / 10**k, st.integers(-2**40, 2**40), st.integers(0, 4))
registers = st.builds(lambda raw, scale, offset: raw * scale + offset,
                      st.integers(-2**15, 2**16), st.sampled_from([1.0, 0.1, 0.01, 0.001, 0.05]),
                      st.sampled_from([0.0, -40.0, 273.15, 0.3]))
wholes = st.builds(float, st.one_of(st.integers(-2**54, 2**54),  # past 2⁴⁰: `round`
                                    st.integers(2**52, 2**54), st.integers(2**39, 2**41)))
ties = st.builds(lambda m, k: (m + 0.5) / 10**k, st.integers(-2**20, 2**20), st.integers(0, 3))
any_float = st.one_of(st.floats(), specials, decimals, registers, wholes, ties)


@st.composite
def chunks_of_values(draw: st.DrawFn) -> array[float]:
    """Mostly values of one kind (a chunk of a register, of a decimal, of noise, of one
    value), some mixed, 1-128 of them."""
    kind = draw(st.sampled_from([decimals, registers, st.floats(), wholes, ties, any_float,
                                 None]))
    if kind is None:  # one value all along (a status code, a contact)
        values = [draw(any_float)] * draw(st.integers(1, 128))
    else:
        values = draw(st.lists(kind, min_size=1, max_size=128))
    if draw(st.booleans()):
        for _ in range(draw(st.integers(0, 3))):
            values[draw(st.integers(0, len(values) - 1))] = draw(any_float)
    return array("d", values)


@settings(max_examples=400, deadline=None)
@given(chunks_of_values())
def test_the_chunk_passes_pack_what_the_per_value_loop_packs(values: array[float]) -> None:
    mode, first, deltas, fixes = pack_values(values)
    want_mode, want_words, want_fixes = reference_pack(values)
    assert mode == want_mode
    if mode:
        assert [first, *deltas] == want_words and fixes == want_fixes
    else:
        assert (first, deltas, fixes) == (0, [], b"")


@settings(max_examples=400, deadline=None)
@given(any_float, st.sampled_from(SCALES))
def test_the_three_value_test_never_turns_down_a_value_that_fits(value: float,
                                                                 scale: int) -> None:
    try:
        m = round(value * scale)
    except (OverflowError, ValueError):
        return
    if abs(m) < 2**62 and bits(value) ^ bits(m / scale) <= 0xFF:
        assert _near(value, scale)


def test_subnormals_a_few_units_off_zero_still_fit() -> None:
    for value in (5e-324, 255 * 5e-324):  # (-5e-324 has the sign bit m / scale lacks)
        assert _near(value, 1) and reference_pack(array("d", [value]))[0] == 5


def test_large_and_halfway_values_pack_as_round_would() -> None:
    """Past 2⁵², x + 0.5 rounds to even: floor(x + 0.5) is not round(x) for odd x."""
    for values in ([2.0**52 + 1, 2.0**52 + 3, 2.0**52 + 5], [2.0**40 + 1, 2.0**40 + 3],
                   [0.49999999999999994, 1.0], [0.125, 0.375, 0.625], [-2.5, -1.5, 0.5],
                   [(2**39 + 0.5) / 100, 3.0]):
        chunk = array("d", values)
        mode, first, deltas, fixes = pack_values(chunk)
        want_mode, want_words, want_fixes = reference_pack(chunk)
        assert (mode, [first, *deltas] if mode else [], fixes) == (
            want_mode, want_words if want_mode else [], want_fixes), values


@given(st.lists(st.integers(-2**63, 2**63 - 1), min_size=1, max_size=130))
def test_deltas_go_in_the_narrowest_width(ints: list[int]) -> None:
    code, data = narrow(ints)
    width = 1 << code
    assert all(-(1 << (8 * width - 1)) <= i < 1 << (8 * width - 1) for i in ints)
    if code:
        half = 1 << (4 * width - 1)
        assert not all(-half <= i < half for i in ints)
    got = array("bhiq"[code], unshuffle(data, width))
    assert got.tolist() == ints


@given(st.lists(st.integers(-2**31, 2**31 - 1), min_size=1, max_size=130),
       st.lists(st.integers(-2**15, 2**15 - 1), min_size=1, max_size=130))
def test_an_array_narrows_as_its_list_however_often_asked(ints: list[int], other: list[int]
                                                          ) -> None:
    """`narrow` remembers the last array it packed (a block's rings share their steps): asked
    again, or after another array, of another type with the same bytes, or a list, it gives
    what the items as a list give."""
    same_bytes = array("h", array("i", ints).tobytes())  # another type, the same bytes
    arrays = [array("i", ints), array("i", ints), same_bytes, array("i", ints),
              array("h", other), array("h", other), array("i", ints)]
    for items in arrays:
        want = narrow(items.tolist())
        assert narrow(items) == want


@settings(max_examples=300, deadline=None)
@given(values=chunks_of_values(), data=st.data(),
       step=st.sampled_from([st.integers(0, 100), st.integers(900, 1100),
                             st.integers(-2**31, 2**31), st.integers(-2**40, 2**40)]))
def test_any_chunk_comes_back_bit_for_bit(values: array[float], data: st.DataObject,
                                          step: st.SearchStrategy[int]) -> None:
    n = len(values)
    first = data.draw(st.integers(-2**50, 2**50))
    ts = list(itertools.accumulate(data.draw(st.lists(step, min_size=n - 1, max_size=n - 1)),
                                   initial=first))
    flags = bytes(data.draw(st.lists(st.integers(0, 255), min_size=n, max_size=n)))
    steps = [b - a for a, b in itertools.pairwise(ts)]
    for sealed in (encode_chunk(array("q", ts), values, flags),
                   encode_steps(array("q", steps), values, flags),
                   encode_steps(steps, values, flags)):
        got_ts, got_values, got_flags = decode_chunk(*sealed, ts[0])
        assert got_ts == ts and got_flags == flags
        assert [bits(v) for v in got_values] == [bits(v) for v in values]
