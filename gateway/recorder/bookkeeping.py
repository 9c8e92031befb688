"""A flight-recorder ring's bookkeeping of its sealed chunks (gateway/recorder/ring.py): the
body's length, first and last timestamp (ms) of each, oldest first, three slots a chunk of one
array (`_index[_head:_tail]`) used as a queue in place like the store, reserved for a window of
chunks at the ring's `PROBE`th sample and grown by a quarter only if the live entries fill it;
beside it, in a list of a slot a chunk used the same way (`_times`, slot `i // 3` for the entry
at `i`), each chunk's steps' part, which the rings of a block share (gateway/recorder/chunk.py).

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
    """Slots for at least `chunks` sealed chunks in `ring._index` and `ring._times` (new ones,
    allocated to size, with the live entries at their start), if they have fewer."""
    if len(ring._index) < 3 * chunks:
        head, live = ring._head, ring._tail - ring._head
        slots = max(chunks, live // 3)
        index = array(ring._index.typecode, [0]) * (3 * slots)
        index[:live] = ring._index[head:ring._tail]
        times = [b""] * slots
        times[:live // 3] = ring._times[head // 3:ring._tail // 3]
        ring._index, ring._times, ring._head, ring._tail = index, times, 0, live


def note(ring: PointRing, length: int, first: int, last: int, times: bytes) -> None:
    """A sealed chunk's entry (its body's length, first and last ms, its steps' part), after
    the others: moved back to the start when the end is reached, grown by a quarter if the live
    entries fill the slots."""
    if ring._tail + 3 > len(ring._index):
        if ring._head:
            head, live = ring._head, ring._tail - ring._head
            ring._index[:live] = ring._index[head:ring._tail]
            kept = ring._times[head // 3:ring._tail // 3]
            ring._times[:] = kept + [b""] * (len(ring._times) - len(kept))  # (its length kept)
            ring._head, ring._tail = 0, live
        else:
            reserve(ring, len(ring._index) // 3 * 5 // 4 + 1)
    epoch = ring._epoch
    if ring._index.typecode == "i" and not (-_I <= first - epoch < _I and -_I <= last - epoch < _I):
        _rebase(ring, first, last)
    index, at, epoch = ring._index, ring._tail, ring._epoch
    index[at], index[at + 1], index[at + 2] = length, first - epoch, last - epoch
    ring._times[at // 3] = times
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
    ring._epoch = _shared_epoch(epoch + low)


_last_epoch = 0


def _shared_epoch(epoch: int) -> int:
    """`epoch`, as the int object the ring rebased before got if they are equal: the rings of a
    block rebase to their first chunk's first time at their first seal, one after the other
    (2,000 int objects of 36 bytes at 2,000 points, one a ring, before)."""
    global _last_epoch
    last = _last_epoch  # (one read: another thread's rings may rebase too)
    if epoch == last:
        return last
    _last_epoch = epoch
    return epoch


def drop_oldest(ring: PointRing) -> None:
    """The oldest sealed chunk goes (from the store and the bookkeeping; the store's offsets
    stay where they are, so `_end` is 0 only before the ring's first seal)."""
    ring._start += ring._index[ring._head]
    ring._times[ring._head // 3] = b""  # (the part goes with the last ring holding it)
    ring._head += 3
    if ring._head == ring._tail:
        ring._head = ring._tail = 0


def entries(ring: PointRing) -> array[int]:
    """Length, first and last timestamp (ms) of each sealed chunk, oldest first (a copy, in
    8 bytes; the steps' parts: `live_times`)."""
    index = array("q", ring._index[ring._head:ring._tail])
    if ring._epoch:
        epoch = ring._epoch
        for at in range(1, len(index), 3):
            index[at] += epoch
            index[at + 1] += epoch
    return index


def live_times(ring: PointRing) -> list[bytes]:
    """The steps' part of each sealed chunk, oldest first (as `entries`)."""
    return ring._times[ring._head // 3:ring._tail // 3]
