"""A live drill while the wall clock steps (NTP setting a Pi's clock that booted without an
RTC, or an operator's `date -s`): the drill's detection times, acknowledgements and duration
are judged on one clock, and the evaluation says the clock stepped and by how much
(gateway.drills.live_clock). Before, an hour forward made the detection "3600 s late" (a
MISS) and the drill's end 3600 s after its start; a step back put them before the start.
On the real safety core of the telecom site, fed by its simulated devices on a manual clock
whose wall time the test steps (tests/drills/test_live_session.Rig)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.clock import ManualClock
from gateway.drills.live_clock import DrillTimeline
from gateway.drills.live_eval import evaluate
from gateway.drills.live_html import drill_section, drill_text
from tests.drills.test_live_session import FIRE_DRILL, Rig, drill


@pytest.mark.parametrize("step_s", [3600.0, -30.0, -3600.0])
@pytest.mark.parametrize("when", ["before_detection", "after_detection"])
def test_a_drill_across_a_clock_step_is_judged_on_one_clock(
        tmp_path: Path, step_s: float, when: str) -> None:
    rig = Rig(tmp_path)
    try:
        rig.run(5)
        session = rig.start(drill())  # smoke at 2 s, coincidence expected within 2-8 s
        rig.run(1 if when == "before_detection" else 6)
        rig.clock.step_wall(step_s)
        # an acknowledgement right after the step, before the next round sees it
        rig.run(6 if when == "before_detection" else 0.5)
        rig.core.alarms.acknowledge([FIRE_DRILL], "Li Na", "drill ack")
        acked_at = rig.clock.monotonic()
        rig.run(2)
        session.request_stop("stopped by lead")
        rig.run(1)
        assert session.finished
        result = evaluate(session, rig.core.alarms.events_since(session.outcome.start_seq), [])
        started = session.started_mono
        assert [c["ok"] for c in result["expected"]] == [True, True], result["expected"]
        observed = result["expected"][0]["observed_s"]
        assert 2.0 <= observed <= 4.0, f"detected at {observed} s on the drill's clock"
        fire = next(a for a in result["alarms"] if a["alarm"] == f"{FIRE_DRILL[0]}@"
                    f"{FIRE_DRILL[1]}")
        assert fire["acknowledged_s"] == pytest.approx(acked_at - started, abs=0.01)
        assert 0 < fire["time_to_acknowledge_s"] < 10
        assert result["duration_s"] == pytest.approx(rig.clock.monotonic() - started, abs=1.0)
        assert result["clock_steps"] == [{"at_s": pytest.approx(
            1.0 if when == "before_detection" else 6.0, abs=0.6), "by_s": step_s}]
        # the banner's end and the record's window are on the clock after the step
        assert session.outcome.start_ns == pytest.approx(
            rig.clock.now_ns() - (rig.clock.monotonic() - started) * 1e9, abs=1e9)
        assert "clock stepped by" in drill_text(result)
        assert "The wall clock stepped" in drill_section(result)
    finally:
        rig.core.close()


def test_a_drill_without_a_step_says_none(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    try:
        rig.run(5)
        session = rig.start(drill())
        rig.run(4)
        session.request_stop("stopped by lead")
        rig.run(1)
        result = evaluate(session, rig.core.alarms.events_since(session.outcome.start_seq), [])
        assert result["clock_steps"] == []
        assert "clock stepped" not in drill_text(result)
    finally:
        rig.core.close()


steps = st.one_of(st.just(0), st.integers(6, 7200), st.integers(-7200, -6))


@given(st.lists(st.tuples(st.floats(0.3, 5.0), steps), max_size=6))
def test_stamps_of_events_between_rounds_land_on_the_last_clock(
        rounds: list[tuple[float, int]]) -> None:
    """Rounds `gap` seconds apart (at most 5 s); between two rounds an event, the wall clock
    stepped by `by` s (0: not; else more than a gap), another event, then the round that sees
    the step: every event maps to the clock after the last step, at its true (monotonic)
    distance from now. (A step shorter than the gap between rounds may put an event between
    them on the wrong side of it: an error of at most that step.)"""
    clock = ManualClock(start_mono=0.0)
    seq = 0
    timeline = DrillTimeline(clock, seq)
    events: list[tuple[int, int, float]] = []  # (ts, seq, monotonic)
    for gap, by in rounds:
        for before_step in (True, False):
            clock.advance(gap / 3)
            seq += 1
            events.append((clock.now_ns(), seq, clock.monotonic()))
            if before_step and by:
                clock.step_wall(by)
        clock.advance(gap / 3)
        timeline.follow(seq)
    for ts, s, mono in events:
        moved = timeline.on_new_clock(ts, s)
        true = clock.now_ns() - round((clock.monotonic() - mono) * 1e9)
        assert abs(moved - true) <= 1_000, (ts, s, moved, true)
