"""Which samples a plot needs: at most four per pixel column of each unbroken stretch of its
line — the first, the lowest, the highest and the last (the "M4" reduction, which draws the
same picture as every sample at the plot's resolution) — and the first sample of each break
(not good, or no number), which ends a stretch. A 66-minute incident of a 100 ms register then
plots about 3,600 points, not 40,000; a report stays a few hundred kilobytes a plot at most."""

from __future__ import annotations

from collections.abc import Sequence

PER_COLUMN = 4


def kept(ts: Sequence[int], numbers: Sequence[float | None], good: Sequence[bool],
         t0: float, t1: float, columns: int) -> list[int]:
    """Indexes (ascending) of the samples to plot on `columns` columns from `t0` to `t1`."""
    n = len(ts)
    if n <= PER_COLUMN * columns:
        return list(range(n))
    scale = columns / max(t1 - t0, 1e-9)
    out: list[int] = []
    group: list[int] = []  # first, lowest, highest, last of the current column's stretch
    lowest = highest = 0.0
    column: int | None = None
    broken = False
    for i in range(n):
        number = numbers[i]
        if number is None or not good[i]:
            if group:
                out += sorted(set(group))
                group = []
            if not broken:
                out.append(i)
                broken = True
            column = None
            continue
        broken = False
        c = int((ts[i] - t0) * scale)
        if c != column or not group:
            if group:
                out += sorted(set(group))
            group, column, lowest, highest = [i, i, i, i], c, number, number
            continue
        group[3] = i
        if number < lowest:
            group[1], lowest = i, number
        elif number > highest:
            group[2], highest = i, number
    if group:
        out += sorted(set(group))
    return out
