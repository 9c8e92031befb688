"""A rate window's departures are judged with the arrivals beside them
(gateway.rules.rate_window, `Shape.slack`): polled at a steady pace, a window's oldest sample
is due to leave a few milliseconds before or after the next sample arrives. Judged after an
arrival, a window drops the samples that leave within one slot (window / 240, at most a
second); judged with no new sample, it keeps a sample until one slot after its departure. So
a steady poll makes no round for a departure, and a point that stops reporting has its
departures judged one slot late at most."""

from __future__ import annotations

import pytest

from gateway.field.sample import Quality, Sample
from gateway.rules.rate import DEPARTURE_SLACK, MAX_WINDOW_SAMPLES, RateWindow
from gateway.rules.schedule import DUE, _after
from tests.rules.test_engine import TELECOM, Site


@pytest.mark.parametrize("lag", [0.0, 0.01, 0.2])
@pytest.mark.parametrize("jitter", [0.0, 0.003, 0.1])
def test_a_steady_poll_makes_no_round_for_a_departure(lag: float, jitter: float) -> None:
    """Polls on a one-second grid, each judged up to `jitter` after its place on it; a sample's
    time is `lag` before its round (the poll's time, then its reply). With jitter, a
    departure falls before or after the arrival beside it."""
    site = Site(TELECOM)
    engine, clock = site.engine, site.clock
    points = engine.rate_points()
    windows = [window for state in points.values() for window in state.rates]
    assert len(windows) >= 10  # fire rate-of-rise, battery thermal runaway, room temperature
    grid = clock.monotonic()
    departures_alone = rounds_alone = 0
    for second in range(200):
        clock.advance(grid + second + jitter * ((second * 7) % 5) / 4 - clock.monotonic())
        ts = clock.now_ns() - int(lag * 1e9)
        value = 23.0 + (second % 7) * 0.1
        engine.on_samples([Sample(p, value, ts, Quality.GOOD) for p in points])
        engine.evaluate_changed()
        held = [window.samples.first for window in windows]
        arrival = grid + second + 1
        while (due := engine.next_deadline()) is not None and due < arrival:
            clock.advance(max(0.0, due - clock.monotonic()))
            engine.evaluate_changed()  # a round with no sample: a timer's
            rounds_alone += 1
            departures_alone += sum(window.samples.first != first
                                    for window, first in zip(windows, held, strict=True))
    assert departures_alone == 0, departures_alone
    assert rounds_alone <= 2, rounds_alone  # the 2-min sustain's, once


def test_an_arrival_takes_the_departures_within_a_slot_along() -> None:
    window = RateWindow(60.0, 60.0, 3)  # a slot: 0.25 s
    for t in range(60):
        window.add(1000.0 + t, 20.0 + 0.1 * t)
    window.add(1059.9, 26.0)  # the sample of 1000.0 leaves 0.1 s from now: within a slot
    window.fit(1059.9)
    assert window.samples.first == 1001.0
    window.add(1060.5, 26.0)  # the sample of 1001.0 leaves 0.5 s from now: stays
    window.fit(1060.5)
    assert window.samples.first == 1001.0


def test_with_no_sample_a_departure_is_judged_one_slot_late_at_most() -> None:
    window = RateWindow(60.0, 60.0, 3)
    for t in range(60):
        window.add(1000.0 + t, 20.0 + 0.1 * t)
    window.fit(1059.0)
    slack = window.shape.slack
    assert slack == min(60.0 / MAX_WINDOW_SAMPLES, DEPARTURE_SLACK) == 0.25
    due = DUE[RateWindow](window, 1059.0)
    assert due == _after(1000.0, 60.0 + slack)  # the departure (1060.0) and one slot
    window.fit(due - 0.01)
    assert window.samples.first == 1000.0  # held: a sample of its own may still arrive
    window.fit(due)
    assert window.samples.first == 1001.0
    assert DUE[RateWindow](window, due) == _after(1001.0, 60.0 + slack)


def test_a_long_window_holds_a_departure_a_second_at_most() -> None:
    window = RateWindow(3600.0, 3600.0, 5)
    assert window.shape.slack == DEPARTURE_SLACK == 1.0  # not its 15-s slot
