"""The flight recorder's ring: the last N minutes of every point at acquisition resolution.

Each point has its own `PointRing`. New samples go to a small open chunk (the milliseconds
from each timestamp to the next in `array('h')`, values as scaled integers in the narrowest
array that holds them or doubles (gateway/recorder/open_chunk.py), one flag byte each); every
`CHUNK` samples the open chunk is sealed (gateway/recorder/chunk.py): values become the
deltas of a decimal scale's integers or the doubles' bits XOR-ed with the previous value's,
timestamps and deltas go in the narrowest width that holds them, byte-transposed (all first
bytes, then all second bytes …), and each part is deflated: the values and flags (the body),
and the timestamps' steps, which the rings of a block read seal alike and hold as one shared
`bytes`, numbered in a table (gateway/recorder/parts.py). A constant point then costs well
under a byte per sample, a slowly moving analog one a byte or two. Sealed bodies of one point
live back to back in one `bytearray` (their offsets, and their lengths, first and last
timestamps and steps' parts' numbers, in one small array of ints beside it, used the same
way); the oldest is dropped once its newest sample is older than the window, or the point
holds more than its sample cap.

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

import math
import sys
from array import array
from collections.abc import Callable, Iterable
from functools import partial
from itertools import accumulate, islice
from typing import Any, NamedTuple

from gateway.field.sample import Quality, Sample, Value
from gateway.recorder import bookkeeping
from gateway.recorder.bookkeeping import END, FIRST, START, live_times, reserve
from gateway.recorder.chunk import (
    Sealed,
    decode_chunk,
    encode_chunk,
    encode_scaled,
    encode_steps,
    exact_scale,
)
from gateway.recorder.intake import (
    KIND_BOOL,
    KIND_FLOAT,
    KIND_INT,
    KIND_STR,
    MAX_STRINGS,
    NS_PER_MS,
    QUALITIES,
    record_into,
)
from gateway.recorder.lines import Line, copy_of, join, leave, new_line, restart
from gateway.recorder.open_chunk import (
    CHUNK,
    FIRST_CHUNKS,
    PROBE,
    PROBE_SHARE,
    STORE_MARGIN,
    STORE_STEP,
    as_doubles,
    chunk_size,
    spill,
    store_bytes,
    window_chunks,
    zeros,
)
from gateway.recorder.parts import Parts

__all__ = ["CHUNK", "FIRST_CHUNKS", "MAX_STRINGS", "OVERFLOW_STRING", "PROBE", "FlightRecorder",
           "PointRing", "Recorded", "Sealed", "decode_chunk", "encode_chunk"]

OVERFLOW_STRING = "\u2026"


class Recorded(NamedTuple):
    """One sample as the recorder gives it back (`ts` in ns, to the millisecond)."""

    ts: int
    value: Value
    quality: Quality


class PointRing:
    """The recent samples of one point (see the module docstring).

    Memory stays put once the ring is in use: the open chunk is one set of fixed arrays of
    `CHUNK` slots, reused after every seal; sealed chunks live in one `bytearray` used as a
    queue in place — appended at its end, dropped from its front by moving an offset, moved
    back to the start when the end is reached. It is first reserved at the ring's `PROBE`th
    sample, a share of a window of chunks like its first samples (`_act`: memory taken in the
    ring's first seconds), made to measure at its first seal — a window of that chunk + 1/16
    (`STORE_MARGIN`) — and made anew, 1/16 over what its live chunks and the new one take
    (`STORE_STEP`), only when a later chunk does not fit: a store holds at most a window of
    its first chunk + 1/16, or 1/16 over the most its chunks ever took. The chunks' bookkeeping
    (`_index`) is one array of a window of chunks' slots, reserved at the `PROBE`th sample and
    used the same way. Nothing is re-allocated per chunk; the heap does not fragment as the
    window fills.
    (Open chunk steps widen from 2 to 4 bytes past 32 s apart, to 8 past ±24 days; values from
    1 to 2 or 4 bytes, or doubles for a chunk.)"""

    __slots__ = ("_base", "_data", "_due", "_epoch", "_flags", "_head", "_index", "_last",
                 "_open", "_parts", "_scale", "_steps", "_strings", "_tail", "_values",
                 "max_samples", "window_ms")

    def __init__(self, window_s: float, max_samples: int, *,
                 beside: PointRing | None = None) -> None:
        self.window_ms = int(window_s * 1000)
        self.max_samples = max(max_samples, 2 * CHUNK)
        self._steps: Line
        """The open chunk's timestamps: ms from the sample before (the first's from `_base`),
        2 bytes each; 4 from the first step past ±32 s on (polls that far apart), 8 for a
        chunk with a step past ±24 days (until it is sealed). Shared, copy-on-write, with the
        rings that have the same (gateway/recorder/lines.py), as is `_flags`."""
        self._flags: Line
        self._parts: Parts
        """The steps' parts by number (gateway/recorder/parts.py): a recorder's rings share it."""
        if beside is None:
            self._steps, self._flags = new_line("h"), new_line("B")
            self._parts = Parts()
        else:  # the ring made before this one: its table and lines, its numbers where equal
            self._parts = beside._parts
            self._steps, self._flags = join(beside._steps), join(beside._flags)
            if beside.window_ms == self.window_ms:
                self.window_ms = beside.window_ms
            if beside.max_samples == self.max_samples:
                self.max_samples = beside.max_samples
        self._base = 0
        """The newest sealed sample's timestamp (ms), or the open chunk's first."""
        self._last = 0
        """The newest sample's timestamp (ms)."""
        self._values: array[Any] = zeros("b")
        """The open chunk's values, `_values[i] / _scale`: scaled integers, or doubles with
        `_scale` 0 (gateway/recorder/open_chunk.py)."""
        self._scale = 1
        self._open = 0
        """Samples in the open chunk (its first `_open` slots)."""
        self._due = PROBE
        """`_open` at which the ring acts: `PROBE` (reserve its store), then `CHUNK` (seal)."""
        self._data = bytearray()
        """The sealed chunks' bodies, oldest first, are `_data[_index[START]:_index[END]]`."""
        self._index: array[int] = bookkeeping.new_index()
        self._head = self._tail = FIRST
        self._epoch = 0
        """Length, first and last timestamp (ms, less `_epoch`), steps' part number of each
        sealed chunk, oldest first, are `_index[_head:_tail]`, after the store's offsets; it
        has slots for a window of chunks (`_act`; gateway/recorder/bookkeeping.py)."""
        self._strings: list[str] | None = None

    @property
    def sealed(self) -> int:
        """Samples in sealed chunks (from `_index`: an int past 256 is one more object)."""
        return (self._tail - self._head) // bookkeeping.STRIDE * CHUNK

    def __len__(self) -> int:
        return self.sealed + self._open

    def append(self, ts_ns: int, value: Value, quality: Quality) -> None:
        self.extend(((ts_ns, value, quality),))

    def extend(self, samples: Iterable[tuple[int, Value, Quality]]) -> None:
        """Add (ts ns, value, quality) samples, e.g. `Recorded`s, in the recorder's one loop."""
        record_into({"": self}, lambda point: None, (("", v, t, q) for t, v, q in samples))

    def _spill(self, at: int, number: float) -> None:
        self._values, self._scale = spill(self._values, self._scale, at, number)

    def _act(self) -> None:
        """A chunk's last sample: seal it. The ring's `PROBE`th: reserve a share of a window of
        chunks like these samples (extrapolated, × `PROBE_SHARE`) for its store, and their
        bookkeeping, so most of the memory a ring keeps is taken in its first seconds, not at
        its first seal (which makes the store to measure: `_store`)."""
        if self._open >= CHUNK:
            self._seal()
            return
        self._due, n = CHUNK, self._open
        if not self._data and n >= 4:
            size = chunk_size(self._values[:n], self._scale, bytes(self._flags[:n]))
            span = (self._last - self._base - self._steps[0]) * (CHUNK - 1) / (n - 1)
            self._data = bytearray(store_bytes(size, span, self.window_ms, self.max_samples,
                                               PROBE_SHARE))
            reserve(self, window_chunks(span, self.window_ms, self.max_samples, 1))

    def _seal(self) -> None:
        steps = self._steps
        first, newest = self._base + steps[0], self._last
        values = self._values
        if self._scale:
            times, body = encode_scaled(steps[1:], self._scale, values, bytes(self._flags))
            self._scale = 1  # (the next chunk's values find theirs)
        else:
            times, body = encode_steps(steps[1:], values, bytes(self._flags))
            if exact_scale(values[-1]):  # the next chunk tries integers again
                self._values, self._scale = zeros("b"), 1
        # the chunks this one pushes out go first, so the store holds no more than a window
        while self._tail > self._head and (
                self._index[self._head + 2] + self._epoch < newest - self.window_ms
                or self.sealed + CHUNK > self.max_samples):
            bookkeeping.drop_oldest(self)
        self._store(body, newest - first)
        bookkeeping.note(self, len(body), first, newest, times)
        self._open = 0
        self._base = newest
        if steps.itemsize == 8:  # a chunk whose clock jumped
            leave(steps)
            self._steps = new_line("i")
        else:
            restart(steps)
        restart(self._flags)

    def _store(self, body: bytes, span_ms: int) -> None:
        """Append a sealed chunk's body (`span_ms` from its first sample to its last) to `_data`
        without re-allocating it if it fits (see the class docstring)."""
        size = len(body)
        if self._tail == self._head:  # the first, or all dropped (a gap past the window)
            window = partial(store_bytes, size, span_ms, self.window_ms, self.max_samples)
            made = window(STORE_MARGIN)
            if len(self._data) < window(1.0) or (not self._index[END] and
                                                 len(self._data) != made):
                self._remake(made)  # (the first seal: made to measure; later, if short)
            reserve(self, window_chunks(span_ms, self.window_ms, self.max_samples, 0))
        start, end = bookkeeping.live_span(self)
        if end + size > len(self._data):
            live = end - start
            if live + size > len(self._data):  # (made anew with the live chunks at its start)
                self._remake(live + size + len(self._data) // STORE_STEP)
            elif start:  # move the live chunks back to the start (in place)
                with memoryview(self._data) as view:
                    view[:live] = view[start:end]
                self._index[START] = 0
            end = live
        self._data[end:end + size] = body
        self._index[END] = end + size

    def _remake(self, length: int) -> None:
        """`_data` anew, `length` bytes allocated to size (`bytearray.extend` over-allocates
        by an eighth), the live chunks copied to its start."""
        start, end = bookkeeping.live_span(self)
        data = bytearray(length)
        with memoryview(self._data) as view:
            data[:end - start] = view[start:end]
        self._data = data
        self._index[START], self._index[END] = 0, end - start

    def shift(self, ms: int) -> None:
        """Move every sample by `ms` (a clock step: recorder/clockstep.py): the open chunk's
        times, the sealed chunks' entries (`samples` reads a chunk's times from its entry)."""
        self._base += ms
        self._last += ms
        self._epoch += ms

    def chunk_index(self) -> array[int]:
        """Body length, first and last timestamp (ms) of each sealed chunk, oldest first (a
        copy)."""
        return bookkeeping.entries(self)

    def sealed_chunks(self) -> list[Sealed]:
        """The sealed chunks (their two parts), oldest first."""
        out, at = [], self._index[START]
        for length, times in zip(self.chunk_index()[0::3], live_times(self), strict=True):
            out.append(Sealed(times, bytes(self._data[at:at + length])))
            at += length
        return out

    def nbytes(self) -> int:
        """Bytes held in the arrays and the steps' parts (their allocation, not counting object
        headers; shared parts whole)."""
        return (CHUNK * (self._steps.itemsize + self._values.itemsize + 1) + len(self._data)
                + len(self._index) * self._index.itemsize + sum(map(len, live_times(self))))

    def frozen(self) -> PointRing:
        """A copy (memory copies of the arrays) that later appends do not touch: for reading
        in another thread."""
        copy = PointRing.__new__(PointRing)
        copy.window_ms, copy.max_samples = self.window_ms, self.max_samples
        copy._steps = copy_of(self._steps, self._open)
        copy._base, copy._last = self._base, self._last
        copy._values = array(self._values.typecode, self._values)
        copy._flags = copy_of(self._flags, self._open)
        copy._scale = self._scale
        copy._open, copy._due = self._open, self._due
        copy._data = self._data[self._index[START]:self._index[END]]
        bookkeeping.copy_bookkeeping(copy, self, len(copy._data))
        copy._strings = None if self._strings is None else list(self._strings)
        return copy

    def live_bytes(self) -> int:
        """Memory this ring holds (`sys.getsizeof` of it and everything it holds, the lines it
        shares with other rings whole)."""
        return sum(map(sys.getsizeof, self._objects()))

    def _objects(self) -> list[object]:
        parts: list[object] = [self, self._steps, self._values, self._flags, self._data,
                               self._index, *self._parts.containers(), *live_times(self)]
        return parts if self._strings is None else [*parts, self._strings, *self._strings]

    def samples(self, since_ns: int = 0, until_ns: int | None = None) -> list[Recorded]:
        """The samples with `since_ns` ≤ ts ≤ `until_ns`, oldest first."""
        lo = since_ns // NS_PER_MS
        hi = math.inf if until_ns is None else until_ns // NS_PER_MS
        out: list[Recorded] = []
        at = self._index[START]
        index = self.chunk_index()
        for length, first, last, times in zip(index[0::3], index[1::3], index[2::3],
                                              live_times(self), strict=True):
            if last >= lo and first <= hi:
                ts, values, flags = decode_chunk(times, bytes(self._data[at:at + length]), first)
                self._collect(out, ts, values, flags, lo, hi)
            at += length
        n = self._open
        open_ts = islice(accumulate(self._steps[:n], initial=self._base), 1, None)
        self._collect(out, open_ts, as_doubles(self._values[:n], self._scale),
                      self._flags[:n], lo, hi)
        return out

    def _collect(self, out: list[Recorded], ts: Iterable[int], values: Iterable[float],
                 flags: Iterable[int], lo: int, hi: float) -> None:
        for t, v, f in zip(ts, values, flags, strict=True):
            if lo <= t <= hi:
                out.append(Recorded(t * NS_PER_MS, self._decode_value(f >> 2, v), QUALITIES[f & 3]))

    def _decode_value(self, kind: int, number: float) -> Value:
        if kind == KIND_FLOAT:
            return number
        if kind == KIND_INT:
            return int(number)
        if kind == KIND_BOOL:
            return number != 0.0
        if kind == KIND_STR:
            index, strings = int(number), self._strings or []
            return strings[index] if index < len(strings) else OVERFLOW_STRING
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

    def shift(self, ns: int) -> None:
        """Every ring's samples moved by `ns` (whole milliseconds: gateway/recorder/clockstep)."""
        for ring in self.rings.values():
            ring.shift(ns // NS_PER_MS)

    def record(self, batch: Iterable[Sample]) -> None:
        """Each sample to its point's ring (gateway/recorder/intake.py)."""
        self.samples_in += record_into(self.rings, self._new_ring, batch)

    def _new_ring(self, point: str) -> PointRing | None:
        if len(self.rings) >= self.max_points:
            self.refused_points += 1
            return None
        beside = next(reversed(self.rings.values()), None)  # (lines: its block's, likely)
        return self.rings.setdefault(point, PointRing(self.window_s, self.capacity(point),
                                                      beside=beside))

    def samples(self, point: str, since_ns: int = 0,
                until_ns: int | None = None) -> list[Recorded]:
        ring = self.rings.get(point)
        return [] if ring is None else ring.samples(since_ns, until_ns)

    def nbytes(self) -> int:
        """The rings' `nbytes`, each line and steps' part once (rings share them:
        gateway/recorder/lines.py, chunk.py)."""
        rings = self.rings.values()
        lines = {id(line): line for ring in rings for line in (ring._steps, ring._flags)}
        times = {id(part): part for ring in rings for part in live_times(ring)}
        return sum(ring.nbytes() - CHUNK * (ring._steps.itemsize + 1)
                   - sum(map(len, live_times(ring)))
                   for ring in rings) + sum(CHUNK * line.itemsize for line in lines.values()
                                            ) + sum(map(len, times.values()))

    def live_bytes(self) -> int:
        """Memory the recorder holds: its rings, the dict and the point names (each object
        once: rings share lines)."""
        parts = {id(part): part for ring in self.rings.values() for part in ring._objects()}
        return sys.getsizeof(self.rings) + sum(map(sys.getsizeof, [*self.rings,
                                                                   *parts.values()]))

