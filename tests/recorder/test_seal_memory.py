"""A seal's deflate takes little memory: sealing a chunk (a register's scaled decimals, or
doubles) peaks under 128 KiB of allocations (tracemalloc sees zlib's own): zlib's state in
blocks of at most 16 KiB and Python's 32 KiB output buffer, where `zlib.compress` took ~300
KiB, four blocks of 64 KiB, at every seal — 15 a second at 2,000 points, blocks for which
glibc's heap rarely had a free run, so it grew (docs/performance.md, "Flat after warm-up: the
C heap"). The sealed chunks are the bytes `zlib.compress(raw, 6, wbits=-15)` makes of the
same layout, and decode as ever."""

from __future__ import annotations

import random
import tracemalloc
import zlib
from collections.abc import Callable

import pytest

from gateway.field.sample import Quality, Value
from gateway.recorder.ring import CHUNK, PointRing, decode_chunk

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000


def register(rng: random.Random) -> Value:
    return (2250 + round(rng.gauss(0, 25))) / 100


def noise(rng: random.Random) -> Value:
    return rng.gauss(22.5, 0.25)


def filled(kind: Callable[[random.Random], Value], rng: random.Random, n: int) -> PointRing:
    ring = PointRing(900.0, 1253)
    for i in range(n):
        ring.append(T0 + i * S + rng.randint(0, 30_000_000), kind(rng), Quality.GOOD)
    return ring


@pytest.mark.parametrize("kind", [register, noise])
def test_a_seal_peaks_under_128_kib(kind: Callable[[random.Random], Value]) -> None:
    rng = random.Random(3)
    ring = filled(kind, rng, 2 * CHUNK - 1)  # the first seal (the store's top-up) is behind
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        ring.append(T0 + 2 * CHUNK * S, kind(rng), Quality.GOOD)  # the second seal
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert ring.sealed == 2 * CHUNK
    assert peak < 128 * 1024, peak


@pytest.mark.parametrize("kind", [register, noise])
def test_sealed_chunks_are_zlib_compress_bytes_and_decode(
        kind: Callable[[random.Random], Value]) -> None:
    rng = random.Random(4)
    ring = filled(kind, rng, 6 * CHUNK)
    for sealed, first in zip(ring.sealed_chunks(), ring.chunk_index()[1::3], strict=True):
        for part in sealed:
            raw = zlib.decompress(part, wbits=-15)
            assert zlib.compress(raw, 6, wbits=-15) == part
        ts, values, flags = decode_chunk(*sealed, first)
        assert len(ts) == len(values) == len(flags) == CHUNK and ts[0] == first
    assert len(ring.samples()) == len(ring) == 6 * CHUNK
