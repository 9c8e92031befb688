"""The deltas of a sealed chunk's scaled integers (gateway/recorder/chunk.py `encode_scaled`),
narrowed without a Python int per value: `narrowed_deltas(ints)` is
`narrow(list(map(sub, ints[1:], ints[:-1])))` wherever the deltas fit the width of `ints`'
items, which is most chunks (a register's noise: 'h' values, 1-byte deltas).

Making a list of the deltas (an int object per item, `operator.sub` called per pair) and packing
it cost about a fifth of a seal outside zlib. Here the whole array is one big integer, each item
a field of it, and the deltas come out of a few big-integer operations, field by field
("SIMD within a register"), all in C:

- the items (w bytes, little-endian) with their sign bits flipped (`bytes.translate` of their
  top bytes) are `v = m + 2**(8w-1)`, unsigned; spread to fields of 2w bytes (slices of a
  `bytearray`), `A = Σ v_i · 2**(16w·i)`;
- `X = (A >> 16w) + Σ 2**(8w) · 2**(16w·i) - (A mod 2**(16w·n))` holds, field by field,
  `c_i = d_i + 2**(8w)` with `d_i = m_(i+1) - m_i`: each is in [1, 2**(8w+1)), so no field
  borrows from or carries into the next;
- `d_i` fits t ≤ w bytes iff `c_i + 2**(8t-1)` lies in [2**(8w), 2**(8w) + 2**(8t)), i.e. its
  bytes t … 2w-1 are those of 2**(8w) (one AND and a compare for all fields), and then its
  t-byte two's complement is the low t bytes of `c_i` (2**(8w) is 0 modulo 2**(8t)): the
  byte-transposed layout `narrow` makes is the slices `X`'s bytes[k::2w], k < t.

Deltas that need a wider width than the items (t > w: rare) and big-endian machines are left
to `narrow` (None). tests/recorder/test_deltas.py checks it against the list's `narrow`.
"""

from __future__ import annotations

import sys
from array import array
from typing import Any

_WIDTHS = (1, 2, 4)
"""Delta widths tried here, by `narrow`'s width code (0, 1, 2); 8 is never narrower than the
items."""
_LITTLE = sys.byteorder == "little"
_FLIP = bytes(b ^ 0x80 for b in range(256))
"""A byte with its top bit flipped (`bytes.translate`)."""
_CONSTANTS: dict[tuple[int, int], tuple[int, int, list[tuple[int, int]]]] = {}


def _constants(w: int, n: int) -> tuple[int, int, list[tuple[int, int]]]:
    """For n deltas of w-byte items: 2**(8w) in each of n wide fields (the bias, and what the
    masks below must leave), the mask of n wide fields, and per width t ≤ w half its range
    and the mask of bytes t … 2w-1, in each field."""
    found = _CONSTANTS.get((w, n))
    if found is None:
        if len(_CONSTANTS) >= 16:  # (in use: n is CHUNK - 1 at a seal, PROBE's at a probe;
            # at most ~8 KB of ints a key)
            _CONSTANTS.clear()
        item, field = 8 * w, 16 * w

        def each(value: int, count: int, bits: int) -> int:
            return sum(value << (bits * i) for i in range(count))

        widths = [(each(1 << (8 * t - 1), n, field), each((1 << field) - (1 << (8 * t)), n, field))
                  for t in _WIDTHS if t <= w]
        found = _CONSTANTS[w, n] = (each(1 << item, n, field), (1 << (field * n)) - 1, widths)
    return found


def narrowed_deltas(ints: array[Any]) -> tuple[int, bytes] | None:
    """`chunk.narrow` of the deltas of `ints` (an array of 'b', 'h' or 'i', at least two items)
    if they fit a width no wider than its items; None if not (or on a big-endian machine)."""
    w, n = ints.itemsize, len(ints) - 1
    if n < 1 or not _LITTLE or ints.typecode not in "bhi":
        return None
    bias, low, widths = _constants(w, n)
    items = ints.tobytes()
    wide = bytearray(2 * w * (n + 1))
    for k in range(w - 1):  # each item's bytes to the low half of a field twice its width,
        wide[k::2 * w] = items[k::w]
    wide[w - 1::2 * w] = items[w - 1::w].translate(_FLIP)  # its sign bit flipped
    a = int.from_bytes(wide, "little")
    x = (a >> (16 * w)) + bias - (a & low)
    for code, (half, high) in enumerate(widths):
        if (x + half) & high == bias:
            data = x.to_bytes(2 * w * n, "little")
            t = _WIDTHS[code]
            return code, b"".join([data[k::2 * w] for k in range(t)])
    return None
