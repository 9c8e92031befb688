"""A save's copy of the rate windows (gateway.rules.warm_copy): the event loop copies the
samples as the windows store them and the writer's thread decodes them, and the file is byte
for byte the one the snapshot of before wrote — which decoded every window on the loop. That
snapshot is kept here verbatim (`decoding_snapshot`, with the ring's reads of before) and
compared on random windows: narrow, fallen back to doubles (other clocks, float registers,
NaN, infinities, gaps of more than 512 s), wall-clock steps (the engine's times shifted),
samples out of order, slides, thinned points and the bound on all; and the windows go on
changing after the copy, before it is decoded. (Not compared: a point thinned while it holds
NaN, which the snapshot of before did not thin the same way twice: `_thinned_with_nan`.)"""

from __future__ import annotations

import math
from array import array
from itertools import accumulate, repeat
from operator import mul, truediv
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.clock import ManualClock
from gateway.field.points import scaled
from gateway.field.sample import Quality, Sample
from gateway.rules import warm_copy
from gateway.rules.conditions import PointState
from gateway.rules.rate import RateWindow
from gateway.rules.rate_samples import SampleRing
from gateway.rules.warm import FILE_NAME, RateMemory, fingerprints
from gateway.rules.warm_copy import Capture, Snapshot, capture
from gateway.rules.warm_file import MAX_POINT_SAMPLES, MAX_SAMPLES, room, stream
from gateway.rules.warm_pace import moved
from tests.rules.test_rate_narrow import engine_t, odd_values, registers, window_steps
from tests.rules.test_warm import START_NS, _engine, _site

if TYPE_CHECKING:
    from gateway.rules.warm_file import Run

# --- the snapshot of before (gateway/rules/warm.py at 33862fc), verbatim but for its bounds ---


def _old_times(ring: SampleRing) -> array[float]:
    raw, q = ring._ordered(ring._t), ring._q
    if not q:
        return raw
    return array("d", accumulate(map(mul, raw[1:], repeat(q)), initial=ring.first)
                 if raw else ())


def _old_values(ring: SampleRing) -> array[float]:
    raw = ring._ordered(ring._v)
    d = ring._d
    return array("d", map(truediv, raw, repeat(d))) if d > 0 else raw  # (no list)


def _copy_into(ring: SampleRing, times: memoryview[float], values: memoryview[float],
               at: int) -> int:
    n = ring._len
    times[at:at + n] = _old_times(ring)
    values[at:at + n] = _old_values(ring)
    return n


def _old_runs(times: memoryview[float], values: memoryview[float], start: int,
              lengths: list[int]) -> list[Run]:
    out = []
    for n in lengths:
        out.append((array("d", times[start:start + n]), array("d", values[start:start + n])))
        start += n
    return out


def _old_thinned(runs: list[Run], bound: int) -> Run:
    merged = sorted({sample for times, values in runs
                     for sample in zip(times, values, strict=True)})
    step = len(merged) / bound
    kept = [merged[int(i * step)] for i in range(bound - 1)] + [merged[-1]]
    return (array("d", [t for t, _ in kept]), array("d", [v for _, v in kept]))


def decoding_snapshot(states: dict[str, PointState], sources: dict[str, str], now_ns: int,
                      mono: float, boot_id: str | None, point_bound: int = MAX_POINT_SAMPLES,
                      total_bound: int = MAX_SAMPLES, synced: bool | None = None) -> Snapshot:
    """`RateMemory.snapshot` of before: every window decoded into the buffers, on the loop."""
    slots = sum(w.samples.allocated for state in states.values() for w in state.rates)
    times, values = room(slots), room(slots)
    points: dict[str, tuple[str, list[int]]] = {}
    newest = -math.inf
    at = 0
    for point_id, state in states.items():
        if state.device not in sources:
            continue
        start = at
        runs = []
        for window in state.rates:
            if window.samples:
                runs.append(_copy_into(window.samples, times, values, at))
                at += runs[-1]
                newest = max(newest, times[at - 1])
        if not runs:
            continue
        if at - start > point_bound:
            run_t, run_v = _old_thinned(_old_runs(times, values, start, runs), point_bound)
            times[start:start + point_bound] = memoryview(run_t)
            values[start:start + point_bound] = memoryview(run_v)
            runs, at = [point_bound], start + point_bound
        if at > total_bound:
            at = start
            break
        points[point_id] = (sources[state.device], runs)
    return Snapshot(now_ns, mono, newest, points, times, values, at, boot_id, synced)


# --- the two compared ---------------------------------------------------------------------


def file_of(snapshot: Snapshot) -> bytes:
    """The file `RateMemory.write` writes for `snapshot`."""
    return b"".join(stream(snapshot.saved_ns, snapshot.saved_mono, snapshot.points,
                           snapshot.times, snapshot.values, snapshot.count, snapshot.boot_id,
                           snapshot.synced))


def _feed(windows: list[RateWindow], ops: list[tuple[str, float, float]], clock: list[float]
          ) -> None:
    """Apply `ops` to a point's windows as the engine does (every window takes each sample);
    `clock`: [wall-clock ns of the last sample, the wall clock's step so far (s)]."""
    for kind, number, value in ops:
        if kind == "step":  # the wall clock stepped: the engine's times shift
            clock[1] += number
            continue
        if kind == "fit":  # a read at a later time: the windows slide
            for window in windows:
                window.fit(engine_t(int(clock[0] + number)) + clock[1])
            continue
        if kind == "polls":  # `number` polls a second apart of a register of 0.01 °C
            for i in range(int(number)):
                clock[0] += 1_000_037_123
                t = engine_t(int(clock[0])) + clock[1]
                for window in windows:
                    window.add(t, scaled(2000 + int(value) + i * 7 % 13, 0.01, 0.0))
            continue
        clock[0] += number if kind == "add" else 0
        t = engine_t(int(clock[0])) + clock[1] + (number if kind == "odd" else 0.0)
        for window in windows:
            window.add(t, value)


values = st.one_of(registers, registers, registers, registers, odd_values)
ops = st.lists(st.one_of(
    st.tuples(st.just("polls"), st.integers(1, 300), st.integers(-50, 50).map(float)),
    st.tuples(st.just("add"), window_steps, values),
    st.tuples(st.just("add"), window_steps, values),
    st.tuples(st.just("add"), window_steps, values),
    st.tuples(st.just("odd"), st.floats(-3.0, 3.0), values),  # another clock's time
    st.tuples(st.just("step"), st.floats(-600.0, 600.0), st.just(0.0)),
    st.tuples(st.just("fit"), st.integers(0, 100_000_000_000), st.just(0.0))),
    max_size=40)
point = st.tuples(st.sampled_from(["a", "a", "b", "c"]),  # its device ("c": no fingerprint)
                  st.lists(st.tuples(st.sampled_from([5.0, 60.0, 600.0, 3600.0]),
                                     st.booleans()), min_size=1, max_size=5),  # its windows
                  ops, ops)  # before the copy, after it


def _thinned_with_nan(state: PointState, bound: int) -> bool:
    """Does the point hold NaN among more samples than `bound` (it is thinned)? The snapshot
    of before thins such a point differently from one save to the next: a NaN's hash is its
    address (Python 3.10 on), so the order of the set of samples it thins from, and the sort
    of the samples holding NaN, which compare with nothing, vary. The copy thins as it did
    (the same `_thinned`), no more predictably; the file's restore skips NaN samples."""
    rings = [window.samples for window in state.rates if window.samples]
    return sum(map(len, rings)) > bound and any(
        math.isnan(value) for ring in rings for value in ring.values())


@settings(max_examples=150, deadline=None)
@given(points=st.lists(point, min_size=1, max_size=6),
       bounds=st.one_of(st.just((MAX_POINT_SAMPLES, MAX_SAMPLES)),
                        st.tuples(st.integers(1, 40), st.integers(1, 400))),
       ahead=st.floats(-100.0, 4000.0), saved_ns=st.integers(0, 2**62),
       boot_id=st.one_of(st.none(), st.just("boot-1")))
def test_the_file_is_the_one_the_decoding_snapshot_wrote(
        points: list[tuple[str, list[tuple[float, bool]], list[Any], list[Any]]],
        bounds: tuple[int, int], ahead: float, saved_ns: int, boot_id: str | None) -> None:
    """Byte for byte, with the same newest sample and what `warm_pace.moved` reads; the copy
    is decoded after the windows went on (more samples, slides, steps)."""
    states, later = {}, []
    clock = [float(1_765_000_000_000_000_000), 0.0]
    for index, (device, shapes, before, after) in enumerate(points):
        state = PointState(f"{device}.p{index}", device, 0.0)
        state.rates = tuple(RateWindow(length, 60.0, 3, None, 0.0, decimal=decimal)
                            for length, decimal in shapes)
        _feed(list(state.rates), before, clock)
        states[state.id] = state
        later.append((list(state.rates), after))
    sources = {"a": "fingerprint-a", "b": "fingerprint-b"}
    mono = engine_t(int(clock[0])) + clock[1] + ahead  # the save's monotonic time
    point_bound, total_bound = bounds
    assume(not any(_thinned_with_nan(state, point_bound) for state in states.values()))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(warm_copy, "MAX_POINT_SAMPLES", point_bound)
        patch.setattr(warm_copy, "MAX_SAMPLES", total_bound)
        old = decoding_snapshot(states, sources, saved_ns, mono, boot_id, point_bound,
                                total_bound)
        taken = capture(states, sources, saved_ns, mono, boot_id)
        for windows, after in later:  # the loop goes on before the writer decodes the copy
            _feed(windows, after, clock)
        new = taken.decoded()
    assert file_of(new) == file_of(old)
    assert repr(new.newest) == repr(old.newest)
    assert (new.points, new.count) == (old.points, old.count)
    assert new.times[:new.count].tobytes() == old.times[:old.count].tobytes()
    assert new.values[:new.count].tobytes() == old.values[:old.count].tobytes()
    since = mono - ahead - 30.0
    assert moved(new, since, {}) == moved(old, since, {})
    assert moved(new, since, dict.fromkeys(new.points, "x")) == moved(
        old, since, dict.fromkeys(old.points, "x"))


def test_a_save_copies_the_windows_as_stored_and_decodes_them_on_the_writer(
        tmp_path: Path) -> None:
    """At the telecom site the loop's copy of a save is 6 bytes a sample (the narrow times
    and values), not the decoded 16; what the writer makes of it after the windows went on is
    the file the decoding snapshot wrote at the moment of the copy."""
    loaded = _site(tmp_path)
    clock = ManualClock(start_ns=START_NS, start_mono=50_000.0)
    engine = _engine(loaded, clock)

    def feed(seconds: int) -> None:
        for step in range(seconds // 10):
            engine.on_samples([Sample(p, 22.0 + (step % 13) / 100, clock.now_ns(), Quality.GOOD)
                               for p in engine.rate_points()])
            engine.evaluate()
            clock.advance(10.0)

    feed(1800)
    memory = RateMemory(tmp_path, clock)
    states = engine.rate_points()
    taken = memory.snapshot(engine, loaded)
    before = decoding_snapshot(states, fingerprints(loaded), clock.now_ns(), clock.monotonic(),
                               memory.boot_id, synced=taken.synced)
    assert isinstance(taken, Capture) and taken.held == before.count > 10 * len(states)
    layout = [taken.layout[i:i + warm_copy.RUN] for i in range(0, len(taken.layout),
                                                                 warm_copy.RUN)]
    assert {(int(t_size), int(v_size)) for *_, t_size, v_size in layout} == {(4, 2)}
    feed(600)  # the loop goes on; the writer decodes and writes the copy
    assert memory.write(taken)
    assert (tmp_path / FILE_NAME).read_bytes() == file_of(before)
