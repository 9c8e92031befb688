"""Group signals read their members inline (gateway.rules.conditions: `GroupSignal.read` and
`DewPointSignal.read` without a `PointState.number()` call per member) and give what reading
each member through `number()` gave: the reference reads, kept verbatim below, against the
fast ones over random members (numbers, booleans, text, None, NaN; good or not; devices that
pair a room's temperatures with its humidities or not), for every signal function and key the
compiler uses.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.field.sample import Quality, Value
from gateway.rules.conditions import (
    DewPointSignal,
    GroupSignal,
    Outside,
    PointState,
    dew_point,
    mean_of,
    spread_of,
    unbalance,
)
from gateway.rules.rate import falling, rising


class ReferenceGroup(GroupSignal):
    def read(self, now: float) -> float | None:
        values = [n for n in (m.number() for m in self.members) if n is not None]
        if len(values) < self.minimum:
            return None
        return self.func(values)


class ReferenceDewPoint(DewPointSignal):
    def read(self, now: float) -> float | None:
        if self.pairs:
            best: float | None = None
            best_key = -math.inf
            for t_state, h_state in self.pairs:
                t, h = t_state.number(), h_state.number()
                if t is None or h is None:
                    continue
                dp = dew_point(t, h)
                if dp is not None and (best is None or self.key(dp) > best_key):
                    best, best_key = dp, self.key(dp)
            return best
        return super().read(now)


VALUES = st.one_of(st.floats(-60.0, 120.0), st.integers(-5, 105), st.booleans(),
                   st.sampled_from(["open", None, math.nan, math.inf, 0.0, 100.0, 100.5]))
MEMBER = st.tuples(st.sampled_from(["d1", "d2", "d3"]), VALUES,
                   st.sampled_from([Quality.GOOD] * 3 + [Quality.INVALID, Quality.COMM_ERROR]))


def _states(members: list[tuple[str, Value, Quality]]) -> list[PointState]:
    out = []
    for index, (device, value, quality) in enumerate(members):
        state = PointState(f"{device}.p{index}", device, 0.0)
        state.update(value, quality, index, float(index))
        out.append(state)
    return out


@settings(max_examples=400, deadline=None)
@given(members=st.lists(MEMBER, max_size=12), minimum=st.integers(1, 4),
       func=st.sampled_from([spread_of, mean_of, unbalance, max, min]))
def test_a_group_reads_as_through_number(members: list[tuple[str, Value, Quality]],
                                         minimum: int, func: object) -> None:
    states = _states(members)
    got = GroupSignal(states, func, minimum).read(0.0)  # type: ignore[arg-type]
    want = ReferenceGroup(states, func, minimum).read(0.0)  # type: ignore[arg-type]
    assert repr(got) == repr(want)


@settings(max_examples=400, deadline=None)
@given(temperatures=st.lists(MEMBER, max_size=6), humidities=st.lists(MEMBER, max_size=6),
       key=st.sampled_from(["rising", "falling", "outside"]))
def test_a_dew_point_reads_as_through_number(
        temperatures: list[tuple[str, Value, Quality]],
        humidities: list[tuple[str, Value, Quality]], key: str) -> None:
    t_states, h_states = _states(temperatures), _states(humidities)
    pick = {"rising": rising, "falling": falling,
            "outside": Outside(5.0, 15.0, 1.0).excursion}[key]
    got = DewPointSignal(t_states, h_states, pick).read(0.0)
    want = ReferenceDewPoint(t_states, h_states, pick).read(0.0)
    assert repr(got) == repr(want)
