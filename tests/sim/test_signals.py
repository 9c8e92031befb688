"""Signals are pure functions of time; the table evaluates them on an injected clock."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.clock import ManualClock
from gateway.sim.signal_kinds import gauss
from gateway.sim.signals import (
    NORMAL,
    Clamp,
    Constant,
    Drift,
    Noise,
    Pulse,
    Ramp,
    Scripted,
    SignalTable,
    Step,
    default_signal,
    noisy,
    parse_signal,
)


@given(start=st.floats(-100, 100), rate=st.floats(-10, 10), t=st.floats(0, 1e5))
def test_drift_with_bounds_stays_inside(start: float, rate: float, t: float) -> None:
    value = Drift(start=start, rate=rate, low=-5, high=5).at(t)
    assert isinstance(value, float)
    assert -5 - 1e-9 <= value <= 5 + 1e-9


def test_drift_moves_at_its_rate_and_bounces() -> None:
    drift = Drift(start=0, rate=1, low=-2, high=2)
    assert drift.at(1.5) == pytest.approx(1.5)
    assert drift.at(3) == pytest.approx(1.0)  # went to 2, came back 1
    assert Drift(start=0, rate=1, high=2).at(10) == 2


def test_noise_is_seeded_and_pure() -> None:
    a, b = Noise(base=10, sigma=1, seed=1), Noise(base=10, sigma=1, seed=2)
    assert a.at(3.2) == a.at(3.7)  # same 1 s slot
    assert a.at(3.2) != b.at(3.2)
    values = [float(a.at(t)) for t in range(2000)]
    mean = sum(values) / len(values)
    assert 9.9 < mean < 10.1
    assert 0.9 < (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5 < 1.1


def test_noise_draws_are_standard_normal_and_independent() -> None:
    """The counter-based draws (no generator state) behave like a Gaussian generator's:
    moments, tails, no correlation between neighbouring slots or between seeds."""
    n = 20_000
    draws = [gauss(11, slot) for slot in range(n)]
    other = [gauss(12, slot) for slot in range(n)]
    mean = sum(draws) / n
    sd = (sum((x - mean) ** 2 for x in draws) / n) ** 0.5
    assert abs(mean) < 0.03 and 0.97 < sd < 1.03  # 4 standard errors
    beyond_2 = sum(abs(x) > 2 for x in draws) / n
    assert 0.040 < beyond_2 < 0.051  # 4.55 % for a normal law
    assert 1e-4 < sum(abs(x) > 3.5 for x in draws) / n < 1.5e-3  # 4.7e-4: real tails
    assert abs(sum(a * b for a, b in itertools.pairwise(draws)) / n) < 0.03
    assert abs(sum(a * b for a, b in zip(draws, other, strict=True)) / n) < 0.03


@given(seed=st.integers(-(2**80), 2**80), slot=st.integers(-(2**80), 2**80))
def test_noise_draw_is_pure_and_finite(seed: int, slot: int) -> None:
    value = gauss(seed, slot)
    assert math.isfinite(value) and value == gauss(seed, slot)
    slot %= 2**40  # a time that a float holds exactly
    noise = Noise(base=5, sigma=2, seed=seed, interval=0.5)
    assert noise.at(slot * 0.5 + 0.1) == 5 + 2 * gauss(seed, slot)


@pytest.mark.process
def test_noise_is_the_same_in_another_process() -> None:
    """Reproducible from the seed alone (no hash randomisation, no process state)."""
    code = ("from gateway.sim.signal_kinds import gauss; "
            "print(repr([gauss(s, t) for s in (0, 7, -3) for t in (0, 1, 99)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60, env={**os.environ, "PYTHONHASHSEED": "123"})
    assert out.stdout.strip() == repr([gauss(s, t) for s in (0, 7, -3) for t in (0, 1, 99)])


def test_step_ramp_scripted_pulse() -> None:
    assert Step(before=False, after=True, at_time=5).at(4.9) is False
    assert Step(before=False, after=True, at_time=5).at(5) is True
    ramp = Ramp(start=20, end=60, begin=10, duration=20)
    assert [ramp.at(t) for t in (0, 10, 20, 30, 99)] == [20, 20, 40, 60, 60]
    script = Scripted(points=((0, 1.0), (10, 3.0), (20, 3.0)))
    assert script.at(5) == pytest.approx(2.0)
    assert script.at(-1) == 1.0 and script.at(50) == 3.0
    contact = Scripted(points=((0, False), (2, True), (4, False)))
    assert [contact.at(t) for t in (1, 3, 5)] == [False, True, False]
    pulse = Pulse(period=2, duty=0.25)
    assert [pulse.at(t) for t in (0.1, 0.6, 2.2)] == [True, False, True]
    with pytest.raises(ValidationError):
        Scripted(points=((5, 1.0), (1, 2.0)))


def test_compose_and_parse() -> None:
    signal = parse_signal({"kind": "sum", "parts": [
        {"kind": "constant", "value": 20}, {"kind": "ramp", "start": 0, "end": 10,
                                            "duration": 10}]})
    assert signal.at(5) == pytest.approx(25)
    assert parse_signal(True) == Constant(value=True)
    assert parse_signal(1.5).at(0) == 1.5
    clamped = Clamp(signal=noisy(5, sigma=100), low=0, high=10)
    assert all(0 <= float(clamped.at(t)) <= 10 for t in range(50))
    with pytest.raises(ValidationError):
        parse_signal({"kind": "warp"})


def test_defaults_look_like_a_quiet_room() -> None:
    temperature = default_signal(quantity="temperature", unit="°C", kind="number")
    assert all(22 <= float(temperature.at(t)) <= 24 for t in range(0, 3600, 7))
    residual = default_signal(quantity="residual_current", unit="A", kind="number")
    assert all(0.05 <= float(residual.at(t)) <= 0.15 for t in range(0, 600, 7))
    assert default_signal(quantity="smoke", unit=None, kind="bool").at(0) is False
    assert default_signal(quantity=None, unit=None, kind="number",
                          valid=(10, 20)).at(0) == 15
    assert default_signal(quantity=None, unit=None, kind="number").at(0) == 0
    assert default_signal(quantity=None, unit=None, kind="number", enum=[3, 5]).at(0) == 3
    frequency = default_signal(quantity="frequency", unit="Hz", kind="number")
    assert abs(float(frequency.at(100)) - 50) <= 0.05
    assert NORMAL["battery_soc"].low == 80


def test_table_set_replace_hold_release() -> None:
    clock = ManualClock()
    table = SignalTable(clock)
    table.define("d.t", Constant(value=23.0))
    clock.advance(100)
    table.set("d.t", Ramp(start=23, end=63, duration=40))  # starts now, not at t=0
    assert table.value("d.t") == 23
    clock.advance(10)
    assert table.value("d.t") == pytest.approx(33)
    assert table.hold("d.t") == pytest.approx(33)
    clock.advance(10)
    assert table.value("d.t") == pytest.approx(33)
    table.replace("d.t", Ramp(start=0, end=100, duration=100))  # keeps the hold's timeline
    assert table.value("d.t") == pytest.approx(10)
    table.release("d.t")
    assert table.is_default("d.t") and table.value("d.t") == 23.0
    with pytest.raises(KeyError, match="no simulated point"):
        table.set("d.nope", Constant(value=1))
