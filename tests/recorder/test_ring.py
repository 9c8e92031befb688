"""The flight recorder's ring: what goes in comes back (to the millisecond, every value kind
and quality), the window and the per-point cap bound it, incident records round-trip on disk."""

from __future__ import annotations

import math
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.field.sample import Quality, Sample
from gateway.recorder.ring import CHUNK, MAX_STRINGS, OVERFLOW_STRING, FlightRecorder, PointRing
from gateway.recorder.store import IncidentError, IncidentStore
from tests.recorder.keeper_rig import stored_record

T0 = 1_700_000_000_000_000_000
values = st.one_of(st.none(), st.booleans(), st.integers(-2**53, 2**53),
                   st.floats(allow_nan=False), st.sampled_from(["ok", "fault", "", "x" * 40]))


def same(a: object, b: object) -> bool:
    return type(a) is type(b) and (a == b or (isinstance(a, float) and isinstance(b, float)
                                            and math.isnan(a) and math.isnan(b)))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), values, st.sampled_from(list(Quality))),
                min_size=1, max_size=3 * CHUNK + 5))
def test_what_goes_in_comes_back(items: list[tuple[int, object, Quality]]) -> None:
    ring = PointRing(window_s=10**6, max_samples=10**6)
    ts = T0
    expected = []
    for step, value, quality in items:
        ts += step * 1_000_000 + 123  # sub-millisecond part is dropped
        ring.append(ts, value, quality)  # type: ignore[arg-type]
        expected.append((ts // 1_000_000 * 1_000_000, value, quality))
    got = ring.samples()
    assert len(got) == len(expected) == len(ring)
    for (t, v, q), r in zip(expected, got, strict=True):
        assert r.ts == t and r.quality is q and same(r.value, v), (r, v)


def test_special_floats_and_decimal_values_round_trip() -> None:
    ring = PointRing(window_s=10**6, max_samples=10**6)
    specials = [math.inf, -math.inf, math.nan, -0.0, 5e-324, 1e308, 0.1, 23.4, 1e-7]
    data = [specials[i % len(specials)] for i in range(CHUNK * 2)]
    for i, v in enumerate(data):
        ring.append(T0 + i * 10**9, v, Quality.GOOD)
    for v, r in zip(data, ring.samples(), strict=True):
        assert same(r.value, v) and math.copysign(1, r.value) == math.copysign(1, v)  # type: ignore[arg-type]


def test_strings_beyond_the_table_read_as_overflow() -> None:
    ring = PointRing(window_s=10**6, max_samples=10**6)
    for i in range(MAX_STRINGS + 3):
        ring.append(T0 + i * 10**9, f"s{i}", Quality.GOOD)
    got = [r.value for r in ring.samples()]
    assert got[:MAX_STRINGS] == [f"s{i}" for i in range(MAX_STRINGS)]
    assert got[MAX_STRINGS:] == [OVERFLOW_STRING] * 3


def test_the_window_and_the_cap_bound_a_ring() -> None:
    recorder = FlightRecorder(60.0, interval_of=lambda point: 1.0)
    for second in range(3600):  # an hour at 1 s
        recorder.record([Sample("d.p", 20.0 + second % 7, T0 + second * 10**9, Quality.GOOD)])
    ring = recorder.rings["d.p"]
    kept = ring.samples()
    assert len(kept) <= recorder.capacity("d.p") + CHUNK
    assert kept[-1].ts == T0 + 3599 * 10**9
    assert kept[0].ts <= T0 + (3599 - 60) * 10**9  # at least the window is there
    assert len(ring.samples(T0 + 3590 * 10**9)) == 10
    # a point polled far faster than configured is capped by count, not only time
    fast = FlightRecorder(60.0, interval_of=lambda point: 10.0)
    for i in range(5000):
        fast.record([Sample("d.q", float(i), T0 + i * 10**7, Quality.GOOD)])
    ring = fast.rings["d.q"]
    assert ring.max_samples == max(fast.capacity("d.q"), 2 * CHUNK)
    assert len(ring) <= ring.max_samples + CHUNK


def test_points_beyond_max_points_are_counted_not_kept() -> None:
    recorder = FlightRecorder(60.0, max_points=3)
    recorder.record([Sample(f"d.p{i}", 1.0, T0, Quality.GOOD) for i in range(5)])
    assert len(recorder.rings) == 3 and recorder.refused_points == 2


def test_the_store_keeps_records_private_and_within_budget(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents", max_bytes=64 * 1024, max_incidents=3)
    ids = [f"20261203T0312{i:02d}Z-tx-3f-{i}" for i in range(5)]
    for i in ids:
        store.save(stored_record(i, "closed"))
    assert store.ids() == ids[-3:]
    assert stat.S_IMODE((tmp_path / "incidents").stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path_of(ids[-1]).stat().st_mode) == 0o600
    assert store.load(ids[-1])["id"] == ids[-1]
    with pytest.raises(IncidentError, match="not an incident id"):
        store.load("../../etc/passwd")
    with pytest.raises(IncidentError, match="no incident"):
        store.load(ids[0])
    store.path_of(ids[-1]).write_bytes(b"not gzip")
    with pytest.raises(IncidentError, match="cannot be read"):
        store.load(ids[-1])


def test_a_frozen_copy_is_not_touched_by_later_samples() -> None:
    ring = PointRing(window_s=10**6, max_samples=10**6)
    for i in range(CHUNK + 5):
        ring.append(T0 + i * 10**9, float(i), Quality.GOOD)
    frozen = ring.frozen()
    for i in range(CHUNK + 5, 3 * CHUNK):
        ring.append(T0 + i * 10**9, float(i), Quality.GOOD)
    assert [r.value for r in frozen.samples()] == [float(i) for i in range(CHUNK + 5)]
    assert len(ring.samples()) == 3 * CHUNK


def test_settings_errors_are_clear() -> None:
    from pydantic import ValidationError

    from gateway.recorder.settings import IncidentSettings, RecorderSettings

    with pytest.raises(ValidationError, match="max_duration must be at least post"):
        IncidentSettings(post=600.0, max_duration=60.0)
    with pytest.raises(ValidationError, match="window must be between 10s and 6h"):
        RecorderSettings(window=5.0)
    with pytest.raises(ValidationError, match="severity"):
        IncidentSettings(severity="fatal")  # type: ignore[arg-type]
    assert IncidentSettings().severity == "major" and RecorderSettings().window == 900.0


gaps = st.one_of(st.integers(0, 2_000), st.integers(-2**34, 2**34),
                 st.sampled_from([2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**32]))


@settings(max_examples=80, deadline=None)
@given(start_ms=st.integers(-2**40, 2**50),
       items=st.lists(st.tuples(gaps, values, st.sampled_from(list(Quality))), min_size=1,
                      max_size=3 * CHUNK + 5),
       freeze_at=st.integers(0, 3 * CHUNK + 5))
def test_timestamps_far_apart_or_going_back_come_back(start_ms: int, items: list[tuple[
        int, object, Quality]], freeze_at: int) -> None:
    """The open chunk keeps 2-byte steps: steps past ±32 s and ±24 days (a new base at a
    chunk's first sample, wider steps after), clocks stepping back, and
    `FlightRecorder.record` (the same append written out) keeps what `PointRing.append`
    keeps."""
    ring = PointRing(window_s=10**9, max_samples=10**9)
    recorder = FlightRecorder(10**9, interval_of=lambda point: 1e-9)
    ts = start_ms * 1_000_000
    expected = []
    frozen = None
    for i, (gap, value, quality) in enumerate(items):
        ts += gap * 1_000_000 + 321
        ring.append(ts, value, quality)  # type: ignore[arg-type]
        recorder.record([Sample("d.p", value, ts, quality)])  # type: ignore[arg-type]
        expected.append((ts // 1_000_000 * 1_000_000, value, quality))
        if i == freeze_at:
            frozen = (ring.frozen(), list(expected))
    early = -(2**80)  # (samples() starts at the epoch unless told)
    for got in (ring.samples(early), recorder.samples("d.p", early)):
        assert len(got) == len(expected)
        for (t, v, q), r in zip(expected, got, strict=True):
            assert r.ts == t and r.quality is q and same(r.value, v), (r, v)
    if frozen is not None:
        copy, then = frozen
        assert [(r.ts, r.quality) for r in copy.samples(early)] == [(t, q) for t, _, q in then]
