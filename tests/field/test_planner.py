"""Request planning: minimal, within limits, and able to learn splits around illegal ranges."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.profile import RegisterType
from gateway.field.planner import (
    Barrier,
    ReadRequest,
    plan_requests,
    split_request,
    theoretical_rtu_seconds,
)
from gateway.field.points import BoundPoint
from tests.helpers import bound, registers


def covered_ids(requests: list[ReadRequest]) -> list[str]:
    return sorted(p.id for r in requests for p in r.points)


def test_contiguous_map_uses_the_fewest_requests() -> None:
    points = bound(registers(list(range(0, 300, 2)), "float32"))  # 150 float32 = 300 regs
    plan = plan_requests(points)
    assert len(plan) == 3  # ceil(300 / 125) with float32 never split across requests
    assert all(r.count <= 125 for r in plan)
    assert covered_ids(plan) == sorted(p.id for p in points)


def test_gaps_within_max_gap_are_read_across_and_larger_ones_split() -> None:
    points = bound(registers([0, 1, 2, 10, 11, 40]))
    plan = plan_requests(points, max_gap=8)
    assert [(r.address, r.count) for r in plan] == [(0, 12), (40, 1)]
    assert [(r.address, r.count) for r in plan_requests(points, max_gap=0)] == [
        (0, 3), (10, 2), (40, 1)]


def test_register_types_never_mix_and_bits_respect_2000() -> None:
    # every other coil of 1..1999, then 2000..2099 (a profile holds at most 2,000 points):
    # the gaps of one are merged over (max_gap 8), so a span of 2,099 bits is cut at 2,000
    coils = [{"name": f"c{i}", "register": "coil", "address": i, "type": "bool"}
             for i in [*range(1, 2000, 2), *range(2000, 2100)]]
    holding = registers([0, 1])
    plan = plan_requests(bound(coils + holding))
    assert [(r.register, r.address, r.count) for r in plan] == [
        (RegisterType.COIL, 1, 2000), (RegisterType.COIL, 2001, 99),
        (RegisterType.HOLDING, 0, 2)]


def test_profile_limit_is_honoured() -> None:
    plan = plan_requests(bound(registers(list(range(100)))), max_registers=32)
    assert [r.count for r in plan] == [32, 32, 32, 4]


def test_split_cuts_at_the_widest_gap_and_barrier_is_remembered() -> None:
    points = bound(registers([0, 1, 2, 6, 7, 8, 9]))
    [request] = plan_requests(points, max_gap=8)
    split = split_request(request)
    assert split is not None
    barrier, parts = split
    assert barrier == Barrier(RegisterType.HOLDING, 6)
    assert [(p.address, p.count) for p in parts] == [(0, 3), (6, 4)]
    replanned = plan_requests(points, max_gap=8, barriers=[barrier])
    assert [(r.address, r.count) for r in replanned] == [(0, 3), (6, 4)]


def test_a_single_span_cannot_be_split() -> None:
    [request] = plan_requests(bound(registers([5], "float64")))
    assert split_request(request) is None


def test_overlapping_points_are_not_cut_through() -> None:
    points = bound([
        {"name": "word", "register": "holding", "address": 0, "type": "uint32"},
        {"name": "low", "register": "holding", "address": 1, "type": "bool", "bit": 3},
        {"name": "next", "register": "holding", "address": 2},
    ])
    [request] = plan_requests(points)
    split = split_request(request)
    assert split is not None
    assert split[0].address == 2  # never between the uint32 and the bit inside it


def test_theoretical_rtu_time_counts_frames_and_gaps() -> None:
    [request] = plan_requests(bound(registers(list(range(10)))))
    char = 10 / 9600
    seconds = theoretical_rtu_seconds([request], char_time=char, frame_gap=3.5 * char)
    assert abs(seconds - ((8 + 5 + 20) * char + 7 * char)) < 1e-12


# --- properties ------------------------------------------------------------------------

WIDTHS = {"uint16": 1, "float32": 2, "float64": 4}


@st.composite
def register_maps(draw: st.DrawFn) -> list[BoundPoint]:
    count = draw(st.integers(1, 25))
    address = 0
    specs = []
    for i in range(count):
        address += draw(st.integers(0, 30))
        kind = draw(st.sampled_from(list(WIDTHS)))
        specs.append({"name": f"p{i}", "register": "holding", "address": address,
                      "type": kind})
        address += WIDTHS[kind]
    return bound(specs)


def optimum(points: list[BoundPoint], limit: int, max_gap: int) -> int:
    """Fewest requests by exhaustive dynamic programming (independent of the greedy code)."""
    spans = sorted((p.modbus.address, p.modbus.address + p.modbus.width) for p in points)

    @cache
    def best(start: int) -> int:
        if start == len(spans):
            return 0
        result = 10**9
        end = spans[start][1]
        for stop in range(start, len(spans)):
            if stop > start and spans[stop][0] - end > max_gap:
                break
            end = max(end, spans[stop][1])
            if end - spans[start][0] > limit:
                break
            result = min(result, 1 + best(stop + 1))
        return result

    return best(0)


@pytest.mark.slow
@settings(max_examples=300)
@given(register_maps(), st.integers(4, 125), st.integers(0, 20))
def test_plan_is_minimal_and_within_limits(points: list[BoundPoint], limit: int,
                                           max_gap: int) -> None:
    plan = plan_requests(points, max_registers=limit, max_gap=max_gap)
    assert covered_ids(plan) == sorted(p.id for p in points)
    for request in plan:
        assert 1 <= request.count <= limit
        for p in request.points:
            assert request.address <= p.modbus.address
            assert p.modbus.address + p.modbus.width <= request.end
    assert len(plan) == optimum(points, limit, max_gap)


@given(register_maps())
def test_repeated_splitting_ends_in_single_spans_and_keeps_every_point(
        points: list[BoundPoint]) -> None:
    barriers: set[Barrier] = set()
    pending = plan_requests(points, max_gap=30)
    finished: list[ReadRequest] = []
    while pending:
        request = pending.pop()
        split = split_request(request)
        if split is None:
            finished.append(request)
            continue
        barriers.add(split[0])
        pending.extend(split[1])
    assert covered_ids(finished) == sorted(p.id for p in points)
    replanned = plan_requests(points, max_gap=30, barriers=barriers)
    assert len(replanned) <= len(finished)
    for request in replanned:  # no learned barrier is ever spanned again
        assert not any(request.address < b.address < request.end for b in barriers)
