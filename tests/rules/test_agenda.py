"""The bindings due at a round (gateway.rules.agenda.Schedule): deadlines queued by time, one
heap entry per distinct time, give what a binding-by-binding model of its contract gives.

The contract, as the model below keeps it: `set_deadline(i, t)` makes `t` binding i's deadline
(the latest call wins, earlier or later than before); a deadline fires once, at the first
`due(now)` with `now` at or after it (then nothing until the next `set_deadline`); `due`
returns the marked and fired bindings in binding order and clears them; `next_deadline()` is
the earliest deadline that will fire (`math.inf`: none). Hypothesis drives both with random
marks, deadlines from a few shared times (many bindings at one time, as the rate windows of
one block read are), infinities, deadlines in the past, and `now`s that go back as well as
forward (a round's `now` is a finite time).
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.rules.agenda import Schedule

INF = math.inf
COUNT = 6
NOWS = st.sampled_from([0.0, 0.5, 1.0, 1.0 + 2**-40, 2.0, 3.5])
TIMES = NOWS | st.just(INF)


class Model:
    """The contract, binding by binding: `queued[i]` is when binding i's deadline is looked at
    next (INF: never), `deadline[i]` what it is then."""

    def __init__(self, count: int) -> None:
        self.marked = set(range(count))  # the first round evaluates everything
        self.deadline = [INF] * count
        self.queued = [INF] * count

    def set_deadline(self, index: int, when: float) -> None:
        self.deadline[index] = when
        self.queued[index] = min(self.queued[index], when)

    def due(self, now: float) -> list[int]:
        for index, at in enumerate(self.queued):
            if at <= now:
                wanted = self.deadline[index]
                self.queued[index] = wanted if now < wanted else INF
                if wanted <= now:
                    self.marked.add(index)
        out, self.marked = sorted(self.marked), set()
        return out

    def next_deadline(self) -> float:
        return min((self.deadline[i] for i, at in enumerate(self.queued) if at < INF),
                   default=INF)


OPS = st.lists(st.one_of(
    st.tuples(st.just("mark"), st.integers(0, COUNT - 1)),
    st.tuples(st.just("mark_many"), st.lists(st.integers(0, COUNT - 1), max_size=4)),
    st.tuples(st.just("set"), st.integers(0, COUNT - 1), TIMES),
    st.tuples(st.just("due"), NOWS),
    st.tuples(st.just("next"))), max_size=60)


@settings(max_examples=800, deadline=None)
@given(OPS)
def test_schedule_keeps_the_contract(ops: list[tuple[object, ...]]) -> None:
    schedule, model = Schedule(COUNT), Model(COUNT)
    for op in ops:
        match op:
            case ("mark", int(index)):
                schedule.mark(index)
                model.marked.add(index)
            case ("mark_many", list(indices)):
                schedule.mark_many(indices)
                model.marked.update(indices)
            case ("set", int(index), float(when)):
                schedule.set_deadline(index, when)
                model.set_deadline(index, when)
            case ("due", float(now)):
                assert schedule.due(now) == model.due(now), op
            case ("next",):
                assert schedule.next_deadline() == model.next_deadline()
        assert schedule.pending == bool(model.marked)
    assert schedule.next_deadline() == model.next_deadline()
    assert schedule.due(1e9) == model.due(1e9)


def test_bindings_at_one_time_share_one_heap_entry() -> None:
    """A thousand bindings whose deadlines are equal: one time queued, all due at it."""
    schedule = Schedule(1000)
    schedule.due(0.0)
    for index in range(1000):
        schedule.set_deadline(index, 61.0)
    assert schedule.next_deadline() == 61.0
    assert len(schedule._times) == 1
    assert schedule.due(60.9) == []
    assert schedule.due(61.0) == list(range(1000))
    assert schedule.next_deadline() == INF
