"""A flight-recorder ring's bookkeeping of its sealed chunks (gateway/recorder/ring.py): the
length, first and last timestamp (ms) of each, oldest first, three slots a chunk of one array
(`_index[_head:_tail]`) used as a queue in place like the store, reserved for a window of
chunks at the ring's `PROBE`th sample and grown by a quarter only if the live entries fill it.

The timestamps are kept relative to the ring's `_epoch` in 4 bytes each (8 were 0.2 MiB at
2,000 points): the live chunks of a ring lie within its window of each other, so a time that
does not fit is the first of a ring or one 24 days on (`_rebase`: the entries move to the
oldest time they hold, in place); only a ring whose live entries span more than that (a
window or a chunk of over 24 days) has them in 8 bytes, from then on. A clock step moves
`_epoch` alone.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.recorder.ring import PointRing

_I = 2**31


def reserve(ring: PointRing, chunks: int) -> None:
    """Slots for at least `chunks` sealed chunks in `ring._index` (a new array, allocated to
    size, with the live entries at its start), if it has fewer."""
    if len(ring._index) < 3 * chunks:
        live = ring._tail - ring._head
        index = array(ring._index.typecode, [0]) * (3 * max(chunks, live // 3))
        index[:live] = ring._index[ring._head:ring._tail]
        ring._index, ring._head, ring._tail = index, 0, live


def note(ring: PointRing, length: int, first: int, last: int) -> None:
    """A sealed chunk's entry, after the others: moved back to the array's start when its end
    is reached, grown by a quarter if the live entries fill it."""
    if ring._tail + 3 > len(ring._index):
        if ring._head:
            live = ring._tail - ring._head
            ring._index[:live] = ring._index[ring._head:ring._tail]
            ring._head, ring._tail = 0, live
        else:
            reserve(ring, len(ring._index) // 3 * 5 // 4 + 1)
    epoch = ring._epoch
    if ring._index.typecode == "i" and not (-_I <= first - epoch < _I and -_I <= last - epoch < _I):
        _rebase(ring, first, last)
    index, at, epoch = ring._index, ring._tail, ring._epoch
    index[at], index[at + 1], index[at + 2] = length, first - epoch, last - epoch
    ring._tail = at + 3


def _rebase(ring: PointRing, first: int, last: int) -> None:
    """`first` and `last` do not fit relative to `_epoch`: the epoch moves to the oldest time
    among them and the live entries (which move with it), or the entries widen to 8 bytes if
    those times are 24 days or more apart."""
    index, epoch = ring._index, ring._epoch
    times = [first - epoch, last - epoch]
    for at in range(ring._head + 1, ring._tail, 3):
        times += index[at:at + 2]
    low = min(times)
    if max(times) - low >= _I:
        if index.typecode != "q":
            ring._index = array("q", index)
        return
    for at in range(ring._head + 1, ring._tail, 3):
        index[at] -= low
        index[at + 1] -= low
    ring._epoch = epoch + low


def drop_oldest(ring: PointRing) -> None:
    """The oldest sealed chunk goes (from the store and the bookkeeping; the store's offsets
    stay where they are, so `_end` is 0 only before the ring's first seal)."""
    ring._start += ring._index[ring._head]
    ring._head += 3
    if ring._head == ring._tail:
        ring._head = ring._tail = 0


def entries(ring: PointRing) -> array[int]:
    """Length, first and last timestamp (ms) of each sealed chunk, oldest first (a copy, in
    8 bytes)."""
    index = array("q", ring._index[ring._head:ring._tail])
    if ring._epoch:
        epoch = ring._epoch
        for at in range(1, len(index), 3):
            index[at] += epoch
            index[at + 1] += epoch
    return index
