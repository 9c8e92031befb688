"""The open chunk's timestamp steps and flag bytes, shared by the rings that hold the same ones
(gateway/recorder/ring.py, intake.py).

The points of one block read share their timestamp, so their rings add the same step from the
sample before at the same slot of their open chunks, and most of them the same flag byte (good
floats): a recorder kept 2,000 copies of a few dozen distinct arrays. A `Line` is one such
array of `CHUNK` slots that any number of rings may hold, copy-on-write:

- `filled`: its first `filled` slots are written and never change while it is shared; a ring
  whose open chunk holds `n` samples relies on its line's first `n` slots, and `n ≤ filled`;
- a ring writes its `n`-th slot: past `filled` it writes it (and `filled` grows); below it,
  the slot already holds what the ring would write (nothing to do: the rings stay together)
  or it does not, and the ring moves to another line (`diverge`): the line's `fork` if that
  holds the same first `n` slots and this value, else a new copy of them (made the `fork`, so
  the other rings of its block follow it there instead of copying again);
- `users`: the rings holding it (an upper bound: a ring that is dropped does not say so). A
  ring that seals its open chunk on a line of its own (`users` 1) starts it again in place
  (nothing is re-allocated per chunk); on a shared line it stays and writes on from slot 0
  by the same rule, so a block's rings seal together onto one new line, or stay on theirs
  when the new chunk's steps are the old ones'.

What a ring reads back is its own samples whatever it shares (`tests/recorder/test_lines.py`
checks rings in lockstep, apart and in between against rings that share nothing). A recorder
hands a new ring the lines of the ring it made before it (`FlightRecorder`): the points of a
block are made one after the other, at their first sample.
"""

from __future__ import annotations

from array import array

from gateway.recorder.open_chunk import CHUNK


class Line(array):  # type: ignore[type-arg]  # (array[int]: a subclass of a generic alias)
    """`CHUNK` integer slots (see the module docstring)."""

    __slots__ = ("filled", "fork", "users")

    filled: int
    fork: Line | None
    users: int


def new_line(typecode: str, head: array[int] | None = None, value: int = 0) -> Line:
    """A line of its own (`users` 1): `head`'s slots (of any integer type) and `value` after
    them if `head` is given (OverflowError if either does not fit `typecode`), zeros after;
    allocated to size (an `array` initializer is copied exactly)."""
    slots = array(typecode, [0]) * CHUNK
    filled = 0
    if head is not None:
        filled = len(head) + 1
        slots[:filled] = array(typecode, [*head, value])
    return _own(Line(typecode, slots), filled)


def copy_of(line: Line, filled: int) -> Line:
    """A line of its own with `line`'s slots, the first `filled` of them written (a frozen
    ring's: `PointRing.frozen`)."""
    return _own(Line(line.typecode, line), filled)


def _own(line: Line, filled: int) -> Line:
    line.filled, line.fork, line.users = filled, None, 1
    return line


def join(line: Line) -> Line:
    """`line`, held by one more ring."""
    line.users += 1
    return line


def leave(line: Line) -> None:
    """A ring lets go of `line` (its fork goes with the last one: no chain of lines outlives
    its rings)."""
    line.users -= 1
    if line.users <= 0:
        line.fork = None


def diverge(line: Line, at: int, value: int, typecode: str | None = None) -> Line:
    """The line a ring on `line` (holding its first `at` slots) moves to to write `value` at
    slot `at` where `line` cannot take it: it holds another value there (see the module
    docstring), or `value` does not fit its type (`typecode`: the wider one a new line takes;
    OverflowError if `value` does not fit the type of the new line)."""
    fork = line.fork
    head = line[:at]
    if fork is None or fork.filled <= at or fork[at] != value or fork[:at] != head:
        fork = line.fork = new_line(typecode or line.typecode, head, value)
    else:
        join(fork)
    leave(line)
    return fork


def restart(line: Line) -> Line:
    """A ring's line once it sealed its open chunk: the same, emptied if it is the ring's own."""
    if line.users <= 1:
        line.filled, line.fork = 0, None
    return line


def put(line: Line, at: int, value: int) -> Line:
    """The ring's line once it wrote `value` (which fits) at slot `at` (ring.py's slow paths;
    intake.py writes the common case inline)."""
    if at >= line.filled:
        line[at] = value
        line.filled = at + 1
        return line
    return line if line[at] == value else diverge(line, at, value)
