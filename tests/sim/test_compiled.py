"""A compiled signal is its model: `compile_signal(s)(t)` gives exactly `s.at(t)` (the same
float, bit for bit, or the same exception) for any signal and any time; and a device image
rendered through the compiled path holds, for every point of the three shipped sites at 200
times over three simulated minutes, the registers the codec makes of `SignalTable.value`."""

from __future__ import annotations

import hashlib
import math
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.clock import ManualClock
from gateway.config.loader import load_gateway_config
from gateway.config.profile import ModbusProfile
from gateway.field.codec import encode
from gateway.sim.compiled import compile_signal
from gateway.sim.modbus_image import DeviceImage, to_raw
from gateway.sim.normal import default_signal
from gateway.sim.signal_kinds import gauss
from gateway.sim.signals import (
    Clamp,
    Constant,
    Drift,
    Noise,
    Pulse,
    Ramp,
    Scripted,
    Signal,
    SignalTable,
    Step,
    Sum,
    Value,
)

REPO = Path(__file__).resolve().parents[2]
NUMBERS = st.one_of(st.floats(-1e6, 1e6), st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(-1000, 1000).map(float))
BOUND = st.one_of(st.none(), NUMBERS)
ANY_VALUE = st.one_of(NUMBERS, st.booleans(), st.sampled_from(["on", "SIM", ""]))


def _drift(start: float, rate: float, low: float | None, high: float | None) -> Signal:
    if low is not None and high is not None and low > high:
        low, high = high, low
    return Drift(start=start, rate=rate, low=low, high=high)


LEAVES: st.SearchStrategy[Signal] = st.one_of(
    ANY_VALUE.map(lambda v: Constant(value=v)),
    st.builds(_drift, NUMBERS, st.floats(-10, 10), BOUND, BOUND),
    st.builds(Noise, base=st.floats(-1e3, 1e3), sigma=st.floats(0, 10),
              seed=st.integers(-(2**70), 2**70), interval=st.floats(0.01, 100)),
    st.builds(Ramp, start=NUMBERS, end=NUMBERS, begin=st.floats(0, 100),
              duration=st.floats(0.001, 1e4)),
    st.builds(Step, before=ANY_VALUE, after=ANY_VALUE, at_time=st.floats(0, 1e3)),
    st.builds(Pulse, period=st.floats(0.1, 100), duty=st.floats(0, 1),
              begin=st.floats(0, 100), active=st.booleans()),
    st.lists(st.tuples(st.floats(0, 1e3), ANY_VALUE), min_size=1, max_size=4).map(
        lambda pts: Scripted(points=tuple(sorted(pts, key=lambda p: p[0])))),
)
SIGNALS: st.SearchStrategy[Signal] = st.recursive(LEAVES, lambda inner: st.one_of(
    st.lists(inner, min_size=1, max_size=3).map(lambda parts: Sum(parts=tuple(parts))),
    st.builds(Clamp, signal=inner, low=BOUND, high=BOUND)), max_leaves=6)
TIMES = st.one_of(st.floats(0, 1e5), st.floats(-10, 10),
                  st.floats(allow_nan=False, allow_infinity=True))


def _outcome(fn: object, t: float) -> object:
    try:
        value: Value = fn(t)  # type: ignore[operator]
    except (TypeError, ValueError, OverflowError) as error:
        return type(error)
    if isinstance(value, float):
        return ("float", struct.pack("<d", value))  # bit for bit (NaN's, -0.0)
    return (type(value).__name__, value)


@settings(max_examples=600)
@given(signal=SIGNALS, times=st.lists(TIMES, min_size=1, max_size=6))
def test_a_compiled_signal_is_its_model(signal: Signal, times: list[float]) -> None:
    fast = compile_signal(signal)
    for t in times:
        assert _outcome(fast, t) == _outcome(signal.at, t), (signal, t)


M64 = (1 << 64) - 1


@given(seed=st.integers(-(2**80), 2**80), slot=st.integers(-(2**80), 2**80))
def test_the_noise_draw_is_blake2b_then_box_muller(seed: int, slot: int) -> None:
    """The draw's definition (the hasher `gauss` copies is a fresh BLAKE2b-128)."""
    digest = hashlib.blake2b(struct.pack("<QQ", seed & M64, slot & M64), digest_size=16)
    a, b = struct.unpack("<QQ", digest.digest())
    expected = math.sqrt(-2.0 * math.log(((a >> 11) + 1) * 2.0**-53)) * math.cos(
        2.0 * math.pi * (b >> 11) * 2.0**-53)
    assert gauss(seed, slot) == expected
    assert gauss(seed, slot) == expected  # the shared hasher is never updated


def test_the_quiet_rooms_default_is_compiled_not_called() -> None:
    """The default of a measured point (clamped drift plus noise) runs as closures."""
    signal = default_signal(quantity="temperature", unit="°C", kind="float", seed=4)
    assert isinstance(signal, Clamp)
    fast = compile_signal(signal)
    assert getattr(fast, "__self__", None) is None  # not a bound `at`
    assert [fast(t) for t in (0.0, 125.0, 3600.5)] == [signal.at(t) for t in
                                                        (0.0, 125.0, 3600.5)]


@pytest.mark.parametrize("site", sorted((REPO / "firmware_configs").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_every_shipped_point_renders_as_the_codec_makes_it(site: Path) -> None:
    loaded = load_gateway_config(site)
    clock = ManualClock(start_mono=0.0)
    table = SignalTable(clock)
    images = []
    for device in loaded.config.devices:
        profile = loaded.profiles.get(device.profile)
        if device.enabled and isinstance(profile, ModbusProfile):
            images.append(DeviceImage(device, profile, table, seed=3))
    assert images
    checked = 0
    for step in range(200):
        clock.advance(1.0 if step % 7 else 0.35)
        for image in images:
            for register, words in image.words.items():
                image.refresh(register)
                for point, spec in image._plan[register]:
                    if point.flags:
                        continue
                    expected = encode(to_raw(point, table.value(point.id)), spec.type,
                                      spec.order, spec.length)
                    got = [words[a] for a in range(spec.address, spec.address + spec.width)]
                    assert got == expected, (point.id, clock.monotonic())
                    checked += 1
            for register, bits in image.bits.items():
                image.refresh(register)
                for point, spec in image._plan[register]:
                    if spec.address not in image.stuck:
                        assert bits[spec.address] == bool(table.value(point.id)), point.id
    assert checked > 200 * 20
