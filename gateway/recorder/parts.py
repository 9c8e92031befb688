"""The sealed chunks' steps' parts a flight recorder's rings share (gateway/recorder/chunk.py:
the rings of a block read seal alike, so 200 rings hold one part), each kept once and counted.

A ring's bookkeeping (gateway/recorder/bookkeeping.py) holds a part's number in a slot of its
array, 4 bytes, where a list of `bytes` a ring took about 125 bytes (0.24 MiB at 2,000
points). The rings of one `FlightRecorder` share one table (each made beside the one before);
a ring made alone, an incident's or a frozen copy, has its own. Used from the thread that
records into the rings (the table is not locked), as the rings are; a frozen copy, read in
another thread, has parts of its own.
"""

from __future__ import annotations

__all__ = ["Parts"]


class Parts:
    """Parts by number: `hold` one (the same number for an equal part), `release` it once for
    each hold; a part nothing holds goes, and its number is given to the next new one."""

    __slots__ = ("_free", "_holds", "_numbers", "_parts")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._holds: list[int] = []
        """How many entries hold each part (0: a free number)."""
        self._numbers: dict[bytes, int] = {}
        self._free: list[int] = []

    def hold(self, part: bytes) -> int:
        """`part`'s number (held once more)."""
        number = self._numbers.get(part)
        if number is not None:
            self._holds[number] += 1
            return number
        if self._free:
            number = self._free.pop()
            self._parts[number], self._holds[number] = part, 1
        else:
            number = len(self._parts)
            self._parts.append(part)
            self._holds.append(1)
        self._numbers[part] = number
        return number

    def release(self, number: int) -> None:
        """One hold of part `number` less (the part goes with the last)."""
        holds = self._holds[number] - 1
        self._holds[number] = holds
        if not holds:
            del self._numbers[self._parts[number]]
            self._parts[number] = b""
            self._free.append(number)

    def __getitem__(self, number: int) -> bytes:
        return self._parts[number]

    def __len__(self) -> int:
        """Parts held."""
        return len(self._numbers)

    def containers(self) -> list[object]:
        """The table's own objects (for `live_bytes`)."""
        return [self, self._parts, self._holds, self._numbers, self._free]
