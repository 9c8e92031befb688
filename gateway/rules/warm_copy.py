"""A save's copy of the rate windows (`gateway.rules.warm`), in two halves, so the event loop
only copies (principle 13: no client holds the safety core's loop):

* `capture`, on the loop: each window's samples as its ring stores them
  (`SampleRing.stored`: the held slots of its narrow arrays, a memcpy each) copied into
  mappings of their own, one per array type, with the few numbers that read them (`RUN` a
  window: samples, the oldest time, the times' unit, the values' divisor, the arrays' item
  sizes) and the points' ids and fingerprints. The windows go on changing after it: the
  capture holds none of their arrays.
* `Capture.decoded`, on the writer's thread: the samples (`stored_times`, `stored_values`: the
  windows' own reads, here of views of the mappings) into the two buffers the file is encoded
  from (`Snapshot`), a point's runs thinned where they hold more than `MAX_POINT_SAMPLES`.

The snapshot of before decoded every window on the loop: 15–21 ms once a minute at the
2,000-point site with full windows since the samples became narrow (2.5 ms when they were
doubles), and no poll, rule round or alarm ran in that time; the copy takes ~4 ms
(docs/performance.md, "The warm start's save off the event loop"). The file is byte for byte
what that snapshot wrote: tests/rules/test_warm_copy.py keeps it and compares the two on random
windows (narrow, fallen back to doubles, gaps, clock steps, slides, thinned points, the bound
on all; but a point thinned while it holds NaN, which neither thins the same way twice).

Memory: the mappings are made without their pages (`_lazy`): only the bytes copied (6 a narrow
sample) are touched, and all are returned whole when the capture goes, as the snapshot's
buffers are (`warm_file.room`). The capture walks the windows twice (sizes first) rather than
keep a list of them: its peak of Python objects is 31 KiB at 2,000 points (the decoding
snapshot's 122)."""

from __future__ import annotations

import math
import mmap
from array import array
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gateway.records import dataclass
from gateway.rules.rate_samples import stored_times, stored_values
from gateway.rules.warm_file import MAX_POINT_SAMPLES, MAX_SAMPLES, room

if TYPE_CHECKING:
    from gateway.rules.conditions import PointState
    from gateway.rules.warm_file import Run

RUN = 6
"""Numbers per run (a window's samples) in `Capture.layout`: samples, the oldest time, the
times' unit, the values' divisor, bytes a time, bytes a value."""
CODES = {2: "h", 4: "i", 8: "d"}
"""An array's type by its item size (a ring's: times "i" or "d", values "h", "i" or "d")."""
TAKEN = ("ti", "td", "vh", "vi", "vd")
"""The buffers of a capture: "t" or "v" (times, values) and the array type."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the windows held at a save, decoded: what the file is encoded from
    (`warm_file.stream`) and what `warm_pace.moved` reads."""

    saved_ns: int
    saved_mono: float
    newest: float
    """Monotonic time of the newest sample in it."""
    points: dict[str, tuple[str, list[int]]]
    """point id → (fingerprint, the lengths of its windows' runs of samples)."""
    times: memoryview[float]
    """The runs' sample times one after another, point by point (then zeros), in a mapping of
    their own (`warm_file.room`): returned to the system when the snapshot goes."""
    values: memoryview[float]
    count: int
    """Samples in `times` and `values`."""
    boot_id: str | None = None
    synced: bool | None = None
    """Was the system clock synchronised at the save (None: not said, a version-2 file)."""

    def runs(self) -> dict[str, tuple[str, list[Run]]]:
        """point id → (fingerprint, its runs as arrays of their own): what `encode` takes."""
        out: dict[str, tuple[str, list[Run]]] = {}
        at = 0
        for point_id, (source, lengths) in self.points.items():
            out[point_id] = (source, _runs(self.times, self.values, at, lengths))
            at += sum(lengths)
        return out


@dataclass(frozen=True, slots=True)
class Capture:
    """The windows' samples as stored at a save (`capture`); `decoded` gives the `Snapshot`."""

    saved_ns: int
    saved_mono: float
    newest: float
    """Monotonic time of the newest sample in it (a window's `last`: the newest time its
    samples decode to)."""
    ids: list[str]
    """The points in it, in order…"""
    sources: list[str]
    """…their fingerprints…"""
    windows: array[int]
    """…and how many of the runs, one after another, are each one's windows'."""
    layout: memoryview[float]
    """`RUN` numbers a window: how to read its samples from `times` and `values`."""
    times: dict[str, memoryview[Any]]
    """Array type → the stored times of the runs of that type, one run after another."""
    values: dict[str, memoryview[Any]]
    held: int
    """Samples in all the runs (before a point's runs are thinned)."""
    boot_id: str | None = None
    synced: bool | None = None

    def decoded(self) -> Snapshot:
        """The samples, as `SampleRing.times()` and `values()` give them, in the buffers of a
        `Snapshot` (on the writer's thread)."""
        times, values = room(self.held), room(self.held)
        taken = dict.fromkeys(TAKEN, 0)
        points: dict[str, tuple[str, list[int]]] = {}
        at = index = 0
        for point_id, source, count in zip(self.ids, self.sources, self.windows, strict=True):
            start, lengths = at, []
            for _ in range(count):
                n, first, unit, divisor, t_size, v_size = self.layout[index:index + RUN]
                index += RUN
                n = int(n)
                times[at:at + n] = stored_times(
                    self._stored(self.times, taken, "t", CODES[int(t_size)], n), first, unit)
                values[at:at + n] = stored_values(
                    self._stored(self.values, taken, "v", CODES[int(v_size)], n), divisor)
                lengths.append(n)
                at += n
            if at - start > MAX_POINT_SAMPLES:
                run_t, run_v = _thinned(_runs(times, values, start, lengths))
                times[start:start + MAX_POINT_SAMPLES] = memoryview(run_t)
                values[start:start + MAX_POINT_SAMPLES] = memoryview(run_v)
                lengths, at = [MAX_POINT_SAMPLES], start + MAX_POINT_SAMPLES
            points[point_id] = (source, lengths)
        return Snapshot(self.saved_ns, self.saved_mono, self.newest, points, times, values, at,
                        self.boot_id, self.synced)

    @staticmethod
    def _stored(buffers: dict[str, memoryview[Any]], taken: dict[str, int], kind: str,
                code: str, n: int) -> memoryview[Any]:
        """A view of the next `n` stored numbers of array type `code` (read as the ring's copy
        of its slots: no copy of them, so the writer's thread keeps no blocks of these sizes
        in glibc's cache)."""
        at = taken[kind + code]
        taken[kind + code] = at + n
        return buffers[code][at:at + n]


def capture(states: Mapping[str, PointState], sources: Mapping[str, str], saved_ns: int,
            saved_mono: float, boot_id: str | None = None, synced: bool | None = None
            ) -> Capture:
    """The windows' samples as stored, of the points whose device has a fingerprint in
    `sources`, in order, up to `MAX_SAMPLES` in the file (a point of more than
    `MAX_POINT_SAMPLES` counts as that many: it is thinned): on the event loop, copies only.
    Two passes over the windows, the first for the sizes (no list of them is kept: a save's
    peak of Python objects stays what it was)."""
    newest = -math.inf
    count = held = kept = runs = 0
    for state in states.values():
        if state.device not in sources:
            continue
        n = m = 0
        for window in state.rates:
            if ring := window.samples:
                newest = max(newest, ring.last)
                n += len(ring)
                m += 1
        if not n:
            continue
        count += min(n, MAX_POINT_SAMPLES)
        if count > MAX_SAMPLES:
            break
        held, kept, runs = held + n, kept + 1, runs + m
    times = {code: _lazy(held, code) for code in "id"}
    values = {code: _lazy(held, code) for code in "hid"}
    t_at, v_at = dict.fromkeys("id", 0), dict.fromkeys("hid", 0)
    ids: list[str] = []
    fingerprints: list[str] = []
    windows = array("I")
    layout = room(RUN * runs)
    index = 0
    for point_id, state in states.items():
        source = sources.get(state.device)
        if source is None:
            continue
        if len(ids) == kept:
            break
        taken = 0
        for window in state.rates:
            if not window.samples:
                continue
            run_t, first, unit, run_v, divisor = window.samples.stored()
            n, t_code, v_code = len(run_t), run_t.typecode, run_v.typecode
            at = t_at[t_code]
            t_at[t_code] = end = at + n
            times[t_code][at:end] = run_t
            at = v_at[v_code]
            v_at[v_code] = end = at + n
            values[v_code][at:end] = run_v
            layout[index:index + RUN] = array("d", (n, first, unit, divisor, run_t.itemsize,
                                                    run_v.itemsize))
            index += RUN
            taken += 1
        if taken:
            ids.append(point_id)
            fingerprints.append(source)
            windows.append(taken)
    return Capture(saved_ns, saved_mono, newest, ids, fingerprints, windows, layout, times,
                   values, held, boot_id, synced)


def _lazy(count: int, code: str) -> memoryview[Any]:
    """Room for `count` numbers of array type `code` in an anonymous mapping whose pages are
    made as they are first written (`capture` writes into one or two of its five)."""
    raw = memoryview(mmap.mmap(-1, array(code).itemsize * max(count, 1),
                               flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS))
    return raw.cast("d") if code == "d" else raw.cast("h" if code == "h" else "i")


def _runs(times: memoryview[float], values: memoryview[float], start: int, lengths: list[int]
          ) -> list[Run]:
    """Copies of the runs of these lengths from `start` of a snapshot's buffers."""
    out = []
    for n in lengths:
        out.append((array("d", times[start:start + n]), array("d", values[start:start + n])))
        start += n
    return out


def _thinned(runs: list[Run]) -> Run:
    """The union of a point's runs thinned evenly to `MAX_POINT_SAMPLES` (its newest kept):
    a point with more windows than that bound holds."""
    merged = sorted({sample for times, values in runs
                     for sample in zip(times, values, strict=True)})
    step = len(merged) / MAX_POINT_SAMPLES
    kept = [merged[int(i * step)] for i in range(MAX_POINT_SAMPLES - 1)] + [merged[-1]]
    return (array("d", [t for t, _ in kept]), array("d", [v for _, v in kept]))
