"""The open chunk keeps decimals as scaled integers in the narrowest array that holds them
(gateway/recorder/ring.py `_values`, `_scale`): what a ring seals and reads back is, bit for bit,
what the ring that kept doubles sealed and read back — its reference here seals each chunk with
`encode_steps` of the doubles (`float(value)`, as that ring stored them) — whatever the values:
decimals of every scale, registers a last bit off, integers, flags, strings, nan, ±inf, -0.0,
subnormals, values past ±2³¹ scaled; and an open chunk of decimals takes a quarter of the
memory (or less) its doubles took."""

from __future__ import annotations

import itertools
import math
import struct
import sys
from array import array
from functools import partial

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.field.sample import Quality, Sample, Value
from gateway.recorder.chunk import Sealed, decode_chunk, encode_steps
from gateway.recorder.ring import CHUNK, FlightRecorder, PointRing, Recorded

T0 = 1_700_000_000_000_000_000
_QUALITY = {q: i for i, q in enumerate((Quality.GOOD, Quality.STALE, Quality.COMM_ERROR,
                                         Quality.INVALID))}


def bits(value: float) -> int:
    word: int = struct.unpack("<Q", struct.pack("<d", value))[0]
    return word


class DoublesRing:
    """The ring's sealing before this change, for reference: the open chunk kept each value as
    a double (`float` of an int or a flag, a string's index in its table) and a seal handed
    `encode_steps` those doubles. No window, no cap."""

    def __init__(self) -> None:
        self.ms: list[int] = []
        self.numbers: list[float] = []
        self.flags: list[int] = []
        self.strings: list[str] = []
        self.blobs: list[Sealed] = []

    def append(self, ts_ns: int, value: Value, quality: Quality) -> None:
        if value is None:
            kind, number = 3, 0.0
        elif isinstance(value, bool):
            kind, number = 2, float(value)
        elif isinstance(value, int):
            kind, number = 1, float(value)
        elif isinstance(value, float):
            kind, number = 0, value
        else:
            if value not in self.strings and len(self.strings) < 64:
                self.strings.append(value)
            kind = 4
            number = float(self.strings.index(value) if value in self.strings else 64)
        self.ms.append(ts_ns // 1_000_000)
        self.numbers.append(number)
        self.flags.append(_QUALITY[quality] | kind << 2)
        if len(self.numbers) % CHUNK == 0:
            ms = self.ms[-CHUNK:]
            self.blobs.append(encode_steps([b - a for a, b in itertools.pairwise(ms)],
                                           array("d", self.numbers[-CHUNK:]),
                                           bytes(self.flags[-CHUNK:])))


def scaled(mantissa: int, digits: int) -> float:
    """A decimal with `digits` digits after the point: `mantissa` × 10⁻ᵈⁱᵍⁱᵗˢ."""
    power: int = 10**digits
    return mantissa / power


def sealed_blobs(ring: PointRing) -> list[Sealed]:
    """The ring's sealed chunks: their bodies from its store, their steps' parts."""
    return ring.sealed_chunks()


decimals = st.builds(lambda m, k: m / 10**k, st.integers(-2**34, 2**34), st.integers(0, 4))
small_decimals = st.builds(lambda m, k: m / 10**k, st.integers(-40_000, 40_000),
                           st.integers(0, 3))
registers = st.builds(lambda raw, scale, offset: raw * scale + offset,
                      st.integers(-2**15, 2**16), st.sampled_from([1.0, 0.1, 0.01, 0.001, 0.05]),
                      st.sampled_from([0.0, -40.0, 273.15]))
specials = st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, -5e-324, 1e308,
                            2.0**31, -(2.0**31), 2.0**31 / 1000, 2147483.647, -2147483.648,
                            214748364.8, 12.7, 12.8, -12.8, -12.9, 327.67, 327.68, 1e-7])
ints = st.one_of(st.integers(-300, 300), st.integers(-2**53, 2**53),
                 st.sampled_from([127, 128, -128, -129, 32767, 32768, 2**31 - 1, 2**31,
                                  -(2**31), -(2**31) - 1, 2**31 // 1000, 2**31 // 1000 + 1]))
others = st.one_of(st.none(), st.booleans(), st.sampled_from(["ok", "fault"]))
any_value = st.one_of(small_decimals, decimals, registers, specials, ints, others,
                      st.floats())


@st.composite
def runs(draw: st.DrawFn) -> list[Value]:
    """Runs of one kind of value (a chunk of one point's decimals stays in integers, then
    widens, rescales or falls back), with strays among them."""
    out: list[Value] = []
    for _ in range(draw(st.integers(1, 4))):
        digits = draw(st.integers(0, 3))  # a register of one scale: 10⁻ᵏ steps
        one_scale = st.integers(-40_000, 40_000).map(partial(scaled, digits=digits))
        kind = draw(st.sampled_from([one_scale, one_scale, small_decimals, decimals,
                                     registers, ints, others, any_value]))
        length = draw(st.integers(1, 2 * CHUNK))
        out += draw(st.lists(kind, min_size=length, max_size=length))
        for _ in range(draw(st.integers(0, 3))):
            out.insert(draw(st.integers(0, len(out))), draw(any_value))
    return out


@settings(max_examples=150, deadline=None)
@given(values=runs(), freeze_at=st.integers(0, 8 * CHUNK), data=st.data())
def test_what_a_ring_seals_and_reads_back_is_what_the_doubles_ring_did(
        values: list[Value], freeze_at: int, data: st.DataObject) -> None:
    ring = PointRing(window_s=10**9, max_samples=10**9)
    recorder = FlightRecorder(10**9, interval_of=lambda point: 1e-9)
    reference = DoublesRing()
    frozen = None
    for i, value in enumerate(values):
        ts = T0 + i * 1_000_000_000 + data.draw(st.integers(0, 30)) * 1_000_000
        quality = data.draw(st.sampled_from(list(Quality)))
        ring.append(ts, value, quality)
        recorder.record([Sample("d.p", value, ts, quality)])
        reference.append(ts, value, quality)
        if i == freeze_at:
            frozen = ring.frozen(), len(reference.numbers)
    assert list(sealed_blobs(ring)) == reference.blobs  # the same chunks, byte for byte
    assert list(sealed_blobs(recorder.rings["d.p"])) == reference.blobs
    want = [bits(n) for n in reference.numbers]
    for source, got in ((ring, ring.samples()),
                        (recorder.rings["d.p"], recorder.samples("d.p"))):
        assert len(got) == len(values)
        for r, value in zip(got, values, strict=True):
            assert type(r.value) is type(value) or isinstance(value, str)
        assert [bits(n) for n in numbers_of(source, got)] == want
    if frozen is not None:
        copy, n = frozen
        assert [bits(v) for v in numbers_of(copy, copy.samples())] == want[:n]


def numbers_of(ring: PointRing, got: list[Recorded]) -> list[float]:
    """The doubles a ring reads back (sealed chunks decoded, the open chunk's values divided
    by its scale): what `samples()` turns into values."""
    out: list[float] = []
    for blob, first in zip(sealed_blobs(ring), ring.chunk_index()[1::3], strict=True):
        out += decode_chunk(*blob, first)[1]
    n = ring._open
    values = ring._values[:n].tolist()
    out += [v / ring._scale for v in values] if ring._scale else values
    assert len(out) == len(got)
    return out


def test_every_float_kind_reads_back_bit_for_bit() -> None:
    """Through `samples()` itself: the sign of zero, nan, infinities, subnormals, decimals of
    every scale and registers a last bit off, in the open chunk and sealed."""
    values = [22.83, 22.830000000000002, 0.0, -0.0, 12.8, 5e-324, math.inf, 0.1, 2147483.647,
              214748.3648, -12.9, math.nan, 1e-7, 327.68, 45.5, 2283 * 0.01, -math.inf, 7.0]
    for count in (len(values), CHUNK + len(values)):
        ring = PointRing(window_s=10**6, max_samples=10**6)
        data = [values[i % len(values)] for i in range(count)]
        for i, v in enumerate(data):
            ring.append(T0 + i * 10**9, v, Quality.GOOD)
        got = [r.value for r in ring.samples()]
        assert [bits(v) for v in got] == [bits(v) for v in data]  # type: ignore[arg-type]


def test_an_open_chunk_of_decimals_takes_a_quarter_of_the_doubles() -> None:
    """A register at 0.01 (two bytes a value) and a flag (one byte) against noise (doubles),
    half a chunk in."""
    rings = {kind: PointRing(window_s=900.0, max_samples=1253) for kind in ("reg", "flag",
                                                                            "noise")}
    for i in range(CHUNK // 2):
        ts = T0 + i * 10**9
        rings["reg"].append(ts, (2250 + i % 50) / 100, Quality.GOOD)
        rings["flag"].append(ts, i % 9 == 0, Quality.GOOD)
        rings["noise"].append(ts, math.pi * i, Quality.GOOD)
    noise = sys.getsizeof(rings["noise"]._values)
    assert noise - sys.getsizeof(rings["reg"]._values) == 6 * CHUNK
    assert noise - sys.getsizeof(rings["flag"]._values) == 7 * CHUNK


def test_a_chunk_of_doubles_goes_back_to_integers_at_its_seal() -> None:
    """A nan in a register's chunk keeps that chunk in doubles; the next chunk is integers
    again (in the array the ring had), and noise stays in doubles without re-allocating."""
    ring = PointRing(window_s=900.0, max_samples=1253)
    for i in range(3 * CHUNK + 2):
        ring.append(T0 + i * 10**9, math.nan if i == 5 else (2250 + i % 50) / 100,
                    Quality.GOOD)
        if i == 6:
            assert ring._values.typecode == "d"
    assert ring._values.typecode == "h" and ring._scale == 100
    noise = PointRing(window_s=900.0, max_samples=1253)
    seen = set()
    for i in range(3 * CHUNK):
        noise.append(T0 + i * 10**9, math.pi * i, Quality.GOOD)  # (0.0 first: integers)
        if i:
            seen.add(id(noise._values))
    assert noise._values.typecode == "d" and len(seen) == 1


def test_each_chunk_finds_its_own_scale() -> None:
    """A chunk of hundredths, then one of tenths, then whole numbers, then tenths again: each
    sealed at the scale its own values need (what `encode_steps` of the doubles picks)."""
    ring = PointRing(window_s=10**6, max_samples=10**6)
    reference = DoublesRing()
    values = ([(2250 + i) / 100 for i in range(CHUNK)] + [i / 10 for i in range(CHUNK)]
              + [float(i % 7) for i in range(CHUNK)] + [(i % 3) / 10 for i in range(CHUNK)])
    for i, value in enumerate(values):
        ring.append(T0 + i * 10**9, value, Quality.GOOD)
        reference.append(T0 + i * 10**9, value, Quality.GOOD)
    assert list(sealed_blobs(ring)) == reference.blobs
