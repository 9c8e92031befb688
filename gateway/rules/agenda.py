"""The bindings due at a round (gateway.rules.schedule says when each one is): marked by a
sample since the last round, or their deadline come. Pure: no clock, no I/O."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable

INF = math.inf


class Schedule:
    """The bindings (by index) due at a round: marked by a sample, or their deadline come.
    Each binding has at most one valid queued deadline; a deadline that moves later leaves its
    old entry, which is dropped (or moved) when it comes up.

    Deadlines are queued by time: a heap of the distinct times and, per time, the bindings
    queued at it. Bindings whose deadlines are equal share one heap entry — the rate windows
    of one block read hold samples of one time, so their oldest samples leave together (at
    2,000 points, ~940 windows at ~20 distinct times): a binding's deadline costs a dict
    look-up and an append, not a heap push and pop of a tuple among hundreds."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._marked = bytearray(b"\x01" * count)
        self._pending: list[int] = list(range(count))  # the first round evaluates everything
        self._deadline = [INF] * count
        self._queued = [INF] * count
        """The time each binding is queued at (INF: none): its entry there is the valid one."""
        self._times: list[float] = []
        """A heap of the times some binding is queued at, each once."""
        self._at: dict[float, list[int]] = {}
        """Time → the bindings queued at it (a binding may be listed where it no longer is
        queued: `_queued` says which entry counts)."""

    def mark(self, index: int) -> None:
        if not self._marked[index]:
            self._marked[index] = 1
            self._pending.append(index)

    def mark_many(self, indices: Iterable[int]) -> None:
        marked, pending = self._marked, self._pending
        for index in indices:
            if not marked[index]:
                marked[index] = 1
                pending.append(index)

    def mark_all(self) -> None:
        for index in range(self.count):
            self.mark(index)

    def set_deadline(self, index: int, when: float) -> None:
        self._deadline[index] = when
        if when < self._queued[index]:
            self._queue(index, when)

    def _queue(self, index: int, when: float) -> None:
        self._queued[index] = when
        listed = self._at.get(when)
        if listed is None:
            self._at[when] = [index]
            heapq.heappush(self._times, when)
        else:
            listed.append(index)

    def due(self, now: float) -> list[int]:
        """The bindings to evaluate at `now`, in binding order; clears their marks."""
        times, at, queued, deadlines = self._times, self._at, self._queued, self._deadline
        marked, pending = self._marked, self._pending
        while times and times[0] <= now:
            when = heapq.heappop(times)
            for index in at.pop(when):
                if when != queued[index]:
                    continue  # superseded by an earlier entry
                queued[index] = INF
                wanted = deadlines[index]
                if wanted <= now:
                    if not marked[index]:  # self.mark(index), inline
                        marked[index] = 1
                        pending.append(index)
                elif wanted < INF:  # self._queue(index, wanted), inline: a window's deadline
                    queued[index] = wanted  # moves a second later every second
                    listed = at.get(wanted)
                    if listed is None:
                        at[wanted] = [index]
                        heapq.heappush(times, wanted)
                    else:
                        listed.append(index)
        if not pending:
            return []
        self._pending = []
        if len(pending) > 32:  # a new zeroed bytearray costs less than clearing each mark
            self._marked = bytearray(len(marked))
        else:
            for index in pending:
                marked[index] = 0
        pending.sort()
        return pending

    def next_deadline(self) -> float:
        """The earliest deadline of any binding (`math.inf`: none); moves entries whose
        deadline went later, so the answer is a real deadline."""
        times, at, queued, deadlines = self._times, self._at, self._queued, self._deadline
        while times:
            when = times[0]
            valid = []
            for index in at[when]:
                if when != queued[index]:
                    continue  # superseded by an earlier entry
                wanted = deadlines[index]
                if wanted <= when:
                    valid.append(index)
                    continue
                queued[index] = INF
                if wanted < INF:
                    self._queue(index, wanted)
            if valid:
                at[when] = valid
                return when
            heapq.heappop(times)
            del at[when]
        return INF

    @property
    def pending(self) -> bool:
        """Some binding is marked (a round would evaluate it now)."""
        return bool(self._pending)
