"""The outbox's sequence numbers, reserved in blocks: telemetry goes out from memory before any
commit (gateway.uplink.outbox_held), so a number is published before the message that carries
it is on disk, and a power cut must not let the next process give it again — the ingest would
take the new message for a duplicate of the stored one and drop it.

So the counter `seq.<name>` in the outbox's `counters` table is a *high mark*: every number
up to it may have been given. When fewer than half a block (`BLOCK`) is left below the mark,
the next one is reserved (mark = number + `BLOCK`) and written with the next commit that
happens anyway (an alarm event, a state snapshot, a removal); only if the numbers reach the
committed mark first is a commit due for the reservation alone (`undurable`). A message whose
numbers are above the committed mark is not handed out (`ready`).

- A clean stop (`Outbox.close`) writes the exact last numbers back and `clean = 1`: the next
  process numbers on without a gap.
- A process that stopped otherwise (SIGKILL, a power cut: `clean` is 0, written with the first
  reservation, before any number of it was published) left numbers between its last one and
  the mark unused. The next process resumes at the mark + 1 — a gap, never a reuse — counts the
  stop (`unclean_stops`) and logs it (`event=outbox_unclean_stop`). The ingest passes the gap
  as it passes what a budget drop skipped: the gateway's state carries its `floor` (the lowest
  number it still holds, or the next one it will give), and the ingest's watermark moves up to
  the floor − 1 (gateway.ingest.watermark). What was lost is the telemetry the process held in
  memory and the ingest had not acknowledged: at most its last `telemetry_hold` seconds.

A file from before the reservations holds the last number given: the same reading (resume at
the counter + 1), with no gap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

log = logging.getLogger("roomwarden.uplink")

BLOCK = 4096
"""Numbers reserved at a time (a gap after an unclean stop is at most this, per sequence)."""
CLEAN = "clean"
"""Counter: 1 when the last process stopped cleanly (exact numbers written back), else 0."""
UNCLEAN = "unclean_stops"
"""Counter: unclean stops seen at opening (each logged)."""
LAZY = frozenset({CLEAN})
"""Counters besides `seq.*` that are written with the next commit, never a reason for one."""


class Numbers:
    def __init__(self, counters: dict[str, int]) -> None:
        """`counters`: as read from the file (the outbox's own dict, which this updates)."""
        self.issued = {key[4:]: value for key, value in counters.items()
                       if key.startswith("seq.")}
        """The last number given per sequence (after opening: the stored mark)."""
        self.durable = dict(self.issued)
        """The mark per sequence as committed: numbers up to it may be published."""
        self.unclean = counters.get(CLEAN) == 0

    def opened(self, counters: dict[str, int], dirty: set[str], path: object) -> None:
        """At opening: log and count an unclean stop; this process is running (`clean` 0,
        written with the first commit)."""
        if self.unclean:
            counters[UNCLEAN] = counters.get(UNCLEAN, 0) + 1
            dirty.add(UNCLEAN)
            log.warning("event=outbox_unclean_stop path=%s resume=%s (the last process did "
                        "not stop cleanly: the numbers it had reserved are skipped; what it "
                        "held in memory and the ingest had not acknowledged — at most its "
                        "last telemetry_hold seconds of telemetry — is lost; alarm events "
                        "and everything committed are kept)", path,
                        ",".join(f"{n}:{v + 1}" for n, v in sorted(self.issued.items())))
        if counters.get(CLEAN) != 0:
            counters[CLEAN] = 0
            dirty.add(CLEAN)

    def take(self, name: str, counters: dict[str, int], dirty: set[str]) -> int:
        """The next number of `name`; reserves the next block when less than half is left."""
        value = self.issued.get(name, 0) + 1
        self.issued[name] = value
        key = f"seq.{name}"
        if counters.get(key, 0) - value < BLOCK // 2:
            counters[key] = value + BLOCK
            dirty.add(key)
        return value

    def undurable(self) -> bool:
        """A number was given above its committed mark: a commit is due before it goes out."""
        return any(v > self.durable.get(n, 0) for n, v in self.issued.items())

    def ready(self, seq: int | None, dseq: int | None) -> bool:
        """A telemetry message carrying these numbers may be handed out (both committed)."""
        return (seq is None or seq <= self.durable.get("telemetry", 0)) and \
            (dseq is None or dseq <= self.durable.get("delivery", 0))

    def committed(self, counters: dict[str, int]) -> None:
        """A commit wrote `counters`: their marks are durable."""
        self.durable = {n: counters.get(f"seq.{n}", 0) for n in self.issued}

    def finish(self, counters: dict[str, int], dirty: set[str]) -> None:
        """A clean stop: the exact last numbers and `clean` = 1, for the final commit."""
        for name, value in self.issued.items():
            counters[f"seq.{name}"] = value
            dirty.add(f"seq.{name}")
        counters[CLEAN] = 1
        dirty.add(CLEAN)


def lazy(names: Iterable[str]) -> bool:
    """Only counters that wait for a commit that happens anyway."""
    return all(n.startswith("seq.") or n in LAZY for n in names)
