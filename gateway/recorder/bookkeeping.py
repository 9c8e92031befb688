"""A flight-recorder ring's bookkeeping of its sealed chunks (gateway/recorder/ring.py), all in
one array of ints, `_index`: the store's offsets (`_index[START]`, `_index[END]`: the live
bodies are `_data[start:end]`), then four slots a chunk — the body's length, its first and
last timestamp (ms), the number of its steps' part in the recorder's table of parts the rings
of a block share (gateway/recorder/parts.py) — oldest first (`_index[_head:_tail]`), used as a
queue in place like the store, reserved for a window of chunks at the ring's `PROBE`th sample
and grown by a quarter only if the live entries fill it. (The offsets and parts were an int
object each and a list a ring: 0.37 MiB at 2,000 points, most of it taken as the window
filled.)

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

from gateway.recorder.parts import Parts

if TYPE_CHECKING:
    from gateway.recorder.ring import PointRing

_I = 2**31
START, END = 0, 1
"""`_index`'s slots of the store's offsets."""
FIRST = 2
"""`_index`'s first chunk slot (`_head` and `_tail` when it has no chunks)."""
STRIDE = 4
"""Slots a chunk: length, first ms, last ms, part number."""


def new_index() -> array[int]:
    """A ring's bookkeeping before its first chunk: the offsets, no chunk slots."""
    return array("i", (0, 0))


def reserve(ring: PointRing, chunks: int) -> None:
    """Slots for at least `chunks` sealed chunks in `ring._index` (a new array, allocated to
    size, with the offsets and the live entries at its start), if it has fewer."""
    if len(ring._index) < FIRST + STRIDE * chunks:
        head, tail, old = ring._head, ring._tail, ring._index
        live = tail - head
        index = array(old.typecode, [0]) * (FIRST + STRIDE * max(chunks, live // STRIDE))
        index[START], index[END] = old[START], old[END]
        index[FIRST:FIRST + live] = old[head:tail]
        ring._index, ring._head, ring._tail = index, FIRST, FIRST + live


def note(ring: PointRing, length: int, first: int, last: int, times: bytes) -> None:
    """A sealed chunk's entry (its body's length, first and last ms, its steps' part), after
    the others: moved back to the start when the end is reached, grown by a quarter if the live
    entries fill the slots."""
    if ring._tail + STRIDE > len(ring._index):
        if ring._head > FIRST:
            head, live = ring._head, ring._tail - ring._head
            ring._index[FIRST:FIRST + live] = ring._index[head:ring._tail]
            ring._head, ring._tail = FIRST, FIRST + live
        else:
            reserve(ring, (len(ring._index) - FIRST) // STRIDE * 5 // 4 + 1)
    epoch = ring._epoch
    if ring._index.typecode == "i" and not (-_I <= first - epoch < _I and -_I <= last - epoch < _I):
        _rebase(ring, first, last)
    index, at, epoch = ring._index, ring._tail, ring._epoch
    index[at], index[at + 1], index[at + 2] = length, first - epoch, last - epoch
    index[at + 3] = ring._parts.hold(times)
    ring._tail = at + STRIDE


def _rebase(ring: PointRing, first: int, last: int) -> None:
    """`first` and `last` do not fit relative to `_epoch`: the epoch moves to the oldest time
    among them and the live entries (which move with it), or the entries widen to 8 bytes if
    those times are 24 days or more apart."""
    index, epoch = ring._index, ring._epoch
    times = [first - epoch, last - epoch]
    for at in range(ring._head + 1, ring._tail, STRIDE):
        times += index[at:at + 2]
    low = min(times)
    if max(times) - low >= _I:
        if index.typecode != "q":
            ring._index = array("q", index)
        return
    for at in range(ring._head + 1, ring._tail, STRIDE):
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
    stay where they are, so `END` is 0 only before the ring's first seal)."""
    index, head = ring._index, ring._head
    index[START] += index[head]
    ring._parts.release(index[head + 3])  # (the part goes with the last entry holding it)
    head += STRIDE
    if head == ring._tail:
        ring._head = ring._tail = FIRST
    else:
        ring._head = head


def entries(ring: PointRing) -> array[int]:
    """Length, first and last timestamp (ms) of each sealed chunk, oldest first: three slots
    a chunk (a copy, in 8 bytes; the steps' parts: `live_times`)."""
    live = array("q", ring._index[ring._head:ring._tail])
    index = array("q", [0]) * (len(live) // STRIDE * 3)
    index[0::3], index[1::3], index[2::3] = live[0::STRIDE], live[1::STRIDE], live[2::STRIDE]
    if ring._epoch:
        epoch = ring._epoch
        for at in range(1, len(index), 3):
            index[at] += epoch
            index[at + 1] += epoch
    return index


def live_times(ring: PointRing) -> list[bytes]:
    """The steps' part of each sealed chunk, oldest first (as `entries`)."""
    parts = ring._parts
    return [parts[n] for n in ring._index[ring._head + 3:ring._tail:STRIDE]]


def live_span(ring: PointRing) -> tuple[int, int]:
    """(start, end): the live chunks' bodies are `ring._data[start:end]`."""
    return ring._index[START], ring._index[END]


def copy_bookkeeping(copy: PointRing, ring: PointRing, body_bytes: int) -> None:
    """`copy`'s bookkeeping (a frozen copy: `ring`'s live bodies at its store's start, in
    `body_bytes`), with parts of its own (a copy is read in another thread)."""
    copy._parts = Parts()
    live = ring._index[ring._head:ring._tail]
    index = array("q", [0, body_bytes]) + array("q", live)
    for at in range(FIRST, len(index), STRIDE):
        index[at + 1] += ring._epoch
        index[at + 2] += ring._epoch
        index[at + 3] = copy._parts.hold(ring._parts[index[at + 3]])
    copy._index, copy._head, copy._tail, copy._epoch = index, FIRST, len(index), 0
