"""The file format of the saved rate windows (`rate_windows.bin`, `gateway.rules.warm`): encode a
snapshot, decode and check what a file holds. Pure: bytes in, bytes out.

Version 3 (written since 7 Dec 2026; `MAGIC`, then zlib level 1)::

    header (JSON, one line): {"version": 3, "saved_ns": …, "saved_mono": …, "boot_id": …,
                              "synced": true|false,
                              "points": {point id: {"source": fingerprint, "runs": [n, …]}}}
    "\n"
    ages:   the byte planes of int64 (little-endian): each sample's age at the save in ms
            (rounded, as version 1), every run in header order, each after the one before it
            (the first of all as itself): byte 0 of every number, then byte 1, …
    values: the byte planes of their float64 values (little-endian), in the same order

A run is one rate window's samples as it held them, oldest first; a point restores from the
union of its runs (`decode`). Per sample a save computes only the age (one subtraction and
rounding: the windows' arrays are copied as they are, `gateway.rules.rate_samples`); the
differences of successive ages (~1,000 ms apart at 1 s polls) and the byte planes (a plane
of a number's alike bytes — sign, exponent, leading digits — side by side) let zlib's fastest
level compress it to a third of version 1. `saved_mono` (the monotonic clock at the save)
and `boot_id` (the kernel's, `gateway.clocksync`) were added on 5 Dec 2026: within one boot the
gap since the save is measured on the monotonic clock, not the wall clock (a Pi without an RTC
has its clock stepped); a file without them is of an unknown boot. `synced` (version 3):
whether the system clock was synchronised at the save — `saved_ns` of a clock that was not
(an RTC kept in local time, a stale fake-hwclock) says nothing of when the save was, and a
3-hour stop was once taken for 10 s (clock audit, K3 again). Version 2 (`MAGIC_V2`, written
4–7 Dec 2026: the same without `synced`) is still read, its clock state unknown: restored
only in the boot it was saved in (`gateway.rules.warm`). Version 1 (JSON lists of ages in ms
and values, per point the union already made) is still read, and refused by the restore as of
an unknown boot and clock state (the windows start cold, logged).

Bounds, checked before anything is used: `MAX_FILE_BYTES` read, `MAX_DECODED_BYTES`
decompressed, `MAX_POINT_SAMPLES` per point, `MAX_SAMPLES` in all; a file out of them, of
another format, truncated or inconsistent raises `ValueError` (or pydantic's
`ValidationError`, `zlib.error`) for the caller to log and ignore. The header is read without
pydantic where it is one the gateway wrote (gateway.rules.warm_header, issue 15)."""

from __future__ import annotations

import json
import math
import mmap
import sys
import zlib
from array import array
from collections.abc import Iterator, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING, TypeAlias

from gateway.records import dataclass
from gateway.rules.rate import MAX_WINDOW_SAMPLES
from gateway.rules.warm_header import header, header_v1

MAGIC = b"roomwarden-rate-windows 3\n"
MAGIC_V2 = b"roomwarden-rate-windows 2\n"
MAGIC_V1 = b"roomwarden-rate-windows 1\n"
MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_DECODED_BYTES = 64 * 1024 * 1024
MAX_POINT_SAMPLES = 4 * (MAX_WINDOW_SAMPLES + 1)
MAX_SAMPLES = 250_000
LEVEL = 1
"""zlib level: at the 2,000-point benchmark site 1 gives 120 KB in 5 ms, 6 gives 105 KB in
30 ms."""

if TYPE_CHECKING:
    Run: TypeAlias = tuple[array[float], array[float]]
    """One window's samples: (monotonic times, values), oldest first."""


@dataclass(frozen=True, slots=True)
class Restorable:
    """What a point restores from: its samples' ages at the save (ms) and values, oldest
    first, without repeats."""

    source: str
    ages_ms: Sequence[int]
    values: Sequence[float]
    """(Version 2: views of the decoded numbers in mappings of their own, or arrays, not lists
    of Python numbers: a restore of a full file at the 2,000-point site left RssAnon 13.6 MiB
    higher with lists and copies on the heap, kept by pymalloc and glibc.)"""


@dataclass(frozen=True, slots=True)
class Saved:
    """What a file holds: the save's wall clock, its monotonic clock and the kernel's boot id
    (None in files written before those were saved), and point id → what it restores from;
    `synced`: whether the system clock was synchronised at the save (None: not known, a file
    of version 1 or 2)."""

    saved_ns: int
    saved_mono: float | None
    boot_id: str | None
    points: dict[str, Restorable]
    synced: bool | None = None


def room(count: int) -> memoryview[float]:
    """Zeros for `count` floats in an anonymous mapping of their own, returned to the system
    whole once the last view of it goes: a save's buffers (`stream`,
    `gateway.rules.warm.Snapshot`; from glibc's heap, what one save freed stayed in the
    process, and more of it as the windows filled)."""
    return _mapping(count).cast("d")


def _mapping(count: int) -> memoryview[int]:
    """The bytes of `count` 8-byte numbers, zeros, in an anonymous mapping (`room`), its pages
    made at once (where the system can: half the cost of a fault per page as they fill)."""
    return memoryview(mmap.mmap(-1, 8 * max(count, 1), flags=POPULATE))


POPULATE = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)


def encode(saved_ns: int, saved_mono: float, points: dict[str, tuple[str, list[Run]]],
           boot_id: str | None = None, synced: bool | None = None) -> bytes:
    """The file for these points' runs, saved at `saved_ns` (wall clock) = `saved_mono`
    (the monotonic clock the runs' times are of) in the boot `boot_id`, the system clock
    synchronised or not (None: a version-2 file, as written before that was saved)."""
    total = sum(len(times) for _, runs in points.values() for times, _ in runs)
    times, values = room(total), room(total)
    at = 0
    for _, runs in points.values():
        for run_t, run_v in runs:
            times[at:at + len(run_t)] = memoryview(run_t)
            values[at:at + len(run_v)] = memoryview(run_v)
            at += len(run_t)
    lengths = {point_id: (source, [len(run_t) for run_t, _ in runs])
               for point_id, (source, runs) in points.items()}
    return b"".join(stream(saved_ns, saved_mono, lengths, times, values, total, boot_id,
                           synced))


def stream(saved_ns: int, saved_mono: float, points: dict[str, tuple[str, list[int]]],
           times: memoryview[float], values: memoryview[float], count: int,
           boot_id: str | None = None, synced: bool | None = None) -> Iterator[bytes]:
    """The file, in pieces, for runs of these lengths (point id → (fingerprint, lengths))
    whose samples are the first `count` of `times` and `values` (views of 8-byte floats), one
    run after another. What it holds while it runs: the ages' int64 in a mapping as long as
    `times` (`_mapping`) and pieces of at most `PIECE` bytes. `synced` None: version 2."""
    packer = zlib.compressobj(LEVEL)
    yield MAGIC_V2 if synced is None else MAGIC
    for text in header_text(saved_ns, points, saved_mono, boot_id, synced):
        if piece := packer.compress(text.encode()):
            yield piece
    steps = _mapping(len(times)).cast("q")
    before = 0
    for index, t in enumerate(times[:count]):
        age = round((saved_mono - t) * 1000.0)
        steps[index] = age - before
        before = age
    for numbers in (steps, values):
        for piece in _planes(numbers, count):
            yield packer.compress(piece)
    steps.release()
    yield packer.flush()


def header_text(saved_ns: int, points: dict[str, tuple[str, list[int]]],
                saved_mono: float | None = None, boot_id: str | None = None,
                synced: bool | None = None) -> Iterator[str]:
    """The header's line (with its newline) in pieces, a point at a time: the text of
    `json.dumps({"version": 3, "saved_ns": …, "saved_mono": …, "boot_id": …, "synced": …,
    "points": {id: {"source": …, "runs": […]}}}, separators=(",", ":"))` (`saved_mono` and
    `boot_id` only when given; without `synced`, version 2's) without that dict of a dict per
    point alive at once (1,340 objects at the 2,000-point site: a save's peak of Python
    objects 765 → 353 KiB, the rest zlib's state and a plane's piece; pools pymalloc takes
    for a peak stay in the process).
    tests/rules/test_warm_file.py compares the two."""
    yield f'{{"version":{2 if synced is None else 3},"saved_ns":{int(saved_ns)},'
    if saved_mono is not None and math.isfinite(saved_mono):
        yield f'"saved_mono":{json.dumps(float(saved_mono))},'
    if boot_id is not None:
        yield f'"boot_id":{json.dumps(boot_id)},'
    if synced is not None:
        yield f'"synced":{json.dumps(bool(synced))},'
    yield '"points":{'
    first = True
    for point_id, (source, runs) in points.items():
        runs_text = ",".join(map(str, map(int, runs)))
        yield (f'{"" if first else ","}{json.dumps(point_id)}:{{"source":{json.dumps(source)},'
               f'"runs":[{runs_text}]}}')
        first = False
    yield "}}\n"


PIECE = 16384
"""Numbers per piece of a byte plane (`_planes`)."""


def _planes(numbers: memoryview[int] | memoryview[float], count: int) -> Iterator[bytes]:
    """The byte planes (little-endian) of the first `count` of these 8-byte numbers, in pieces
    of at most `PIECE` bytes: byte 0 of every number, then byte 1, … (no copy of them all)."""
    little = sys.byteorder == "little"
    with numbers.cast("B") as raw:
        for k in range(8):
            byte = k if little else 7 - k
            for start in range(0, count, PIECE):
                end = min(count, start + PIECE)
                yield raw[8 * start + byte:8 * end:8].tobytes()


def _numbers(planes: memoryview[int]) -> memoryview[int]:
    """The bytes of the 8-byte numbers in these byte planes (`_planes` undone), in a mapping
    of their own (`_mapping`: a restore's buffers are given back whole once it is done)."""
    size = len(planes) // 8
    raw = _mapping(size)[:8 * size]
    little = sys.byteorder == "little"
    for k in range(8):
        byte = k if little else 7 - k
        raw[byte::8] = planes[k * size:(k + 1) * size]
    return raw


def decode(data: bytes) -> tuple[int, dict[str, Restorable]]:
    """(saved_ns, point id → what it restores from) of a file's bytes (either version)."""
    saved = decode_saved(data)
    return saved.saved_ns, saved.points


def decode_saved(data: bytes) -> Saved:
    """What a file's bytes hold (any version; version 1 knows no boot, versions 1 and 2 not
    whether the clock was synchronised)."""
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
    for magic, version in ((MAGIC, 3), (MAGIC_V2, 2), (MAGIC_V1, 1)):
        if data.startswith(magic):
            body, size = _inflate(memoryview(data)[len(magic):])
            if version == 1:
                return _decode_v1(body[:size])
            return _decode_v2(body, size, version)
    raise ValueError("not a rate-window file of a known version")


INFLATE_PIECE = 1 << 18
"""Bytes decompressed at a time (`_inflate`)."""


def _inflate(data: memoryview[int]) -> tuple[mmap.mmap, int]:
    """The decompressed body and its length, in a mapping of its own: decompressed twice in
    pieces, once to measure and bound it, once into the mapping, so a restore holds no copy
    of it on the heap (a full file at the 2,000-point site is 1.6 MB decompressed)."""
    size = sum(map(len, _pieces(data)))
    body = mmap.mmap(-1, max(size, 1), flags=POPULATE)
    at = 0
    for piece in _pieces(data):
        body[at:at + len(piece)] = piece
        at += len(piece)
    return body, size


def _pieces(data: memoryview[int]) -> Iterator[bytes]:
    """The decompressed stream in pieces of at most `INFLATE_PIECE` bytes, checked against
    `MAX_DECODED_BYTES` and for its end (ValueError)."""
    inflater = zlib.decompressobj()
    tail: memoryview[int] | bytes = data
    produced = 0
    while not inflater.eof:
        piece = inflater.decompress(tail, INFLATE_PIECE)
        tail = inflater.unconsumed_tail
        if not piece and not tail:
            raise ValueError("truncated")
        produced += len(piece)
        if produced > MAX_DECODED_BYTES:
            raise ValueError(f"decompresses to more than {MAX_DECODED_BYTES} bytes")
        yield piece


def _count(point_id: str, count: int, total: int) -> int:
    """The running total after a point of `count` samples, within the bounds."""
    if count > MAX_POINT_SAMPLES:
        raise ValueError(f"{point_id}: {count} samples (at most {MAX_POINT_SAMPLES})")
    total += count
    if total > MAX_SAMPLES:
        raise ValueError(f"{total} samples (at most {MAX_SAMPLES})")
    return total


def _decode_v1(body: bytes) -> Saved:
    saved = header_v1(json.loads(body))
    total = 0
    for point_id, (_, ages_ms, values) in saved.points.items():
        if len(ages_ms) != len(values):
            raise ValueError(f"{point_id}: {len(ages_ms)} ages, {len(values)} values")
        total = _count(point_id, len(values), total)
    return Saved(saved.saved_ns, None, None, {
        point_id: Restorable(source, ages_ms, values)
        for point_id, (source, ages_ms, values) in saved.points.items()})


def _decode_v2(body: mmap.mmap, size: int, version: int) -> Saved:
    """Version 2 or 3 (the same but for the header's `synced`)."""
    cut = body.find(b"\n", 0, size)
    if cut < 0:
        raise ValueError("no header")
    read = header(json.loads(body[:cut]), version)
    planes = memoryview(body)[cut + 1:size]
    total = 0
    for point_id, (_, runs) in read.points.items():
        if any(n < 0 for n in runs):
            raise ValueError(f"{point_id}: a run of fewer than 0 samples")
        total = _count(point_id, sum(runs), total)
    if len(planes) != 16 * total:
        raise ValueError(f"{len(planes)} bytes of samples for {total} samples")
    ages = _numbers(planes[:8 * total]).cast("q")
    for index, age in enumerate(accumulate(ages)):  # in place: each step read before written
        ages[index] = age
    values = _numbers(planes[8 * total:]).cast("d")
    out: dict[str, Restorable] = {}
    start = 0
    for point_id, (source, runs) in read.points.items():
        end = start + sum(runs)
        if len(runs) == 1 and all(map(int.__gt__, ages[start:end - 1], ages[start + 1:end])):
            out[point_id] = Restorable(source, ages[start:end], values[start:end])
        else:  # the union, oldest first (as version 1 saved it: by time, then value); the
            # runs are each in order, so the sort only merges them
            merged = dict.fromkeys(sorted(zip(map(int.__neg__, ages[start:end]),
                                              values[start:end], strict=True)))
            out[point_id] = Restorable(source, array("q", [-age for age, _ in merged]),
                                       array("d", [value for _, value in merged]))
        start = end
    return Saved(read.saved_ns, read.saved_mono, read.boot_id, out, read.synced)
