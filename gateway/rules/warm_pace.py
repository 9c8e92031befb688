"""When the rate windows' periodic save (gateway.rules.warm) writes: only when a window's values
moved since the last save, and no more bytes a day than `DAILY_BYTES` (principle 6: storage
writes scale with change, not with time, and have a budget in bytes a day).

The wear audit (W6) found the file rewritten every minute whatever happened: a save was skipped
only when no window took a sample at all, and a polled point gives its windows a sample every
poll whether its value moves or not. Now a save is skipped also when every sample the windows
took since the last save has the value of the sample before it in its window (`moved`): the
file on disk then holds those windows' value already — a still room writes nothing. A site
whose values move (sensor noise: with hundreds of rate points one of them moves every minute)
still writes each period, so the period grows with the file past the budget (`paced`): the
2,000-point benchmark site with noisy registers wrote a 210 KB file every minute (0.30 GB a
day) and now every 5½ minutes (51 MB a day); files smaller than `DAILY_BYTES` / 1,440 (35 KB:
the shipped sites' about 1 KB, the benchmark's in whole units 17 KB) keep the save a minute.
48 MiB a day is 17 GB a year, about 0.6 % of the ~3 TB a cheap 32 GB card endures.

What a crash may lose: the samples since the last save, so at most one period — a minute with
the shipped packs while the file is within the budget, as before; past it at most a tenth of
the longest rate window (6 minutes for the shipped packs' hour windows, which then restore the
54 minutes before; a minute's window is then cold after a crash, as after any power cut: its
samples are older than its window by the time the gateway runs again). A window whose
values did not move since the last save restores the older samples of the same value it had
then (or starts cold if they are older than the window: its slope was zero, and a cold window
is judged after `min_span`, as at a first start). A clean stop saves everything.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.rules.warm_copy import Snapshot

DAILY_BYTES = 48 * 2**20
"""Bytes a day the periodic saves may write (a larger file is saved less often)."""
DAY = 86_400.0


def moved(snapshot: Snapshot, since: float, sources: dict[str, str]) -> bool:
    """Did a window take, after monotonic time `since` (the last save's newest sample), a
    sample whose value differs (bit for bit: NaN is NaN) from the one before it in its window,
    or a first sample? Or do its points or their fingerprints differ from the file's
    (`sources`: a config apply)? If not, the file holds the windows' values already: only the
    times of later samples of the same values are not in it."""
    if {point: source for point, (source, _) in snapshot.points.items()} != sources:
        return True
    at = 0
    for _, lengths in snapshot.points.values():
        for n in lengths:
            times = snapshot.times[at:at + n]
            first = bisect_right(times, since)
            if first < n:
                if first == 0:
                    return True
                run = snapshot.values[at + first - 1:at + n]
                if bytes(run) != array("d", [run[0]]).tobytes() * len(run):
                    return True
            at += n
    return False


def paced(period: float, longest: float, last_bytes: int) -> float:
    """Seconds to the next periodic save: `period` (a tenth of the longest window, between the
    bounds of gateway.rules.warm), longer when saves of `last_bytes` at that pace would pass
    `DAILY_BYTES` a day, up to a tenth of the longest window (`longest`, s)."""
    budget = last_bytes * DAY / DAILY_BYTES
    return max(period, min(budget, longest / 10.0))
