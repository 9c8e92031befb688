"""The flight recorder's sealed chunk: `CHUNK`-odd samples of one point (millisecond timestamps,
value doubles, flag bytes) in a few hundred deflated bytes, in two parts (`Sealed`):

- `times`: the steps from each timestamp to the next (a width code, then the steps) deflated.
  The points of one block read are stamped together, so their rings seal the same steps: the
  part is deflated once for all of them (`encode_times` remembers the last steps it
  deflated), and the recorder's table of parts (gateway/recorder/parts.py, equal parts under
  one number) keeps it once — at 2,000 points polled in blocks of 200 it was 43 %
  of every ring's sealed bytes (117 of 271 a chunk, measured in the running gateway) kept 200
  times over. The first timestamp is not in it: the ring keeps each chunk's first and last.
- `body`: header (count, value mode, value width code), the value words (see `pack_values`),
  in the last-bit modes one fix byte per value, the flag bytes, deflated.

Deltas and scaled words are kept in the narrowest signed width that holds them all (1, 2, 4 or
8 bytes: a 1 s poll's steps take 2, a register's noise 1) and byte-transposed (all first bytes,
then all second bytes ...), so deflate sees short runs of alike bytes and little else (and has
a quarter of the bytes to go through); the doubles' XOR-ed bits (mode 0) keep 8 bytes. Every
pass over a chunk is a C-level one (`map`, array conversions, no Python loop per value), and a
decimal scale is tried on three of its values before the whole chunk (CPU at each seal).
"""

from __future__ import annotations

import itertools
import struct
import zlib
from array import array
from collections.abc import Sequence
from itertools import repeat
from math import floor
from operator import sub, truediv, xor
from typing import NamedTuple

from gateway.recorder.deltas import narrowed_deltas

SCALES = (1, 10, 100, 1000)
"""Decimal modes: a chunk whose values are all m / scale (exactly, or but for their last bits)
keeps m's deltas instead of the doubles."""
_BODY = struct.Struct("<HBB")
"""A body's header: samples, value mode, value width code."""
_FIRST = struct.Struct("<q")
_DOUBLE = struct.Struct("<d")
_WORD = struct.Struct("<Q")
_WIDTHS = ((1, "b"), (2, "h"), (4, "i"), (8, "q"))
"""Width code → (bytes, array type code) of packed deltas."""
_LIMIT = 2**62
_FLOOR_LIMIT = 2**40
"""Scaled values at or beyond this magnitude keep the doubles' bits (their deltas must fit 8
bytes)."""


def shuffle(data: bytes, width: int) -> bytes:
    if width == 1:
        return data
    return b"".join(data[i::width] for i in range(width))


def unshuffle(data: bytes, width: int) -> bytes:
    if width == 1:
        return data
    n = len(data) // width
    out = bytearray(len(data))
    for i in range(width):
        out[i::width] = data[i * n:(i + 1) * n]
    return bytes(out)


def narrow(ints: Sequence[int]) -> tuple[int, bytes]:
    """(width code, shuffled bytes) of `ints` in the narrowest signed width that holds them;
    OverflowError beyond 8 bytes. The bytes are `array(typecode, ints).tobytes()`'s, packed
    by a `struct` of native order and standard sizes (b, h, i, q: 1, 2, 4, 8 bytes; an array
    takes each item through argument parsing: ~4 times the instructions)."""
    count = len(ints)
    for code, (width, typecode) in enumerate(_WIDTHS):
        try:  # (struct.error at the first item that does not fit: cheaper than min/max)
            packed = _packer(count, typecode).pack(*ints)
        except struct.error:
            continue
        return code, shuffle(packed, width)
    raise OverflowError("delta beyond 64 bits")


_PACKERS: dict[tuple[int, str], struct.Struct] = {}


def _packer(count: int, typecode: str) -> struct.Struct:
    """A `struct` packing `count` items of `typecode`, native sizes and order (an array's)."""
    packer = _PACKERS.get((count, typecode))
    if packer is None:
        if len(_PACKERS) >= 4 * 256:  # (a chunk has at most CHUNK samples: never, in use)
            _PACKERS.clear()
        packer = _PACKERS[count, typecode] = struct.Struct(f"={count}{typecode}")
    return packer


def _near(value: float, scale: int) -> bool:
    """False if `value` cannot be m / scale but for its last 8 bits (cheap, on a few values of
    a chunk: true of every value `pack_values` could keep at this scale)."""
    try:
        exact = round(value * scale) / scale
    except (OverflowError, ValueError):  # inf, nan
        return False
    # last 8 bits: less than 2⁸ units in the last place, 2⁻⁴⁴ of the value (2⁻¹⁰⁶⁶ subnormal)
    return abs(value - exact) <= abs(value) * 2.0**-43 + 2.0**-1066


def pack_values(values: array[float]) -> tuple[int, int, list[int], bytes]:
    """(mode, first m, deltas of m, fixes). Mode k in 1-4: every value is m / SCALES[k-1]
    exactly (a scaled register: tiny steps). Mode k + 4: the same, but some values are a few
    units in the last place off m / scale (a register decoded as `raw × 0.01` is
    22.830000000000002 where 2283 / 100 is 22.83): `fixes` holds, a byte per value, the low
    bits to XOR into m / scale's bits to get the value back exactly. The first scale that
    fits every value wins (m = round(value × scale), |m| < 2⁶²). Mode 0 (no scale fits, or a
    value is not finite): first m 0, no deltas; the chunk keeps the doubles' bits.

    Below 2⁴⁰, m is floor(value × scale + 0.5), a third cheaper than `round` and the same m
    wherever m / scale fits a value: value × scale is then within 2⁻⁴ of m, while the two
    differ only next to halfway between integers, where no scale fits."""
    raw = values.tobytes()
    n = len(values)
    if raw == raw[:8] * n:  # one value all along (a status code, a contact): it decides
        return _pack_constant(values[0], n)
    items = values.tolist()  # (a list's floats exist: faster to go through than the array)
    probes = (items[0], items[n // 2], items[n - 1])
    for mode, scale in enumerate(SCALES, start=1):
        if not (_near(probes[0], scale) and _near(probes[1], scale)
                and _near(probes[2], scale)):
            continue  # a cheap no: this scale cannot fit the whole chunk
        try:  # (floor: see the docstring)
            scaled = [floor(v * scale + 0.5) for v in items]
            if max(scaled) >= _FLOOR_LIMIT or min(scaled) <= -_FLOOR_LIMIT:
                raise OverflowError
        except (OverflowError, ValueError):
            try:
                scaled = [round(v * scale) for v in items]
            except (OverflowError, ValueError):  # inf, nan: no scale fits
                break
            if max(scaled) >= _LIMIT or min(scaled) <= -_LIMIT:
                continue
        exact = array("d", [m / scale for m in scaled]).tobytes()
        deltas = list(map(sub, scaled[1:], scaled[:-1]))
        if exact == raw:  # bit for bit (so -0.0, which m / scale never gives, is not)
            return mode, scaled[0], deltas, b""
        fixes = list(map(xor, array("Q", raw), array("Q", exact)))
        if max(fixes) <= 0xFF:
            return mode + len(SCALES), scaled[0], deltas, bytes(fixes)
    return 0, 0, [], b""


def _scaled(value: float, scale: int) -> tuple[int, int] | None:
    """(m, fix): m = round(value × scale) (|m| < 2⁶²) and the bits to XOR into m / scale's to
    get `value` (0: m / scale is `value` bit for bit); None if `value` is not finite or m is
    too large."""
    try:
        m = round(value * scale)
    except (OverflowError, ValueError):  # inf, nan
        return None
    if abs(m) >= _LIMIT:
        return None
    return m, _WORD.unpack(_DOUBLE.pack(value))[0] ^ _WORD.unpack(_DOUBLE.pack(m / scale))[0]


def exact_scale(value: float) -> int:
    """The first of `SCALES` at which `value` is m / scale bit for bit (0: none — not finite,
    -0.0, or not such a decimal)."""
    for scale in SCALES:
        found = _scaled(value, scale)
        if found is not None and not found[1]:
            return scale
    return 0


def _pack_constant(value: float, n: int) -> tuple[int, int, list[int], bytes]:
    """`pack_values` of `n` times `value`."""
    for mode, scale in enumerate(SCALES, start=1):
        found = _scaled(value, scale)
        if found is None:
            continue
        m, fix = found
        if not fix:
            return mode, m, [0] * (n - 1), b""
        if fix <= 0xFF:
            return mode + len(SCALES), m, [0] * (n - 1), bytes((fix,)) * n
    return 0, 0, [], b""


class Sealed(NamedTuple):
    """A sealed chunk: its steps' part (shared by the rings that seal the same steps) and its
    values' part (see the module docstring)."""

    times: bytes
    body: bytes


def encode_chunk(ts_ms: Sequence[int], values: array[float], flags: bytes) -> Sealed:
    """One sealed chunk of `ts_ms`, `values` and a flag byte each (at least one sample); its
    first timestamp is the caller's to keep (`decode_chunk` takes it back)."""
    ts = ts_ms.tolist() if isinstance(ts_ms, array) else list(ts_ms)
    return encode_steps(list(map(sub, ts[1:], ts[:-1])), values, flags)


def encode_times(steps: Sequence[int]) -> bytes:
    """The `times` part of a chunk whose timestamps are these steps apart (ms). The last
    array of steps encoded is remembered by its bytes, and asked again gives the same `bytes`
    object: the rings of a block read seal together with the same steps
    (gateway/recorder/lines.py), so the part is deflated once for them (CPU at a seal); that
    they keep it once is the recorder's table's doing (gateway/recorder/parts.py)."""
    global _last_times
    key = None
    if isinstance(steps, array):
        key = (steps.typecode, steps.tobytes())
        last = _last_times  # (one read: the pair another thread may replace is whole)
        if key == last[0]:
            return last[1]
    code, data = narrow(steps)
    times = deflate(bytes((code,)) + data)
    if key is not None:
        _last_times = key, times
    return times


_last_times: tuple[tuple[str, bytes] | None, bytes] = (None, b"")
"""(typecode, bytes) of the last array of steps `encode_times` encoded, and its part."""


def encode_steps(steps: Sequence[int], values: array[float], flags: bytes) -> Sealed:
    """`encode_chunk` of timestamps given as the ms from each to the next (as the open chunk
    keeps them)."""
    return Sealed(encode_times(steps), values_body(values, flags))


def values_body(values: array[float], flags: bytes) -> bytes:
    """The `body` part of a chunk of `values` and `flags`."""
    mode, first, deltas, fixes = pack_values(values)
    if mode:
        return _deflate(len(values), mode, first, narrow(deltas), fixes, flags)
    bits = array("Q", values.tobytes()).tolist()
    words = array("Q", bits[:1])
    words.extend(map(xor, bits[1:], bits[:-1]))
    head = _BODY.pack(len(values), 0, 3)
    return deflate(b"".join((head, shuffle(words.tobytes(), 8), flags)))


def encode_scaled(steps: Sequence[int], scale: int, ints: array[int], flags: bytes) -> Sealed:
    """`encode_steps` of the values `ints[i] / scale` (`scaled_body`)."""
    return Sealed(encode_times(steps), scaled_body(scale, ints, flags))


def scaled_body(scale: int, ints: array[int], flags: bytes) -> bytes:
    """`values_body` of the values `ints[i] / scale`, each of which is that double bit for
    bit, `scale` being 1 or the first of `SCALES` at which one of them is (`exact_scale`), and
    |ints| < 2³¹ (the ring's open chunk keeps such values so): the body `values_body` makes,
    without its search. `pack_values` settles on `scale` for these values — no smaller scale
    fits the one that needs `scale` (it would be m / scale' exactly, or off it by more than
    its last 8 bits: two multiples of 1/1000 apart, below 2³¹, are ≥ 2⁻¹⁰ apart), and at
    `scale` every value is exact (tests/recorder/test_ring_narrow.py checks the chunks agree)."""
    narrowed = narrowed_deltas(ints)  # (without an int object per value: most seals)
    if narrowed is None:
        m = ints.tolist()
        narrowed = narrow(list(map(sub, m[1:], m[:-1])))
    return _deflate(len(ints), SCALES.index(scale) + 1, ints[0], narrowed, b"", flags)


def _deflate(n: int, mode: int, first: int, narrowed: tuple[int, bytes], fixes: bytes,
             flags: bytes) -> bytes:
    """A decimal-mode chunk's body (`pack_values`'s result, its deltas narrowed) in its
    layout, deflated."""
    value_code, value_data = narrowed
    head = _BODY.pack(n, mode, value_code)
    return deflate(b"".join((head, _FIRST.pack(first), value_data, fixes, flags)))


def deflate(raw: bytes) -> bytes:
    """`raw` (a chunk's layout, at most ~2.3 KB) as raw deflate at level 6, with a 4 KiB window
    and zlib's `memLevel` 6 (16 KiB hash table and symbol buffer) instead of `zlib.compress`'s
    32 KiB and 8: ~55 KiB of zlib state, allocated and freed at every seal, instead of ~260
    KiB in four blocks of 64 KiB. Every match distance of a chunk is inside the window and a
    block holds 4,096 symbols, so the stream is what `zlib.compress(raw, 6, wbits=-15)` makes
    but where a chain of the smaller hash table grows past level 6's 128 candidates (the same
    bytes for all 16,380 chunks of the benchmark's sites; about 2 % of random low-entropy
    inputs differ, by a few bytes either way); `decode_chunk` reads both. Why it matters: at 2,000
    points a ring seals 15 times a second, and blocks of 64 KiB, for which glibc's heap rarely
    has a hole, made it grow for tens of minutes (docs/performance.md, "Flat after warm-up: the
    C heap")."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -12, 6)
    return compressor.compress(raw) + compressor.flush()


def decode_chunk(times: bytes, body: bytes, first_ms: int
                 ) -> tuple[list[int], list[float], bytes]:
    """(ts in ms, value doubles, flags) of a chunk `encode_chunk` made (`Sealed`'s parts) whose
    first timestamp is `first_ms`. ValueError if the parts are not of one chunk."""
    raw = zlib.decompress(times, wbits=-15)
    width, typecode = _WIDTHS[raw[0]]
    ts = list(itertools.accumulate(array(typecode, unshuffle(raw[1:], width)),
                                   initial=first_ms))
    raw = zlib.decompress(body, wbits=-15)
    n, mode, value_code = _BODY.unpack_from(raw)
    if n != len(ts):
        raise ValueError(f"a body of {n} samples with {len(ts)} timestamps")
    at = _BODY.size
    if not mode:
        words = array("Q", unshuffle(raw[at:at + 8 * n], 8))
        at += 8 * n
        bits = array("Q", itertools.accumulate(words, xor))
        return ts, array("d", bits.tobytes()).tolist(), raw[at:at + n]
    (m,) = _FIRST.unpack_from(raw, at)
    at += _FIRST.size
    width, typecode = _WIDTHS[value_code]
    steps = array(typecode, unshuffle(raw[at:at + width * (n - 1)], width))
    at += width * (n - 1)
    scale = SCALES[(mode - 1) % len(SCALES)]
    values = list(map(truediv, itertools.accumulate(steps, initial=m), repeat(scale)))
    if mode > len(SCALES):
        fixes = raw[at:at + n]
        at += n
        if any(fixes):
            bits = array("Q", map(xor, array("Q", array("d", values).tobytes()), fixes))
            values = array("d", bits.tobytes()).tolist()
    return ts, values, raw[at:at + n]
