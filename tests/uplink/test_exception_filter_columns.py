"""The exception filter's column path (`ExceptionFilter._by_columns`: a poll of points sent
before, no deadband, finite floats and booleans — noted in the batch's group, written to the
entries later) answers exactly as the filter before it (kept below verbatim as the reference:
`ExceptionFilter` of 1ccba84), over polls that repeat their points as a bus loop's do, mixed
with polls of other and overlapping points, deadbands, heartbeats, quality changes, values of
every kind, `forget`, `reset` and a map small enough to forget points."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.clock import Clock, ManualClock
from gateway.field.sample import Quality, Sample, Value
from gateway.uplink.exception_filter import (
    _HIGHEST,
    _LOWEST,
    ExceptionFilter,
    ExceptionPolicy,
    _Sent,
    changed,
)


class _Before:
    """Stateful per point, pure otherwise: `filter(batch)` returns the samples to send."""

    def __init__(self, policy: ExceptionPolicy, clock: Clock,
                 quantity_of: Callable[[str], str | None] | Mapping[str, str | None]
                 | None = None) -> None:
        self.policy = policy
        self._clock = clock
        if quantity_of is None:
            self._quantity: Callable[[str], str | None] = lambda _p: None
        elif callable(quantity_of):
            self._quantity = quantity_of
        else:
            mapping = quantity_of
            self._quantity = mapping.get
        self._sent: dict[str, _Sent] = {}
        self._limits: dict[tuple[float, float], tuple[float, float]] = {}
        """Each (deadband, max interval) of the points, once."""
        self._ordered = False
        """The map's order is least recently sent first (kept once it has been full)."""
        self.seen = 0
        self.passed = 0

    def __len__(self) -> int:
        return len(self._sent)

    def filter(self, samples: Iterable[Sample]) -> list[Sample]:
        now = self._clock.monotonic()
        out: list[Sample] = []
        append = out.append
        sent = self._sent
        get = sent.get
        ordered = self._ordered
        seen = 0
        # the points sent together share their `sent_at` (one float) and most share their
        # limits (one tuple): whether the heartbeat is due is worked out once per such group
        group_at: float | None = None
        group_limits: tuple[float, float] | None = None
        due = True
        try:
            for s in samples:
                seen += 1
                point, value, _ts, quality = s
                last = get(point)
                if last is None:
                    limits = self.policy.limits(point, self._quantity(point))
                    if len(sent) >= self.policy.max_points:
                        if not ordered:
                            self._order()
                            ordered = True
                        del sent[next(iter(sent))]
                    sent[point] = _Sent(value, quality, now,
                                        self._limits.setdefault(limits, limits))
                    append(s)
                    continue
                limits = last.limits
                if last.sent_at is not group_at or limits is not group_limits:
                    group_at, group_limits = last.sent_at, limits
                    due = not now - group_at < limits[1]
                sent_quality = last.quality
                if not due and (sent_quality is quality or sent_quality == quality):
                    old = last.value
                    if type(old) is float and type(value) is float \
                            and _LOWEST <= old <= _HIGHEST and _LOWEST <= value <= _HIGHEST:
                        band = limits[0]  # `changed` of finite floats:
                        if (abs(value - old) <= band) if band else value == old:
                            continue
                    elif not changed(old, value, limits[0]):
                        continue
                last.value, last.quality, last.sent_at = value, quality, now
                if ordered:  # re-inserted at the end: dict order = least recently sent
                    del sent[point]
                    sent[point] = last
                append(s)
        finally:
            self.seen += seen
        self.passed += len(out)
        return out

    def _order(self) -> None:
        """The map is full for the first time: from now on its order is kept least recently
        sent first (one sort now, then a move to the end per sent sample), so the point
        forgotten is the least recently sent. Until then (a site's points well within
        `max_points`, the usual case) no sample pays for the order."""
        entries = sorted(self._sent.items(), key=lambda kv: kv[1].sent_at)
        self._sent.clear()  # in place: `filter` holds the map
        self._sent.update(entries)
        self._ordered = True

    def forget(self, point: str) -> None:
        """The next sample of `point` passes (e.g. after its device came back online)."""
        self._sent.pop(point, None)

    def reset(self) -> None:
        """Every point's next sample passes (e.g. after a config change)."""
        self._sent.clear()
        self._limits.clear()
        self._ordered = False


POINTS = [f"d.p{i}" for i in range(6)]
odd = st.sampled_from([float("nan"), float("inf"), -0.0, 0, 1, 2**70, None, "on", 1e308, True])
floats = st.sampled_from([20.0, 20.5]) | st.sampled_from([20.0, 20.5, 21.0]) | st.floats(19, 22)


@st.composite
def polled(draw: st.DrawFn) -> list[Value]:
    """Six values: mostly floats, the last mostly a boolean (a device's `online`)."""
    out: list[Value] = [draw(floats if draw(st.integers(0, 39)) else odd) for _ in range(5)]
    return [*out, draw(st.booleans() if draw(st.integers(0, 39)) else odd | floats)]


polls = st.tuples(
    st.just("poll"), st.sampled_from([(0, 6), (0, 6), (2, 5), (2, 5), (0, 3), (3, 6), (0, 1)]),
    polled(), st.lists(st.sampled_from([Quality.GOOD] * 30 + [Quality.STALE]), min_size=6,
                       max_size=6), st.sampled_from([0.0, 0.5, 1.0, 1.0, 30.0, 61.0]))
steps = st.lists(polls | polls | polls | polls | st.tuples(
    st.just("forget"), st.sampled_from(POINTS)) | st.tuples(st.just("reset")),
    min_size=4, max_size=80)


@settings(max_examples=1000, deadline=None)
@given(steps=steps, band=st.sampled_from([0.0, 0.0, 0.0, 0.3]),
       point_band=st.sampled_from([{}, {"d.p4": 0.5}]), max_points=st.sampled_from([100, 4]),
       repeat=st.integers(1, 3))
def test_the_filter_answers_as_before(steps: list[tuple], band: float,  # type: ignore[type-arg]
                                      point_band: dict[str, float], max_points: int,
                                      repeat: int) -> None:
    policy = ExceptionPolicy(deadband=band, max_interval=60, deadband_by_point=point_band,
                             max_interval_by_point={"d.p1": 20}, max_points=max_points)
    clock = ManualClock()
    new, old = ExceptionFilter(policy, clock), _Before(policy, clock)
    for step in steps:
        if step[0] == "forget":
            new.forget(step[1])
            old.forget(step[1])
        elif step[0] == "reset":
            new.reset()
            old.reset()
        else:
            (start, stop), vals, quals, dt = step[1:]
            for _ in range(repeat):  # the same values again: unchanged, then heartbeats
                clock.advance(dt)
                batch = [Sample(POINTS[i], vals[i], 5, quals[i]) for i in range(start, stop)]
                got, want = new.filter(batch), old.filter(batch)
                assert got == want and all(map(lambda a, b: a is b, got, want))
        assert (len(new), new.seen, new.passed) == (len(old), old.seen, old.passed)
    new._write_back()  # what each point was last sent, in the map's order
    assert [(p, e.value, e.quality, e.sent_at, e.limits) for p, e in new._sent.items()] == [
        (p, e.value, e.quality, e.sent_at, e.limits) for p, e in old._sent.items()] or any(
        v != v for e in old._sent.values() for v in [e.value])  # (NaN: not equal to itself)


def test_a_poll_of_moving_floats_and_online_takes_the_columns() -> None:
    """The bus loop's batch — moving floats and an unchanged `online` — from its second poll:
    no sample through `_one_by_one`, and what passed is in the entries once read."""
    clock = ManualClock()
    f = ExceptionFilter(ExceptionPolicy(), clock)
    points = [f"d.r{i}" for i in range(200)]
    for poll in range(3):
        clock.advance(1.0)
        batch = [Sample(p, 20.0 + i / 100 + poll, 0, Quality.GOOD) for i, p in enumerate(points)]
        batch.append(Sample("d.online", True, 0, Quality.GOOD))
        assert f.filter(batch) == batch[:-1] + ([batch[-1]] if poll == 0 else [])
    assert f._pending and f._groups["d.r0"].pending
    f.forget("d.online")  # writes back first
    assert f._sent["d.r7"].value == 22.07 and f._sent["d.r7"].sent_at == clock.monotonic()
