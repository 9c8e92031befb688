"""The saved rate windows' file format (gateway.rules.warm_file): version 2 gives back, for
any runs of samples, what version 1 saved of them — per point the union of its windows'
samples, oldest first, with their ages in ms — and a version-1 file left by the release
before restores the same windows as a version-2 file of the same state (an upgrade keeps its
warm start)."""

from __future__ import annotations

import json
import math
import zlib
from array import array
from collections.abc import Iterable
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.clock import ManualClock
from gateway.rules.warm import FILE_NAME, RateMemory
from gateway.rules.warm_file import MAGIC_V1, MAX_POINT_SAMPLES, decode, encode, header_text
from tests.rules.test_warm import (
    POINT,
    SAVED_BOOT,
    START_NS,
    _engine,
    _judged,
    _restart,
    _rise,
    _site,
    booted,
)

runs_of = st.lists(  # one window's samples: times in order, any values
    st.lists(st.tuples(st.floats(0.0, 5000.0), st.one_of(
        st.floats(-1e6, 1e6), st.sampled_from([0.0, -0.0, 22.0, math.inf, -math.inf]))),
        max_size=60).map(lambda samples: sorted(samples, key=lambda s: s[0])),
    min_size=1, max_size=4)


def _run(samples: list[tuple[float, float]]) -> tuple[array[float], array[float]]:
    return array("d", [t for t, _ in samples]), array("d", [v for _, v in samples])


def _key(values: Iterable[float]) -> list[str]:
    return [repr(v) for v in values]


@settings(max_examples=200, deadline=None)
@given(points=st.dictionaries(st.sampled_from(["a.t", "b.t", "c.h", "d.x"]), runs_of,
                              min_size=1),
       mono=st.floats(5000.0, 1e7), saved_ns=st.integers(0, 2**62))
def test_a_file_gives_back_each_points_union_oldest_first(
        points: dict[str, list[list[tuple[float, float]]]], mono: float,
        saved_ns: int) -> None:
    """Ages in ms rounded as version 1 rounded them; one sample per (age, value); by age
    from the oldest, then by value."""
    data = encode(saved_ns, mono, {p: ("src-" + p, [_run(r) for r in runs])
                                   for p, runs in points.items()})
    got_ns, got = decode(data)
    assert got_ns == saved_ns and set(got) == set(points)
    for point_id, runs in points.items():
        pairs = {(round((mono - t) * 1000.0), v) for run in runs for t, v in run}
        want = sorted(pairs, key=lambda p: (-p[0], p[1]))
        record = got[point_id]
        assert record.source == "src-" + point_id
        assert list(record.ages_ms) == [age for age, _ in want]
        assert _key(record.values) == _key([v for _, v in want])


def _v1(saved_ns: int, mono: float, points: dict[str, tuple[str, list[list[tuple[float, float]]]]]
        ) -> bytes:
    """A file as the release before wrote it (gateway.rules.warm at 0617cfb): per point the
    union of its windows' finite samples, thinned to MAX_POINT_SAMPLES, as ages in ms."""
    saved_s = saved_ns / 1e9
    offset = saved_s - mono
    document = {"version": 1, "saved_ns": saved_ns, "points": {}}
    for point_id, (source, runs) in points.items():
        merged = sorted({s for run in runs for s in run if math.isfinite(s[1])})
        if len(merged) > MAX_POINT_SAMPLES:
            step = len(merged) / MAX_POINT_SAMPLES
            merged = [merged[int(i * step)] for i in range(MAX_POINT_SAMPLES - 1)] + \
                [merged[-1]]
        document["points"][point_id] = {  # type: ignore[index]
            "source": source,
            "age_ms": [max(0, round((saved_s - (t + offset)) * 1000)) for t, _ in merged],
            "value": [v for _, v in merged]}
    return MAGIC_V1 + zlib.compress(json.dumps(document, separators=(",", ":")).encode(), 6)


def test_a_file_of_the_release_before_reads_the_same_samples(tmp_path: Path) -> None:
    """20 min of a rise saved by this release, and the same windows written as version 1
    wrote them: both decode to the same samples (ages in the ms both versions round to). The
    version-1 file says neither its boot nor whether its clock was synchronised: after a
    reboot it starts cold (tests/rules/test_warm_clock.py); this release's is restored and
    judges the rate at once."""
    loaded = _site(tmp_path)
    clock = ManualClock(start_ns=START_NS, start_mono=50_000.0)
    engine = _engine(loaded, clock)
    last = _rise(engine, clock, 1200.0, every=7.0)
    with booted(SAVED_BOOT):
        memory = RateMemory(tmp_path, clock)
        snapshot = memory.snapshot(engine, loaded)
    assert memory.write(snapshot)
    new_dir, old_dir = tmp_path / "v3", tmp_path / "v1"
    new_dir.mkdir()
    old_dir.mkdir()
    (new_dir / FILE_NAME).write_bytes((tmp_path / FILE_NAME).read_bytes())
    (old_dir / FILE_NAME).write_bytes(_v1(snapshot.saved_ns, snapshot.saved_mono, {
        p: (source, [list(zip(t, v, strict=True)) for t, v in runs])
        for p, (source, runs) in snapshot.decoded().runs().items()}))
    (new_ns, new_points), (old_ns, old_points) = (
        decode((directory / FILE_NAME).read_bytes()) for directory in (new_dir, old_dir))
    assert new_ns == old_ns and new_points.keys() == old_points.keys()
    assert new_points[POINT].ages_ms
    for point_id, mine in new_points.items():
        theirs = old_points[point_id]
        assert mine.source == theirs.source
        assert list(mine.ages_ms) == list(theirs.ages_ms)
        assert list(mine.values) == list(theirs.values)
    fresh, fresh_clock, taken = _restart(new_dir, loaded, gap=30.0)
    assert taken > 50 and _judged(fresh, fresh_clock, last + 0.1)
    assert _restart(old_dir, loaded, gap=30.0)[2] == 0


def test_a_whole_site_save_holds_no_copy_of_all_its_samples() -> None:
    """A save of 100,000 samples (about a 2,000-point site's windows) peaks at a fraction of
    what copies of all of them would take (a list of their ages alone: ~3.2 MB; 4.7 MB at
    47,500 samples before the encoding was streamed): the heap glibc keeps after a save
    stays small. Same bytes as one zlib stream of the whole file."""
    import tracemalloc

    points = {f"d{p // 100}.t{p}": ("src", [(array("d", [float(i) for i in range(100)]),
                                              array("d", [20.0 + (i * 7 % 13) / 100
                                                          for i in range(100)]))] * 2)
              for p in range(500)}
    samples = 500 * 2 * 100
    tracemalloc.start()
    try:
        data = encode(1, 200.0, points)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 * samples, peak  # the ages' int64 array while it grows, and the output
    body = zlib.decompress(data[len(b"roomwarden-rate-windows 2\n"):])
    header, _, planes = body.partition(b"\n")
    assert json.loads(header)["points"]["d0.t0"]["runs"] == [100, 100]
    assert len(planes) == 16 * samples
    restored = decode(data)[1]["d0.t0"]
    assert restored.ages_ms[0] == 200_000 - 0 and len(restored.values) == 100


def test_a_decoded_file_holds_no_python_number_per_sample() -> None:
    """A restore reads the file into mappings of its own and gives each point views or arrays
    of 8-byte numbers, not lists of Python ints and floats: a restore of a full file at the
    2,000-point site left RssAnon 13.5 MiB higher than a cold start with lists and the body's
    copies on the heap (50 bytes a sample held, 133 at the peak), 2.5 MiB now."""
    import tracemalloc

    run = (array("d", [float(i) for i in range(100)]),
           array("d", [20.0 + (i * 7 % 13) / 100 for i in range(100)]))
    points = {f"d{p // 100}.t{p}": ("src", [run] * (1 + p % 2)) for p in range(1000)}
    samples = 150_000  # 500 points of one run and 500 of two, 100 samples each
    data = encode(1, 200.0, points)
    tracemalloc.start()
    try:
        _, got = decode(data)
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(got) == 1000 and list(got["d0.t1"].ages_ms) == list(range(200_000, 100_000, -1000))
    assert held < 16 * samples and peak < 32 * samples, (held / samples, peak / samples)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**63 - 1), st.dictionaries(
    st.text(max_size=12), st.tuples(st.text(max_size=20), st.lists(st.integers(0, 10**7),
                                                                   max_size=4)), max_size=6))
def test_the_header_a_point_at_a_time_is_the_json_of_the_whole(
        saved_ns: int, points: dict[str, tuple[str, list[int]]]) -> None:
    """`header_text` writes, a point at a time, exactly what json.dumps of the header as one
    dict gave (any ids and fingerprints: quotes, backslashes, control and non-ASCII
    characters), so files written before and after read alike."""
    whole = json.dumps({"version": 2, "saved_ns": saved_ns, "points": {
        point_id: {"source": source, "runs": runs}
        for point_id, (source, runs) in points.items()}}, separators=(",", ":"),
        allow_nan=False)
    assert "".join(header_text(saved_ns, points)) == whole + "\n"
