from __future__ import annotations

import sys
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.clock import ManualClock
from gateway.field.sample import Quality, Sample, Value
from gateway.uplink.exception_filter import ExceptionFilter, ExceptionPolicy, changed
from tests.helpers import calls_made

G = Quality.GOOD


def make(policy: ExceptionPolicy | None = None,
         quantities: dict[str, str | None] | None = None) -> tuple[ExceptionFilter, ManualClock]:
    clock = ManualClock()
    return ExceptionFilter(policy or ExceptionPolicy(deadband=0.5, max_interval=60),
                           clock, quantities), clock


def send(f: ExceptionFilter, point: str, value: Value, quality: Quality = G) -> bool:
    return bool(f.filter([Sample(point, value, 0, quality)]))


def test_deadband_against_the_last_sent_value() -> None:
    f, _clock = make()
    assert send(f, "d.t", 20.0)
    assert not send(f, "d.t", 20.4)
    assert not send(f, "d.t", 20.5)  # strictly more than the deadband
    assert not send(f, "d.t", 20.3)
    assert send(f, "d.t", 20.51)  # a slow drift adds up against the last *sent* value
    assert not send(f, "d.t", 20.1)
    assert send(f, "d.t", 19.9)


def test_heartbeat_after_max_interval() -> None:
    f, clock = make()
    assert send(f, "d.t", 20.0)
    clock.advance(59.9)
    assert not send(f, "d.t", 20.0)
    clock.advance(0.1)
    assert send(f, "d.t", 20.0)
    clock.advance(30)
    assert not send(f, "d.t", 20.0)


def test_quality_changes_always_pass() -> None:
    f, _clock = make()
    assert send(f, "d.t", 20.0)
    assert send(f, "d.t", 20.0, Quality.COMM_ERROR)
    assert not send(f, "d.t", 20.0, Quality.COMM_ERROR)
    assert send(f, "d.t", 20.0)


@pytest.mark.parametrize(("first", "second"), [
    (False, True), (True, False), ("OK", "FAULT"), (None, 1.0), (1.0, None), (1, True),
    (0, False), (1.0, "1.0")])
def test_booleans_strings_and_type_changes_always_pass(first: Value, second: Value) -> None:
    f, _clock = make(ExceptionPolicy(deadband=100.0, max_interval=60))
    assert send(f, "d.x", first)
    assert not send(f, "d.x", first)
    assert send(f, "d.x", second)


def test_non_finite_values() -> None:
    assert not changed(float("nan"), float("nan"), 1.0)
    assert changed(1.0, float("nan"), 1.0)
    assert changed(float("inf"), 1.0, 1.0)
    assert not changed(float("inf"), float("inf"), 1.0)


def test_deadband_and_interval_per_quantity_and_point() -> None:
    policy = ExceptionPolicy(deadband=0.5, max_interval=60,
                             deadband_by_quantity={"temperature": 0.2, "h2_lel": 0.0},
                             max_interval_by_quantity={"h2_lel": 10},
                             deadband_by_point={"t.special": 5.0},
                             max_interval_by_point={"t.special": 600})
    f, clock = make(policy, {"t.temp": "temperature", "h.h2": "h2_lel",
                             "t.special": "temperature"})
    assert policy.limits("t.temp", "temperature") == (0.2, 60)
    assert policy.limits("x.y", None) == (0.5, 60)
    assert policy.limits("t.special", "temperature") == (5.0, 600)
    for p in ("t.temp", "h.h2", "t.special", "o.other"):
        assert send(f, p, 10.0)
    assert send(f, "t.temp", 10.3)
    assert send(f, "h.h2", 10.01)
    assert not send(f, "t.special", 14.0)
    assert not send(f, "o.other", 10.4)
    clock.advance(10)
    assert send(f, "h.h2", 10.01)
    assert not send(f, "o.other", 10.0)


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        ExceptionPolicy(deadband=-1)
    with pytest.raises(ValueError):
        ExceptionPolicy(max_interval=0)
    with pytest.raises(ValueError):
        ExceptionPolicy(deadband_by_quantity={"x": float("nan")})


def test_memory_is_bounded_to_one_entry_per_point() -> None:
    f, _clock = make(ExceptionPolicy(max_points=100))
    for i in range(1000):
        f.filter([Sample(f"d.p{i % 150}", float(i), 0, G)])
    assert len(f) == 100
    f.forget("d.p149")
    assert send(f, "d.p149", 149.0)
    f.reset()
    assert len(f) == 0


def test_the_least_recently_sent_point_is_forgotten_first() -> None:
    """The order is kept only once the map is full (a sort then): the same point goes."""
    f, clock = make(ExceptionPolicy(deadband=0.5, max_interval=1000, max_points=3))
    for point in ("d.a", "d.b", "d.c"):
        assert send(f, point, 1.0)
        clock.advance(1)
    assert send(f, "d.a", 5.0)  # sent again: a is now the most recently sent
    clock.advance(1)
    assert send(f, "d.x", 1.0)  # full: b, the least recently sent, is forgotten
    assert len(f) == 3
    assert not send(f, "d.a", 5.0)
    assert not send(f, "d.c", 1.0)
    clock.advance(1)
    assert send(f, "d.c", 9.0)  # c is now more recent than a and x
    assert send(f, "d.b", 1.0)  # b was forgotten: it passes again, and a goes
    assert not send(f, "d.c", 9.0)
    assert not send(f, "d.x", 1.0)
    assert send(f, "d.a", 5.0)


def test_filter_keeps_the_order_of_a_batch() -> None:
    f, _clock = make()
    batch = [Sample(f"d.p{i}", float(i), i, G) for i in range(10)]
    assert f.filter(batch) == batch
    assert f.filter(batch) == []
    assert (f.seen, f.passed) == (20, 10)


@pytest.mark.slow
@settings(max_examples=300)
@given(base=st.floats(-1e6, 1e6), band=st.floats(0.01, 100), interval=st.floats(1, 600),
       steps=st.lists(st.tuples(st.floats(0.05, 120), st.floats(-0.5, 0.5)), min_size=1,
                      max_size=200))
def test_quiet_point_is_sent_exactly_on_its_heartbeat(
        base: float, band: float, interval: float, steps: list[tuple[float, float]]) -> None:
    """Values within the deadband: sent first, then never more often than the max interval,
    and never more than the max interval (plus one poll step) apart."""
    f, clock = make(ExceptionPolicy(deadband=band, max_interval=interval))
    assert send(f, "d.t", base)
    last_sent = clock.monotonic()
    for dt, offset in steps:
        clock.advance(dt)
        now = clock.monotonic()
        sent = send(f, "d.t", base + offset * band * 0.999)
        assert sent == (now - last_sent >= interval)
        if sent:
            last_sent = now
    assert clock.monotonic() - last_sent < interval


@pytest.mark.slow
@settings(max_examples=300)
@given(band=st.sampled_from([0.0, 0.5, 2.0]), interval=st.floats(1, 100),
       other=st.sampled_from([None, 0.5, 7.0]),
       steps=st.lists(st.tuples(st.floats(0, 30), st.lists(
           st.tuples(st.integers(0, 2), st.integers(-4, 4),
                     st.sampled_from([Quality.GOOD, Quality.GOOD, Quality.STALE])),
           max_size=3, unique_by=lambda p: p[0])), max_size=120))
def test_sent_exactly_when_a_change_or_the_heartbeat_requires(
        band: float, interval: float, other: float | None,
        steps: list[tuple[float, list[tuple[int, int, Quality]]]]) -> None:
    """Batches of up to three points, polled together or not (so they share the time they
    were last sent, or not), the last with its own max interval (`other`) or the default:
    each sample passes exactly when a change or its heartbeat requires it."""
    by_point = {} if other is None else {"d.p2": other}
    f, clock = make(ExceptionPolicy(deadband=band, max_interval=interval,
                                    max_interval_by_point=by_point))
    last: dict[int, tuple[float, Quality, float]] = {}  # value, quality, time sent
    for dt, polled in steps:
        clock.advance(dt)
        now = clock.monotonic()
        batch, required = [], []
        for p, value, quality in polled:
            sent = last.get(p)
            due = interval if p != 2 or other is None else other
            batch.append(Sample(f"d.p{p}", float(value), 0, quality))
            if sent is None or quality != sent[1] or abs(value - sent[0]) > band \
                    or now - sent[2] >= due:
                required.append(batch[-1])
                last[p] = (float(value), quality, now)
        assert f.filter(batch) == required


def test_a_changed_float_passes_in_two_calls_with_no_deadband() -> None:
    """With no deadband (the default) a finite float passes when it is not the last sent one —
    the map's lookup and the append, no `abs` — and whether points sent together are due for
    their heartbeat is worked out once for them, not per sample."""
    f, clock = make(ExceptionPolicy())
    batch = [Sample(f"d.r{i}", 20.0 + i / 100, 0, G) for i in range(200)]
    assert f.filter(batch) == batch
    clock.advance(1.0)
    moved = [Sample(s.point, s.value + 0.01, 1, G) for s in batch]  # type: ignore[operator]
    passed: list[Sample] = []
    calls = calls_made(lambda: passed.extend(f.filter(moved)))
    assert passed == moved
    assert sum(calls.values()) <= 2 * len(moved) + 10, calls


def test_an_entry_is_at_most_64_bytes_a_point_besides_the_map() -> None:
    """2,000 points with the same limits: each keeps its last value, quality and time sent
    and one shared (deadband, max interval) — 64 bytes an entry (80 with the limits in each,
    in Python's 16-byte size classes); the values and the time are the samples' own."""
    f, clock = make()
    batch = [Sample(f"d{i // 200}.r{i % 200}", 20.0 + i, 0, G) for i in range(2000)]
    clock.advance(1.0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        assert f.filter(batch) == batch
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert (held - sys.getsizeof(f._sent)) / len(batch) < 65  # (and the one pair of limits)
    assert not f.filter(batch)
