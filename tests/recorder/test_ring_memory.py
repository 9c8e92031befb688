"""The flight recorder's ring keeps its memory in place: what a ring holds back equals a plain
model of its chunks (window and cap drops, the store's in-place moves and growth), frozen
copies included, and a ring's allocation stops changing once its first chunk is sealed.
Registers decoded as `raw × scale + offset` (a last-bit away from the decimal) come back
bit for bit and cost what exact decimals cost."""

from __future__ import annotations

import random
import struct
from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.field.sample import Quality
from gateway.recorder.bookkeeping import FIRST, STRIDE, live_times
from gateway.recorder.ring import CHUNK, PointRing, decode_chunk, encode_chunk

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000


def model(items: list[tuple[int, float]], window_s: float, max_samples: int) -> list[
        tuple[int, float]]:
    """What a ring should hold, by its rules: samples are sealed CHUNK at a time; at each seal
    the oldest chunks go while the oldest's newest sample is older than the window from the
    new chunk's newest, or the sealed samples would pass the cap."""
    window_ms = int(window_s * 1000)
    cap = max(max_samples, 2 * CHUNK)
    chunks: list[list[tuple[int, float]]] = []
    open_: list[tuple[int, float]] = []
    for item in items:
        open_.append(item)
        if len(open_) == CHUNK:
            newest = open_[-1][0] // 1_000_000
            while chunks and (chunks[0][-1][0] // 1_000_000 < newest - window_ms
                              or (len(chunks) + 1) * CHUNK > cap):
                chunks.pop(0)
            chunks.append(open_)
            open_ = []
    return [s for chunk in chunks for s in chunk] + open_


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 12 * CHUNK),
       window_s=st.sampled_from([60.0, 300.0, 900.0]), cap=st.integers(0, 8 * CHUNK),
       noisy_from=st.integers(0, 12 * CHUNK))
def test_a_ring_holds_what_its_rules_say(seed: int, steps: int, window_s: float, cap: int,
                                         noisy_from: int) -> None:
    """Constant values first, noise after `noisy_from` (so later chunks outgrow the store the
    first sealed chunk sized), gaps of 0-4 s between samples."""
    rng = random.Random(seed)
    ring = PointRing(window_s, cap)
    items: list[tuple[int, float]] = []
    ts = T0
    frozen: list[tuple[PointRing, list[tuple[int, float]]]] = []
    for i in range(steps):
        ts += rng.randint(0, 4) * S
        value = rng.random() * 1000 if i >= noisy_from else 21.5
        ring.append(ts, value, Quality.GOOD)
        items.append((ts, value))
        if rng.random() < 0.01:
            frozen.append((ring.frozen(), model(items, window_s, cap)))
    want = model(items, window_s, cap)
    got = [(r.ts, r.value) for r in ring.samples()]
    assert got == want and len(ring) == len(want)
    for copy, then in frozen:
        assert [(r.ts, r.value) for r in copy.samples()] == then


def test_a_rings_allocation_stays_put_once_its_first_chunk_is_sealed() -> None:
    """Three windows of a noisy 1 s point (the benchmark's registers: 0.01 steps): from the
    first seal on, the store of sealed chunks and their bookkeeping keep one size while chunks
    come and go (the steps' parts aside: a `bytes` a seal, shared by a block's rings)."""
    rng = random.Random(7)
    ring = PointRing(900.0, int(900 * 1.25) + CHUNK)
    store_sizes = set()
    for second in range(3 * 900):
        ring.append(T0 + second * S, round(20 + rng.randint(-50, 50) / 100, 2), Quality.GOOD)
        if ring.sealed:  # nbytes less the open chunk
            store_sizes.add(ring.nbytes() - open_bytes(ring) - sum(map(len, live_times(ring))))
    assert len(store_sizes) == 1, store_sizes
    assert ring.sealed >= 900 - CHUNK  # a window was kept all along
    assert ring.samples()[-1].ts == T0 + (3 * 900 - 1) * S


def open_bytes(ring: PointRing) -> int:
    """The open chunk's arrays: steps, values (their widths vary) and flags."""
    return CHUNK * (ring._steps.itemsize + ring._values.itemsize + 1)


def bits(value: float) -> int:
    word: int = struct.unpack("<Q", struct.pack("<d", value))[0]
    return word


@settings(max_examples=200, deadline=None)
@given(raws=st.lists(st.integers(-2**15, 2**16), min_size=CHUNK, max_size=CHUNK),
       scale=st.sampled_from([1.0, 0.1, 0.01, 0.001, 0.05, 1 / 3]),
       offset=st.sampled_from([0.0, -40.0, 273.15, 0.3]),
       zero=st.sampled_from([0.0, -0.0]))
def test_decoded_registers_come_back_bit_for_bit(raws: list[int], scale: float, offset: float,
                                                 zero: float) -> None:
    values = [raw * scale + offset for raw in raws]
    values[len(values) // 2] = zero  # a signed zero among them keeps its sign
    ts = array("q", [1_700_000_000_000 + 1000 * i for i in range(CHUNK)])
    got_ts, got, flags = decode_chunk(*encode_chunk(ts, array("d", values), bytes(range(CHUNK))),
                                      ts[0])
    assert got_ts == list(ts) and flags == bytes(range(CHUNK))
    assert [bits(v) for v in got] == [bits(v) for v in values]


def test_a_decoded_register_costs_what_an_exact_decimal_costs() -> None:
    """The benchmark's registers: int16 × 0.01, noise of a few tenths. About one value in
    seven of `raw × 0.01` is not the double nearest raw / 100; such chunks used to fall back
    to the doubles' bits (≈ 970 bytes a chunk in a running gateway)."""
    rng = random.Random(5)
    ts = array("q", [1_700_000_000_000 + 1000 * i + rng.randint(0, 30) for i in range(CHUNK)])
    raws = [2250 + round(rng.gauss(0, 25)) for _ in range(CHUNK)]
    decoded = encode_chunk(ts, array("d", [r * 0.01 for r in raws]), bytes(CHUNK))
    exact = encode_chunk(ts, array("d", [r / 100 for r in raws]), bytes(CHUNK))
    assert sum(r * 0.01 != r / 100 for r in raws) > 0
    assert decoded.times == exact.times
    assert len(decoded.body) <= len(exact.body) + 40 and len(decoded.body) < 3 * CHUNK


def test_an_incidents_ring_reserves_its_window_at_its_pace() -> None:
    """An incident's copy of a point (no sample cap) over 20 minutes at 1 s reserves about a
    window of chunks at its first seal — not FIRST_CHUNKS (256) of them: an incident in a room
    of 200 points would otherwise take ≈ 25 MiB as it opened."""
    ring = PointRing(1200.0, 10**9)
    rng = random.Random(3)
    for i in range(CHUNK):
        ring.append(T0 + i * S, (2250 + rng.randint(-25, 25)) * 0.01, Quality.GOOD)
    store = (ring.nbytes() - open_bytes(ring) - 8 * len(ring._index)  # less the open chunk, the
             - sum(map(len, live_times(ring))))  # chunks' bookkeeping and steps
    assert ring.sealed == CHUNK
    # ≈ 1200 / 127 + 1 chunks of a few hundred bytes, +1/8 (256 of them would be ≈ 110 KB)
    assert 0 < store < 16 * 1024, store
    # a window of chunks' bookkeeping, +1, after the store's offsets
    assert len(ring._index) == FIRST + STRIDE * (1200 // 127 + 2)
