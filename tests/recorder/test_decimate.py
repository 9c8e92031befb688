"""A plot keeps, per pixel column of each unbroken stretch, the first, lowest, highest and last
sample, and the first sample of each break: the same picture as every sample, at most about
four points a column (gateway/recorder/decimate.py)."""

from __future__ import annotations

from collections import defaultdict
from itertools import accumulate, pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.recorder.decimate import PER_COLUMN, kept

samples = st.lists(st.tuples(st.integers(0, 5000), st.one_of(st.none(), st.floats(-1e3, 1e3)),
                             st.booleans() | st.just(True)), min_size=0, max_size=600)


@settings(max_examples=300, deadline=None)
@given(samples=samples, columns=st.integers(1, 60))
def test_the_kept_samples_draw_what_every_sample_draws(
        samples: list[tuple[int, float | None, bool]], columns: int) -> None:
    ts = list(accumulate((s[0] for s in samples), initial=10**12))[1:]
    numbers = [s[1] for s in samples]
    good = [s[2] for s in samples]
    t0, t1 = (ts[0], ts[-1]) if ts else (0, 1)
    out = kept(ts, numbers, good, t0, t1, columns)
    assert out == sorted(set(out)) and all(0 <= i < len(ts) for i in out)
    if len(ts) <= PER_COLUMN * columns:
        assert out == list(range(len(ts)))
        return
    scale = columns / max(t1 - t0, 1e-9)
    stretches: dict[tuple[int, int], list[int]] = defaultdict(list)
    drawn: dict[int, float] = {}  # the samples that draw a line, by index
    run = 0
    for i, number in enumerate(numbers):
        if number is None or not good[i]:
            if i == 0 or (numbers[i - 1] is not None and good[i - 1]):
                assert i in out  # the first sample of a break ends the line there
            run += 1
            continue
        stretches[(run, int((ts[i] - t0) * scale))].append(i)
        drawn[i] = number
    kept_set = set(out)
    for members in stretches.values():
        values = [drawn[i] for i in members]
        assert members[0] in kept_set and members[-1] in kept_set
        assert min(values) in [numbers[i] for i in members if i in kept_set]
        assert max(values) in [numbers[i] for i in members if i in kept_set]
        assert len([i for i in members if i in kept_set]) <= PER_COLUMN
    breaks = sum(1 for a, b in pairwise([None, *range(len(ts))])
                 if b is not None and (numbers[b] is None or not good[b])
                 and (a is None or (numbers[a] is not None and good[a])))
    assert len(out) <= PER_COLUMN * len(stretches) + breaks


def test_a_long_noisy_series_keeps_four_a_column_and_its_extremes() -> None:
    import math
    import random

    rnd = random.Random(3)
    n, columns = 40_000, 810
    ts = [10**12 + 100 * i for i in range(n)]
    numbers: list[float | None] = [math.sin(i / 900) * 10 + rnd.gauss(0, 1) for i in range(n)]
    good = [not 20_000 <= i < 20_050 for i in range(n)]  # a stretch of comm errors
    out = kept(ts, numbers, good, ts[0], ts[-1], columns)
    assert len(out) <= PER_COLUMN * (columns + 2) + 1
    assert 20_000 in out and 20_001 not in out  # one point breaks the line
    values = [v for i in out if good[i] and (v := numbers[i]) is not None]
    every = [v for v, g in zip(numbers, good, strict=True) if g and v is not None]
    assert (max(values), min(values)) == (max(every), min(every))
