"""The values of a flight-recorder ring's open chunk (gateway/recorder/ring.py): the chunk's
decimals as integers `value × scale` in the narrowest array that holds them ('b', 'h', 'i'),
the scale being 1 or the first of `chunk.SCALES` at which one of the chunk's values is
m / scale bit for bit (`chunk.exact_scale`, the codec's own test), or doubles from a value
that is no such decimal (noise, nan, ±inf, -0.0, past ±2³¹ scaled) to the chunk's seal.

A register at 0.01 then takes 2 bytes a value instead of 8, a flag or a status code 1; the
ring's `record()` keeps a value that fits in place and calls `spill` for one that does not.
From the open chunk's first `PROBE` samples the ring reserves a first store of sealed chunks
(`chunk_size`, `store_bytes`) and their bookkeeping (`window_chunks`); its first sealed chunk
sizes the store (`STORE_MARGIN`), and later chunks that outgrow it grow it by `STORE_STEP`.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from itertools import repeat
from operator import truediv
from typing import Any

from gateway.recorder.chunk import exact_scale, scaled_body, values_body

CHUNK = 128
"""Samples per sealed chunk (the open chunk holds at most this many, uncompressed)."""
PROBE = 16
"""At its `PROBE`th sample a ring reserves its store of sealed chunks (`chunk_size`)."""
PROBE_SHARE = 0.85
"""What the store reserved at the `PROBE`th sample holds of a window of the estimated chunks'
bodies: the estimate runs 4-42 % over the first sealed chunk's body at p2000 (registers at 0.01:
tests/bench/bench_recorder.py, 5th to 95th percentile, median 5 %) and from a third under to
twice over on its plausible mix (median 8 % under: bodies of a few dozen bytes, flags that do
not change in their first samples), which sizes the store (`STORE_MARGIN`), so what the probe
reserves is a lower bound for most rings: memory taken in a ring's first seconds (not all at
its first seal), and freed at the first seal for the store made to measure. (With the steps in
each chunk, before 7 Dec, it ran 0-30 % and 0-42 % over.)"""
STORE_MARGIN = 1.0625
"""At its first seal a ring's store is made anew for a window of chunks like that one, + 1/16:
the most a ring's live chunks take over two hours is 0.98-1.03 of a window of its first chunk
at p2000 (tests/bench/bench_recorder.py: 5th-95th percentile; 1.06 at most, 1 ring of 2,000
past 1/16), 0.97-1.08 on the plausible mix (262 past it), 0.98-1.06 on the simulator's site
(43 past it). A tighter margin holds less but makes more stores anew later, and the blocks
they leave behind held more of the process than the margin saved (+4 %: 599 re-allocations
on the mix, whose RSS after two hours was 0.15 MiB over this). Those figures are of chunks
with their steps; of bodies alone (7 Dec), 11 of the 2,000 p2000 stores are made anew after
their first seal in 20 minutes (0 before), for 12 KiB of chunks copied."""
STORE_STEP = 16
"""A chunk that does not fit the store (its live chunks and the new one) makes it anew at what
they take + 1/16 of its length: allocated to size, the live chunks copied once. How much the
step is hardly changes how often: a ring's chunks that outgrow its first seal's window mostly
do so once."""
FIRST_CHUNKS = 256
"""Most chunks a ring's store reserves (a 15-minute window at 50 ms polls is 141 chunks)."""
WIDER = {"b": "h", "h": "i"}
"""Each integer array type to the next wider one ('i' is the widest: past ±2³¹ the chunk keeps
doubles, as integers past 2⁵³ are)."""


def zeros(typecode: str) -> array[Any]:
    """An open chunk's array of `CHUNK` zeros, allocated to size (`array(code, bytes(n))`
    over-allocates by a sixteenth)."""
    return array(typecode, [0]) * CHUNK


def spill(values: array[Any], scale: int, at: int, number: float) -> tuple[array[Any], int]:
    """(values, scale) once `number` is the chunk's `at`-th value, `number` being an int or
    flag that does not fit `values`, or a float that is not m / `scale` bit for bit (`scale`
    not 0): the chunk takes the first scale at which `number` is exact if that is larger (its
    integers multiplied up, in place), a wider array if they need one, or doubles from here to
    its seal (scale 0)."""
    kept = values[:at].tolist()
    wanted = scale
    if type(number) is float:
        wanted = exact_scale(number)
        if wanted > scale:
            kept = [m * (wanted // scale) for m in kept]
        else:
            wanted = scale if wanted else 0
        m = round(number * wanted) if wanted else 0
        exact = bool(wanted) and m / wanted == number
    else:
        m, exact = int(number) * scale, True
    code: str | None = values.typecode
    while exact and code is not None:
        try:
            wider = array(code, [*kept, m])
        except OverflowError:
            code = WIDER.get(code)
            continue
        if code != values.typecode:
            values = zeros(code)
        values[:at + 1] = wider
        return values, wanted
    doubles = zeros("d")
    doubles[:at] = array("d", [m / scale for m in values[:at]])
    doubles[at] = float(number)
    return doubles, 0


def as_doubles(values: array[Any], scale: int) -> Iterable[float]:
    """The doubles of an open chunk's `values`."""
    return map(truediv, values, repeat(scale)) if scale else values


def chunk_size(values: array[Any], scale: int, flags: bytes) -> float:
    """The deflated size of the body of a `CHUNK`-sample chunk like the open chunk's first
    samples (at least 4: their `values` and `flags`; the steps' part is the block's, not the
    ring's store's): their sealed size and their first half's, extrapolated (see
    `PROBE_SHARE`). Scaled integers are encoded as a seal encodes them (`scaled_body`, without
    the doubles and the codec's search: a third of the CPU)."""
    n = len(flags)
    half = n // 2
    if scale:
        full = len(scaled_body(scale, values[:n], flags))
        part = len(scaled_body(scale, values[:half], flags[:half]))
    else:
        full = len(values_body(values[:n], flags))
        part = len(values_body(values[:half], flags[:half]))
    return full + (full - part) * (CHUNK - n) / (n - half)


def store_bytes(size: float, span_ms: float, window_ms: int, max_samples: int,
                headroom: float) -> int:
    """Bytes for a window of chunks of `size` bytes and `span_ms` each, × `headroom`: as many
    chunks as the window holds at that pace, or as the sample cap allows, whichever is fewer,
    and at most FIRST_CHUNKS: an incident's rings have no sample cap (max_samples 10**9 would
    reserve ~1.4 GB and stall the event loop)."""
    by_count = (max_samples - CHUNK) / 1.25 / CHUNK + 1
    by_time = window_ms / max(span_ms, 1) + 1
    return int(size * min(by_count, by_time, FIRST_CHUNKS) * headroom)


def window_chunks(span_ms: float, window_ms: int, max_samples: int, spare: int) -> int:
    """The sealed chunks a ring keeps if each spans `span_ms` from its first sample to its
    last — those whose last sample is within the window of the newest's, the newest too — and
    `spare` more (for a pace a little faster than that); at most the sample cap's chunks, and
    at most FIRST_CHUNKS (see `store_bytes`)."""
    return min(int(window_ms / max(span_ms, 1)) + 1 + spare, max_samples // CHUNK,
               FIRST_CHUNKS)
