"""The rate windows' narrow storage (gateway.rules.rate_samples): times as int32 steps of 2⁻²² s
and values as 16- or 32-bit integers of a power-of-ten divisor — 6 bytes a sample where two
doubles took 16 — give back exactly what was stored, and a window fits what the deque window
fitted, bit for bit: with the engine's times (acquisition time plus an offset), decoded
register values, and the samples that do not fit (other clocks, gaps longer than 512 s,
restored times, float registers, -0.0, NaN, infinities), which turn the arrays into doubles
until `compact` finds every held sample fits again. The references: a deque, and the deque
window of tests/rules/test_rate_storage.py."""

from __future__ import annotations

import math
import tracemalloc
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.field.points import scaled
from gateway.field.sample import Quality
from gateway.rules.conditions import PointState
from gateway.rules.rate import MAX_WINDOW_SAMPLES, RateSignal, RateWindow, rising
from gateway.rules.rate_samples import SampleRing, stored_times, stored_values
from tests.rules.test_rate_storage import DequeWindow, _assert_alike, _key

WALL_NS = 1_765_000_000_000_000_000
OFFSET = 5000.25 - WALL_NS * 1e-9
"""Engine seconds minus wall-clock seconds, as gateway.rules.intake gets it."""


def engine_t(ts_ns: int) -> float:
    """A sample's time on the engine's scale, as gateway.rules.intake computes it."""
    return ts_ns * 1e-9 + OFFSET


registers = st.builds(scaled, st.integers(-32768, 65535),
                      st.sampled_from([1.0, 0.1, 0.01, 0.001]), st.just(0.0))
big_registers = st.builds(scaled, st.integers(-2**31, 2**31 - 1),
                          st.sampled_from([1.0, 0.01, 1e-6]), st.just(0.0))
odd_values = st.one_of(st.floats(), st.sampled_from(
    [-0.0, math.nan, math.inf, -math.inf, 0.1 + 0.2, 1e300, 2.0**31, 0.5, 33000.5]))
ring_values = st.one_of(registers, registers, registers, big_registers, odd_values)
steps_ns = st.one_of(st.integers(0, 3_000_000_000), st.integers(0, 20_000_000_000),
                     st.integers(500_000_000_000, 600_000_000_000))  # gaps beyond 512 s
odd_times = st.one_of(st.floats(allow_nan=False), st.sampled_from([0.0, -0.0, 5000.123]))


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(1, 9), size=st.one_of(st.none(), st.integers(1, 12)),
       ops=st.lists(st.one_of(
           st.tuples(st.just("append"), steps_ns, ring_values),
           st.tuples(st.just("append"), steps_ns, ring_values),
           st.tuples(st.just("append_odd"), odd_times, ring_values),
           st.tuples(st.just("popleft"), st.just(0), st.just(0.0)),
           st.tuples(st.just("set_last"), steps_ns, ring_values),
           st.tuples(st.just("compact"), st.just(0), st.just(0.0)),
           st.tuples(st.just("clear"), st.just(0), st.just(0.0))), max_size=150))
def test_a_narrow_ring_gives_back_what_it_was_given(
        capacity: int, size: int | None, ops: list[tuple[str, float, float]]) -> None:
    ring, ref = SampleRing(capacity, size, decimal=True), deque[tuple[float, float]]()
    ts = WALL_NS
    for kind, number, value in ops:
        if kind in ("append", "set_last"):
            ts += int(number)
        t = number if kind == "append_odd" else engine_t(ts)
        if kind.startswith("append"):
            if len(ref) == capacity:
                ref.popleft()
                ring.popleft()
            ring.append(t, value)
            ref.append((t, value))
        elif kind == "popleft" and ref:
            assert _key([ring.popleft()]) == _key([ref.popleft()])
        elif kind == "set_last" and ref:
            ring.set_last(t, value)
            ref[-1] = (t, value)
        elif kind == "compact":
            ring.compact()
        elif kind == "clear":
            ring.clear()
            ref.clear()
        assert _key(ring) == _key(ref) and len(ring) == len(ref) <= ring.allocated
        assert _key(zip(ring.times(), ring.values(), strict=True)) == _key(ref)
        for index in range(-len(ref), len(ref)):
            assert _key([ring[index]]) == _key([ref[index]])
        times, first, unit, values, divisor = ring.stored()  # a save's copy, read back
        assert _key(zip(stored_times(times, first, unit), stored_values(values, divisor),
                        strict=True)) == _key(ref)
        if ref:
            assert (repr(ring.first_t()), repr(ring.last_t())) == (repr(ref[0][0]),
                                                                 repr(ref[-1][0]))


window_values = st.one_of(registers, registers, registers, registers, odd_values)
window_steps = st.one_of(st.integers(0, 2_000_000_000), st.integers(0, 30_000_000_000),
                         st.integers(-5_000_000_000, 0),  # out of order: ignored
                         st.integers(500_000_000_000, 5_000_000_000_000))  # gaps


@settings(max_examples=300, deadline=None)
@given(length=st.sampled_from([5.0, 60.0, 600.0, 3600.0]), confidence=st.sampled_from([0.0, 2.0]),
       ops=st.lists(st.one_of(
           st.tuples(st.just("add"), window_steps, window_values),
           st.tuples(st.just("add"), window_steps, window_values),
           st.tuples(st.just("odd"), st.floats(-3.0, 3.0), window_values),  # another clock
           st.tuples(st.just("fit"), st.integers(0, 100_000_000_000), st.just(0.0)),
           st.tuples(st.just("carry"), st.sampled_from([60, 3600]), st.just(0.0))),
           min_size=1, max_size=400))
def test_a_narrow_window_fits_as_the_deque_window_bit_for_bit(
        length: float, confidence: float, ops: list[tuple[str, float, float]]) -> None:
    """Engine times and register values (narrow), other clocks' times and odd values (the
    arrays turn to doubles), gaps, thinning, sliding, carrying: every fit the deque's."""
    new = RateWindow(length, 60.0, 3, None, confidence, decimal=True)
    old = DequeWindow(length, 60.0, 3, None, confidence)
    ts = WALL_NS
    for kind, number, value in ops:
        if kind == "carry":  # a config apply carries the windows into ones of another length
            new_carried = RateWindow(float(number), 60.0, 3, None, confidence, decimal=True)
            old_carried = DequeWindow(float(number), 60.0, 3, None, confidence)
            new_carried.take(new)
            old_carried.take(old)
            new, old = new_carried, old_carried
        elif kind == "fit":
            _assert_alike(new, old, engine_t(ts + int(number)))
            continue
        else:
            ts += int(number) if kind == "add" else 0
            t = engine_t(ts) + (number if kind == "odd" else 0.0)
            new.add(t, value)
            old.add(t, value)
        _assert_alike(new, old, engine_t(ts))


def test_engine_times_and_decoded_registers_are_kept_narrow() -> None:
    """What a poll gives is kept in 6 bytes a sample; a sample that does not fit turns that
    array into doubles, and `compact` narrows it again once no held sample needs doubles."""
    ring = SampleRing(MAX_WINDOW_SAMPLES + 1, 64, decimal=True)
    ts = WALL_NS
    for raw in range(2283, 2283 + 64):
        ts += 1_000_037_123  # a poll a second, with jitter
        ring.append(engine_t(ts), scaled(raw, 0.01, 0.0))
    assert (ring._t.typecode, ring._v.typecode, ring._d) == ("i", "h", 100)
    ring.popleft()
    ring.append(engine_t(ts) + 0.1, 1 / 3)  # another clock's time, a float register's value
    assert (ring._t.typecode, ring._v.typecode) == ("d", "d")
    ring.compact()
    assert (ring._t.typecode, ring._v.typecode) == ("d", "d")  # the odd sample is held
    ring.popleft()
    ring.set_last(engine_t(ts + 1_000_000_000), scaled(70001, 0.001, 0.0))
    ring.compact()
    assert (ring._t.typecode, ring._v.typecode, ring._d) == ("i", "i", 1000)


def _stream(signal: RateSignal, point: PointState, reference: DequeWindow | None) -> None:
    """Two hours of 1 s polls of a register with a divisor of 100 into `signal`'s one point,
    with 10 minutes without samples (a gap longer than 512 s); each fit compared with the
    deque window's when there is one."""
    ts = WALL_NS
    for i in range(7200):
        ts += 1_000_000_000 + 600_000_000_000 * (i == 1000)
        value = scaled(2000 + i // 7 + i % 3, 0.01, 0.0)
        point.update(value, Quality.GOOD, ts, engine_t(ts))
        signal.read(engine_t(ts))
        if reference is not None:
            reference.add(engine_t(ts), value)
            reference.fit(engine_t(ts))  # as the signal's read
            if i % 50 == 0:
                _assert_alike(signal.windows[0], reference, engine_t(ts))


def test_an_hour_window_of_a_rate_signal_takes_6_bytes_a_sample_and_keeps_to_it() -> None:
    """An hour's window of a rate rule (241 samples: 16 bytes each were 3.9 KiB) at 1 s polls
    of a decoded register: 2 KiB with its objects when it is made, no more after two hours and
    a gap; every fit the deque window's."""
    point = PointState("d.t", "d", 0.0)
    RateSignal([PointState("d.u", "d", 0.0)], 3600.0, 3600.0, 5, rising,
               confidence=2.0)  # what a first one makes (the windows' shape, shared)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        signal = RateSignal([point], 3600.0, 3600.0, 5, rising, confidence=2.0)
        made = tracemalloc.get_traced_memory()[0]
        _stream(signal, point, None)
        grown = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    room = MAX_WINDOW_SAMPLES + 1
    assert made - before < 8 * room + 600  # 2,014 bytes (4,000 and more with 16 a sample)
    assert grown - made < 1024
    ring = signal.windows[0].samples
    assert len(ring) == room and (ring._t.typecode, ring._v.typecode) == ("i", "h")  # again
    point = PointState("d.t", "d", 0.0)
    _stream(RateSignal([point], 3600.0, 3600.0, 5, rising, confidence=2.0), point,
            DequeWindow(3600.0, 3600.0, 5, None, 2.0))


@pytest.mark.parametrize("restored", [True, False])
def test_a_window_narrows_again_when_the_odd_samples_have_left(restored: bool) -> None:
    """Restored samples' times (a restart's warm start: `now - age`) or a float register's
    values are kept as doubles; once they left the window, a rebuild of its sums narrows it
    again, and the fits stay the deque window's."""
    window = RateWindow(60.0, 60.0, 3, None, 2.0, decimal=True)
    reference = DequeWindow(60.0, 60.0, 3, None, 2.0)
    ts = WALL_NS
    for i in range(30):
        t = engine_t(ts) - 30 + i + 0.3 if restored else engine_t(ts) - 30 + i
        value = 20.0 + i / 100 if restored else 20.0 + 0.1 * i  # 0.1 * i: no decimal
        window.add(t, value)
        reference.add(t, value)
    for _ in range(700):
        ts += 1_000_000_000
        window.add(engine_t(ts), scaled(2000 + ts // 10**9 % 7, 0.01, 0.0))
        reference.add(engine_t(ts), scaled(2000 + ts // 10**9 % 7, 0.01, 0.0))
        _assert_alike(window, reference, engine_t(ts))
    assert (window.samples._t.typecode, window.samples._v.typecode) == ("i", "h")
