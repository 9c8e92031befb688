"""The device image's fast rendering is the codec's: each point's compiled register encoder
gives exactly `encode(to_raw(point, value))` for every type and byte order, and a constant
point's cached registers follow every change of its signal."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.clock import ManualClock
from gateway.config.loader import LoadedConfig, load_gateway_config
from gateway.config.profile import DataType, ModbusProfile, RegisterType
from gateway.field.codec import encode
from gateway.field.points import BoundPoint
from gateway.sim.modbus_image import DeviceImage, bind_all_points, register_encoder, to_raw
from gateway.sim.signals import Constant, SignalTable, noisy
from tests.sim.conftest import write_site

VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e6, 1e6),
    st.integers(-(2**70), 2**70), st.booleans(), st.text(max_size=12))


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedConfig:
    return load_gateway_config(write_site(tmp_path_factory.mktemp("render")))


def _word_points(loaded: LoadedConfig) -> list[BoundPoint]:
    device = next(d for d in loaded.config.devices if d.id == "meter")
    profile = loaded.profile_of(device)
    assert isinstance(profile, ModbusProfile)
    return [p for p in bind_all_points(device, profile)
            if not p.modbus.register.is_bit and p.modbus.type is not DataType.BOOL]


def _outcome(fn: object, *args: object) -> object:
    try:
        return fn(*args)  # type: ignore[operator]
    except (TypeError, ValueError, OverflowError) as error:
        return type(error)


@given(value=VALUES)
def test_the_compiled_encoder_is_the_codec(loaded: LoadedConfig, value: float | str) -> None:
    for point in _word_points(loaded):
        expected = _outcome(_codec, point, value)
        assert _outcome(register_encoder(point), value) == expected, (point.id, value)


def _codec(point: BoundPoint, value: float | str) -> list[int]:
    spec = point.modbus
    return encode(to_raw(point, value), spec.type, spec.order, spec.length)


def test_a_constant_point_renders_each_new_signal(loaded: LoadedConfig) -> None:
    device = next(d for d in loaded.config.devices if d.id == "meter")
    profile = loaded.profile_of(device)
    assert isinstance(profile, ModbusProfile)
    clock = ManualClock(start_mono=0.0)
    table = SignalTable(clock)
    image = DeviceImage(device, profile, table)
    point = "meter.float32_abcd"
    for value in (1.5, 1.5, -7.25, 1.5):
        table.set(point, Constant(value=value))  # a new (equal or not) constant each time
        clock.advance(1.0)
        assert image.read_point(point) == value
    table.set(point, noisy(20.0, sigma=1.0, seed=3))  # a moving signal is rendered every time
    seen = set()
    for _ in range(5):
        clock.advance(1.0)
        seen.add(image.read_point(point))
    assert len(seen) == 5
    setpoint = image.by_id["meter.setpoint"]
    image.apply_write(RegisterType.HOLDING, setpoint.modbus.address, [4321])
    assert image.read_point("meter.setpoint") == 4321
    clock.advance(1.0)
    assert image.read_point("meter.setpoint") == 4321  # a write holds its value


def test_every_type_and_order_is_in_the_fixture(loaded: LoadedConfig) -> None:
    kinds = {(p.modbus.type.value, p.modbus.order.value) for p in _word_points(loaded)}
    assert len(kinds) >= 32  # 8 numeric types x 4 orders, plus the string
