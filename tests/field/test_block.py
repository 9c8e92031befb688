"""The compiled block decoder gives exactly the samples of the point-by-point reference
(`register_samples`): same ids, values and their types, qualities and order, for every data
type, byte order, scale, offset, range, flag and overlap, and for replies that do not fit."""

from __future__ import annotations

import math
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.profile import WIDTH_REGISTERS, DataType
from gateway.field.block import BlockDecoder
from gateway.field.planner import ReadRequest, plan_requests
from gateway.field.readings import register_samples
from gateway.field.sample import Quality, Sample
from tests.helpers import bound, calls_made

ORDERS = ["ABCD", "BADC", "CDAB", "DCBA"]
NUMERIC = [t for t in DataType if t not in (DataType.BOOL, DataType.STRING)]
INTEGER = [t for t in NUMERIC if not t.startswith("float")]


def _key(sample: Sample) -> tuple[Any, ...]:
    """A sample compared bit for bit: the value's type and repr (NaN equals NaN here, -0.0 is
    not 0.0)."""
    value = sample.value
    return (sample.point, type(value), repr(value), sample.ts, sample.quality)


@st.composite
def point_specs(draw: st.DrawFn, index: int) -> dict[str, Any]:
    kind = draw(st.sampled_from([*NUMERIC, DataType.BOOL, DataType.STRING]))
    spec: dict[str, Any] = {"name": f"p{index}", "register": "holding",
                            "address": draw(st.integers(0, 24)), "type": kind.value,
                            "order": draw(st.sampled_from(ORDERS))}
    if kind is DataType.BOOL:
        spec["bit"] = draw(st.integers(0, 15))
        spec["invert"] = draw(st.booleans())
    elif kind is DataType.STRING:
        spec["length"] = draw(st.integers(1, 4))
    else:
        spec["scale"] = draw(st.sampled_from([1.0, 0.1, 0.01, -0.5, 10.0]))
        spec["offset"] = draw(st.sampled_from([0.0, 0.5, -40.0, 3.0]))
        if draw(st.booleans()):
            low = draw(st.floats(-1e6, 1e6))
            spec["valid"] = {"min": low, "max": low + draw(st.floats(0, 1e6))}
        if kind in INTEGER and draw(st.booleans()):
            bits = draw(st.sets(st.integers(0, 16 * WIDTH_REGISTERS[kind] - 1), max_size=3))
            spec["flags"] = [{"bit": b, "name": f"f{b}", "active_low": draw(st.booleans())}
                             for b in sorted(bits)]
    return spec


@st.composite
def requests(draw: st.DrawFn) -> list[ReadRequest]:
    n = draw(st.integers(1, 8))
    points = bound([draw(point_specs(i)) for i in range(n)])
    plan = plan_requests(points, max_gap=draw(st.integers(0, 10)))
    # overlapping points (a word and a bit of it, a float and its low word) in one request
    merged = [ReadRequest(r.register, r.address, r.count, r.points) for r in plan]
    if len(merged) > 1 and draw(st.booleans()):
        first, last = merged[0], merged[-1]
        merged = [ReadRequest(first.register, first.address, last.end - first.address,
                              tuple(p for r in merged for p in r.points))]
    return merged


@st.composite
def runs(draw: st.DrawFn) -> list[ReadRequest]:
    """A request of many points alike (one scaling, most of them read by the block one after
    another: what the decoder takes as runs, `block._Run`), now and then one unlike them."""
    kinds = draw(st.lists(st.sampled_from(NUMERIC), min_size=1, max_size=3))
    shared: dict[str, Any] = {
        "scale": draw(st.sampled_from([1.0, 0.1, 0.01, 0.001, -0.5, 2.0, 1e-300])),  # (0: refused)
        "offset": draw(st.sampled_from([0.0, -0.0, 0.5, -40.0, 1e308]))}
    if draw(st.booleans()):
        low = draw(st.sampled_from([-1e6, -40.0, 0.0, 10.0]))
        shared["valid"] = {"min": low, "max": low + draw(st.sampled_from([0.0, 50.0, 1e9]))}
    specs: list[dict[str, Any]] = []
    address, count = 0, draw(st.integers(4, 40))
    while address <= 120 and len(specs) < count:
        kind = draw(st.sampled_from(kinds))
        spec = {"name": f"p{len(specs)}", "register": "holding", "address": address,
                "type": kind.value, **shared}
        unlike = draw(st.integers(0, 9))
        if unlike == 0 and kind in INTEGER:
            spec["flags"] = [{"bit": 0, "name": f"f{len(specs)}"}]
        elif unlike == 1:
            spec["scale"] = 3.0
        elif unlike == 2:
            spec["order"] = "DCBA"
        specs.append(spec)
        address += WIDTH_REGISTERS[kind] + draw(st.sampled_from([0, 0, 0, 1]))
    return plan_requests(bound(specs), max_registers=125, max_gap=1)


WORDS = st.one_of(st.integers(0, 0xFFFF), st.sampled_from(
    [0, 0x7F80, 0xFF80, 0x7FC0, 0x7FF0, 0xFFF0, 0x8000, 0xFFFF]))
"""Register words, the halves of floats' infinities and NaNs and the extremes among them."""


@settings(max_examples=500, deadline=None)
@given(plan=st.one_of(requests(), runs()), data=st.data())
def test_block_decoder_equals_reference(plan: list[ReadRequest], data: st.DataObject) -> None:
    for request in plan:
        words = WORDS
        registers = data.draw(st.one_of(
            st.lists(words, min_size=request.count, max_size=request.count),
            st.lists(words, max_size=request.count + 2),  # a short or long reply
            st.lists(st.integers(-5, 0x10005), min_size=request.count,
                     max_size=request.count)))  # words outside 16 bits
        expected: list[Sample] = []
        got: list[Sample] = []
        try:
            register_samples(request, registers, 7, expected)
        except Exception as exc:  # words outside 16 bits in a multi-register value
            with pytest.raises(type(exc)):
                BlockDecoder(request)(registers, 7, got)
            continue
        BlockDecoder(request)(registers, 7, got)
        assert [_key(s) for s in got] == [_key(s) for s in expected]


def test_a_block_of_scaled_int16_in_one_request() -> None:
    points = bound([{"name": f"r{i}", "register": "holding", "address": i, "type": "int16",
                     "scale": 0.01, "valid": {"min": -10, "max": 50}} for i in range(100)])
    (request,) = plan_requests(points)
    registers = [(i * 97) % 0x10000 for i in range(100)]
    registers[3] = 0xFFFF  # -1 → -0.01
    registers[4] = 6000  # 60.0 > 50: kept, invalid
    out: list[Sample] = []
    BlockDecoder(request)(registers, 5, out)
    assert len(out) == 100
    assert out[3] == Sample("dev1.r3", -0.01, 5, Quality.GOOD)
    assert out[4] == Sample("dev1.r4", 60.0, 5, Quality.INVALID)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["float32", "float64"]), order=st.sampled_from(ORDERS),
       bits=st.one_of(st.integers(0, 2**64 - 1),
                      st.sampled_from([0x7F800000, 0xFF800000, 0x7FC00000, 0xFFFFFFFF,
                                       0x7FF0000000000000, 0xFFF0000000000000])),
       scale=st.sampled_from([1.0, 0.1, 10.0]))
def test_a_float_register_is_good_only_when_finite(kind: str, order: str, bits: int,
                                                    scale: float) -> None:
    """A float register of no valid range: an infinity (0x7F800000 …) or NaN is `invalid`, a
    finite number good — an infinite temperature must not satisfy a heat rule."""
    width = 2 if kind == "float32" else 4
    bits &= (1 << 16 * width) - 1
    words = [(bits >> 16 * (width - 1 - i)) & 0xFFFF for i in range(width)]
    (request,) = plan_requests(bound([{"name": "f", "register": "holding", "address": 0,
                                       "type": kind, "order": order, "scale": scale}]))
    for decode in (BlockDecoder(request), lambda r, ts, out: register_samples(request, r, ts,
                                                                                out)):
        out: list[Sample] = []
        decode(words, 1, out)
        [sample] = out
        assert isinstance(sample.value, float)
        assert (sample.quality is Quality.GOOD) is math.isfinite(sample.value)


def test_points_of_a_request_share_what_they_have_the_same() -> None:
    """A request of 100 int16 registers at 0.01 costs the decoder less than 25 bytes a point
    (two tuples a point and a `Struct` of 100 codes were 258; in columns 41; as one run of
    points alike, their ids in one tuple, 16); points share their scaling only where it is the
    same bit for bit: an offset of -0.0 keeps its sign."""
    points = bound([{"name": f"r{i}", "register": "holding", "address": i, "type": "int16",
                     "scale": 0.01} for i in range(100)])
    (request,) = plan_requests(points)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        decoder = BlockDecoder(request)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 25 * 100, held
    out: list[Sample] = []
    decoder([2283] * 100, 1, out)
    assert [s.value for s in out] == [22.83] * 100
    zeros = bound([{"name": f"z{i}", "register": "holding", "address": i, "type": "int16",
                    "scale": -0.5, "offset": offset} for i, offset in enumerate([0.0, -0.0])])
    (request,) = plan_requests(zeros)
    got: list[Sample] = []
    BlockDecoder(request)([0, 0], 1, got)
    expected: list[Sample] = []
    register_samples(request, [0, 0], 1, expected)
    assert [math.copysign(1.0, s.value) for s in got] == [1.0, -1.0]  # type: ignore[arg-type]
    assert [_key(s) for s in got] == [_key(s) for s in expected]



def test_a_run_of_registers_decodes_in_a_few_calls_not_some_per_point() -> None:
    """A device's 125 int16 registers at ×0.01 (the whole-process benchmark's): decoded as one
    run (`block._Run`: `map`s over the block), not a `Sample` made and appended per point in
    Python (about 375 calls: 3 µs a point on the development VM's interpreter)."""
    points = bound([{"name": f"r{i}", "register": "holding", "address": i, "type": "int16",
                     "scale": 0.01, "quantity": "temperature"} for i in range(125)])
    (request,) = plan_requests(points)
    decoder = BlockDecoder(request)
    words = [(1500 + 37 * i) % 0x10000 for i in range(125)]
    got: list[Sample] = []
    calls = calls_made(lambda: decoder(words, 1, got))
    expected: list[Sample] = []
    register_samples(request, words, 1, expected)
    assert [_key(s) for s in got] == [_key(s) for s in expected]
    assert sum(calls.values()) < 20, calls
