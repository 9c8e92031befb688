"""The flight recorder's ring: the last N minutes of every point at acquisition resolution.

Each point has its own `PointRing`. New samples go to a small open chunk (millisecond
timestamps in `array('q')`, values in `array('d')`, one flag byte each); every `CHUNK` samples
the open chunk is sealed: timestamps become deltas, values are XOR-ed with the previous value's
bits, both are byte-transposed (all first bytes, then all second bytes …) and the lot is
deflated. A constant point then costs well under a byte per sample, a slowly moving analog one
a byte or two. Sealed chunks of one point live back to back in one `bytearray` (their lengths,
first and last timestamps in small arrays beside it); the oldest is dropped once its newest
sample is older than the window, or the point holds more than its sample cap.

Flag byte: bits 0-1 quality (good, stale, comm_error, invalid), bits 2-4 the value's kind
(float, int, bool, None, string). Strings (text points, rare) are kept as an index into a
per-point table of at most `MAX_STRINGS` distinct strings; later new strings read back as
`OVERFLOW_STRING`. Timestamps are kept to the millisecond. Integers beyond ±2⁵³ lose precision
(kept as doubles).

`FlightRecorder` holds the rings, creates one per point on its first sample (at most
`max_points`; further points are counted, not kept) and sizes each from its device's poll
interval: `window / interval × 1.25 + CHUNK` samples at most, so memory is bounded whatever a
device does. docs/incidents.md has the measured budget.
"""

from __future__ import annotations

import itertools
import math
import operator
import struct
import sys
import zlib
from array import array
from collections.abc import Callable, Iterable
from typing import NamedTuple

from gateway.field.sample import Quality, Sample, Value

CHUNK = 128
"""Samples per sealed chunk (the open chunk holds at most this many, uncompressed)."""
FIRST_CHUNKS = 256
"""Most chunks a ring's store reserves at its first seal (a 15-minute window at 50 ms polls is
141 chunks)."""
MAX_STRINGS = 64
OVERFLOW_STRING = "\u2026"
_QUALITIES = (Quality.GOOD, Quality.STALE, Quality.COMM_ERROR, Quality.INVALID)
_QUALITY_CODE = {q: i for i, q in enumerate(_QUALITIES)}
_FLOAT, _INT, _BOOL, _NONE, _STR = range(5)
_HEADER = struct.Struct("<HqB")
_SCALES = (1, 10, 100, 1000)
"""Decimal modes: a chunk whose values are all n / scale (exactly, or but for their last bits)
keeps n's deltas instead."""
_DOUBLE = struct.Struct("<d")
_WORD = struct.Struct("<Q")
_MS = 1_000_000


class Recorded(NamedTuple):
    """One sample as the recorder gives it back (`ts` in ns, to the millisecond)."""

    ts: int
    value: Value
    quality: Quality


def _shuffle(data: bytes, width: int) -> bytes:
    return b"".join(data[i::width] for i in range(width))


def _unshuffle(data: bytes, width: int) -> bytes:
    n = len(data) // width
    out = bytearray(len(data))
    for i in range(width):
        out[i::width] = data[i * n:(i + 1) * n]
    return bytes(out)


def encode_chunk(ts_ms: array[int], values: array[float], flags: bytes) -> bytes:
    """One sealed chunk: header (count, first ts, mode), shuffled ts deltas, shuffled value
    words (see `_pack_values`), in the scaled modes with fixes one byte per value, flag bytes;
    raw deflate."""
    n = len(ts_ms)
    deltas = array("q", [b - a for a, b in itertools.pairwise(ts_ms)])
    mode, packed, fixes = _pack_values(values)
    raw = b"".join((_HEADER.pack(n, ts_ms[0], mode), _shuffle(deltas.tobytes(), 8),
                    _shuffle(packed.tobytes(), 8), fixes, flags))
    return zlib.compress(raw, 6, wbits=-15)


def _float_bits(value: float) -> int:
    word: int = _WORD.unpack(_DOUBLE.pack(value))[0]
    return word


def _pack_values(values: array[float]) -> tuple[int, array[int], bytes]:
    """(mode, words, fixes). Mode k in 1-4: every value is m / _SCALES[k-1] exactly; words
    are the deltas of m (a scaled register: tiny steps). Mode k + 4: the same, but some
    values are a few units in the last place off m / scale (a register decoded as
    `raw × 0.01` is 22.830000000000002 where 2283 / 100 is 22.83): `fixes` holds, a byte per
    value, the low bits to XOR into m / scale's bits to get the value back exactly. Mode 0:
    the doubles' bits, each XOR-ed with the one before (repeats become zeros)."""
    bits = array("Q", values.tobytes())
    for mode, scale in enumerate(_SCALES, start=1):
        scaled: list[int] = []
        fixes: bytearray | None = None
        try:
            for i, v in enumerate(values):  # stops at the first value this scale misses (CPU)
                m = round(v * scale)
                if abs(m) >= 2**62:
                    break
                exact = m / scale
                if exact != v or (v == 0.0 and bits[i]):  # (-0.0 == 0.0, but not its bits)
                    fix = bits[i] ^ _float_bits(exact)
                    if fix > 0xFF:
                        break
                    if fixes is None:
                        fixes = bytearray(len(values))
                    fixes[i] = fix
                scaled.append(m)
            else:
                words = array("q", [scaled[0]] + [b - a for a, b in
                                                  itertools.pairwise(scaled)])
                if fixes is None:
                    return mode, words, b""
                return mode + len(_SCALES), words, bytes(fixes)
        except (OverflowError, ValueError):  # inf, nan
            break
    return 0, array("Q", [bits[0]] + [b ^ a for a, b in itertools.pairwise(bits)]), b""


def decode_chunk(blob: bytes) -> tuple[list[int], list[float], bytes]:
    """(ts in ms, value doubles, flags) of a chunk `encode_chunk` made."""
    raw = zlib.decompress(blob, wbits=-15)
    n, first, mode = _HEADER.unpack_from(raw)
    at = _HEADER.size
    deltas = array("q", _unshuffle(raw[at:at + 8 * (n - 1)], 8))
    at += 8 * (n - 1)
    words = _unshuffle(raw[at:at + 8 * n], 8)
    at += 8 * n
    ts = list(itertools.accumulate(deltas, initial=first))
    if mode:
        scale = _SCALES[(mode - 1) % len(_SCALES)]
        values = [m / scale for m in itertools.accumulate(array("q", words))]
        if mode > len(_SCALES):
            fixes = raw[at:at + n]
            at += n
            for i, fix in enumerate(fixes):
                if fix:
                    values[i] = _DOUBLE.unpack(_WORD.pack(_float_bits(values[i]) ^ fix))[0]
        return ts, values, raw[at:at + n]
    bits = array("Q", itertools.accumulate(array("Q", words), operator.xor))
    return ts, array("d", bits.tobytes()).tolist(), raw[at:at + n]


class PointRing:
    """The recent samples of one point (see the module docstring).

    Memory stays put once the ring is in use: the open chunk is one set of fixed arrays of
    `CHUNK` slots, reused after every seal; sealed chunks live in one `bytearray` used as a
    queue in place — appended at its end, dropped from its front by moving an offset, moved
    back to the start when the end is reached — sized at the first seal for a full window at
    that chunk's size (+⅛), and grown only if later chunks need more. Nothing is re-allocated
    per chunk: from its first seal on a ring holds what a full one holds, and the allocator's
    heap does not fragment as the window fills."""

    __slots__ = ("_data", "_end", "_firsts", "_flags", "_lasts", "_lengths", "_open",
                 "_start", "_strings", "_ts", "_values", "max_samples", "sealed", "window_ms")

    def __init__(self, window_s: float, max_samples: int) -> None:
        self.window_ms = int(window_s * 1000)
        self.max_samples = max(max_samples, 2 * CHUNK)
        self._ts: array[int] = array("q", bytes(8 * CHUNK))
        self._values: array[float] = array("d", bytes(8 * CHUNK))
        self._flags = bytearray(CHUNK)
        self._open = 0
        """Samples in the open chunk (its first `_open` slots)."""
        self._data = bytearray()
        self._start = self._end = 0
        """The sealed chunks are `_data[_start:_end]`, oldest first."""
        self._lengths: array[int] = array("l")
        self._firsts: array[int] = array("q")
        self._lasts: array[int] = array("q")
        self._strings: list[str] = []
        self.sealed = 0
        """Samples in sealed chunks."""

    def __len__(self) -> int:
        return self.sealed + self._open

    def append(self, ts_ns: int, value: Value, quality: Quality) -> None:
        if type(value) is float:  # the common case, without a call (CPU)
            kind, number = _FLOAT, value
        else:
            kind, number = self._encode_value(value)
        at = self._open
        self._ts[at] = ts_ns // _MS
        self._values[at] = number
        self._flags[at] = _QUALITY_CODE[quality] | kind << 2
        self._open = at + 1
        if at + 1 >= CHUNK:
            self._seal()

    def _encode_value(self, value: Value) -> tuple[int, float]:
        if value is None:
            return _NONE, 0.0
        if isinstance(value, bool):
            return _BOOL, float(value)
        if isinstance(value, int):
            return _INT, float(value)
        if isinstance(value, float):
            return _FLOAT, value
        try:
            return _STR, float(self._strings.index(value))
        except ValueError:
            if len(self._strings) >= MAX_STRINGS:
                return _STR, float(MAX_STRINGS)
            self._strings.append(value)
            return _STR, float(len(self._strings) - 1)

    def _seal(self) -> None:
        blob = encode_chunk(self._ts, self._values, bytes(self._flags))
        newest = self._ts[CHUNK - 1]
        # the chunks this one pushes out go first, so the store holds no more than a window
        while self._lengths and (self._lasts[0] < newest - self.window_ms
                                 or self.sealed + CHUNK > self.max_samples):
            self._drop_oldest()
        self._store(blob, newest - self._ts[0])
        self._lengths.append(len(blob))
        self._firsts.append(self._ts[0])
        self._lasts.append(newest)
        self.sealed += CHUNK
        self._open = 0

    def _store(self, blob: bytes, span_ms: int) -> None:
        """Append a sealed chunk (`span_ms` from its first sample to its last) to `_data`
        without re-allocating it if it fits."""
        size = len(blob)
        if self._end + size > len(self._data):
            live = self._end - self._start
            if self._start:  # move the live chunks back to the start (in place)
                with memoryview(self._data) as view:
                    view[:live] = view[self._start:self._end]
                self._start, self._end = 0, live
            if live + size > len(self._data):
                wanted = live + size
                if not self._data:  # first seal: room for a window of chunks like this one
                    # as many as the window holds at the pace of this chunk, or as the sample
                    # cap allows, whichever is fewer, and at most FIRST_CHUNKS: an incident's
                    # rings have no sample cap (max_samples 10**9 would reserve ~1.4 GB and
                    # stall the event loop); beyond, the store grows by a quarter when it must
                    by_count = (self.max_samples - CHUNK) / 1.25 / CHUNK + 1
                    by_time = self.window_ms / max(span_ms, 1) + 1
                    chunks = min(by_count, by_time, FIRST_CHUNKS)
                    wanted = int(size * chunks * 1.125)
                self._data.extend(bytes(max(wanted, len(self._data) * 5 // 4)
                                        - len(self._data)))
        self._data[self._end:self._end + size] = blob
        self._end += size

    def _drop_oldest(self) -> None:
        self._start += self._lengths[0]
        if self._start == self._end:
            self._start = self._end = 0
        del self._lengths[0], self._firsts[0], self._lasts[0]
        self.sealed -= CHUNK

    def nbytes(self) -> int:
        """Bytes held in the arrays (their allocation, not counting object headers)."""
        return (CHUNK * 17 + len(self._data) + len(self._lengths) * 8
                + len(self._firsts) * 8 + len(self._lasts) * 8)

    def frozen(self) -> PointRing:
        """A copy (memory copies of the arrays) that later appends do not touch: for reading
        in another thread."""
        copy = PointRing.__new__(PointRing)
        copy.window_ms, copy.max_samples, copy.sealed = (self.window_ms, self.max_samples,
                                                          self.sealed)
        copy._ts, copy._values, copy._flags = array("q", self._ts), array(
            "d", self._values), bytearray(self._flags)
        copy._open = self._open
        copy._data = self._data[self._start:self._end]
        copy._start, copy._end = 0, len(copy._data)
        copy._lengths = array("l", self._lengths)
        copy._firsts, copy._lasts = array("q", self._firsts), array("q", self._lasts)
        copy._strings = list(self._strings)
        return copy

    def live_bytes(self) -> int:
        """Memory this ring holds (`sys.getsizeof` of it and everything it owns)."""
        return sys.getsizeof(self) + sum(sys.getsizeof(part) for part in (
            self._ts, self._values, self._flags, self._data, self._lengths, self._firsts,
            self._lasts, self._strings)) + sum(sys.getsizeof(s) for s in self._strings)

    def samples(self, since_ns: int = 0, until_ns: int | None = None) -> list[Recorded]:
        """The samples with `since_ns` ≤ ts ≤ `until_ns`, oldest first."""
        lo = since_ns // _MS
        hi = math.inf if until_ns is None else until_ns // _MS
        out: list[Recorded] = []
        at = self._start
        for length, first, last in zip(self._lengths, self._firsts, self._lasts, strict=True):
            if last >= lo and first <= hi:
                ts, values, flags = decode_chunk(bytes(self._data[at:at + length]))
                self._collect(out, ts, values, flags, lo, hi)
            at += length
        n = self._open
        self._collect(out, self._ts[:n], self._values[:n], self._flags[:n], lo, hi)
        return out

    def _collect(self, out: list[Recorded], ts: Iterable[int], values: Iterable[float],
                 flags: Iterable[int], lo: int, hi: float) -> None:
        for t, v, f in zip(ts, values, flags, strict=True):
            if lo <= t <= hi:
                out.append(Recorded(t * _MS, self._decode_value(f >> 2, v), _QUALITIES[f & 3]))

    def _decode_value(self, kind: int, number: float) -> Value:
        if kind == _FLOAT:
            return number
        if kind == _INT:
            return int(number)
        if kind == _BOOL:
            return number != 0.0
        if kind == _STR:
            index = int(number)
            return self._strings[index] if index < len(self._strings) else OVERFLOW_STRING
        return None


class FlightRecorder:
    """Rings for every point (see the module docstring)."""

    def __init__(self, window_s: float = 900.0, *, max_points: int = 20_000,
                 interval_of: Callable[[str], float] | None = None) -> None:
        self.window_s = window_s
        self.max_points = max_points
        self.interval_of = interval_of or (lambda point: 1.0)
        """Seconds between samples of a point (its device's poll interval)."""
        self.rings: dict[str, PointRing] = {}
        self.refused_points = 0
        """Points not recorded because `max_points` were recorded already."""
        self.samples_in = 0

    def capacity(self, point: str) -> int:
        interval = max(self.interval_of(point), 0.05)
        return int(self.window_s / interval * 1.25) + CHUNK

    def record(self, batch: Iterable[Sample]) -> None:
        rings = self.rings
        recorded = 0
        for point, value, ts, quality in batch:
            ring = rings.get(point)
            if ring is None:
                if len(rings) >= self.max_points:
                    self.refused_points += 1
                    continue
                ring = rings[point] = PointRing(self.window_s, self.capacity(point))
            ring.append(ts, value, quality)
            recorded += 1
        self.samples_in += recorded

    def samples(self, point: str, since_ns: int = 0,
                until_ns: int | None = None) -> list[Recorded]:
        ring = self.rings.get(point)
        return [] if ring is None else ring.samples(since_ns, until_ns)

    def nbytes(self) -> int:
        return sum(ring.nbytes() for ring in self.rings.values())

    def live_bytes(self) -> int:
        """Memory the recorder holds: its rings, the dict and the point names."""
        return sys.getsizeof(self.rings) + sum(sys.getsizeof(point) + ring.live_bytes()
                                               for point, ring in self.rings.items())
