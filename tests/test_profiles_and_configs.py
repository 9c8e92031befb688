"""The shipped device-profile library (hardware/profiles) and example site configs
(firmware_configs) load, are consistent with each other and cover every data type and byte order.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.config.loader import load_gateway_config, load_profile, profile_files
from gateway.config.profile import (
    ByteOrder,
    DataType,
    ModbusPoint,
    ModbusProfile,
    RegisterType,
    SerialTextProfile,
    TextField,
)

ROOT = Path(__file__).resolve().parents[1]
PROFILES_DIR = ROOT / "hardware" / "profiles"
CONFIGS_DIR = ROOT / "firmware_configs"

PROFILE_FILES = list(profile_files(PROFILES_DIR))
CONFIG_FILES = sorted(CONFIGS_DIR.glob("*.yaml"))

REQUIRED_PROFILES = {
    "generic_th_sensor",
    "generic_di_module",
    "generic_smoke_detector",
    "generic_h2_detector",
    "generic_offgas_detector",
    "megatec_q1_ups",
    "generic_modbus_ups",
    "generic_lithium_bms",
    "eastron_sdm630",
    "generic_rcm_monitor",
    "generic_relay_module",
    "generic_ascii_th_sensor",
}

# The Q1 reply from DOMAIN.md (NUT nutdrv_qx_megatec.c).
Q1_EXAMPLE = "(226.0 195.0 226.0 014 49.0 27.5 30.0 00001000\r"
QUANTITY = re.compile(r"^[a-z][a-z0-9_]*$")


def _profiles() -> dict[str, ModbusProfile | SerialTextProfile]:
    return {path.stem: load_profile(path) for path in PROFILE_FILES}


def _points(profile: ModbusProfile | SerialTextProfile) -> tuple[ModbusPoint | TextField, ...]:
    return profile.points if isinstance(profile, ModbusProfile) else profile.fields


def _is_numeric(point: ModbusPoint | TextField) -> bool:
    if isinstance(point, ModbusPoint):
        return point.type.is_numeric
    return point.type in ("float", "int")


def test_the_required_profiles_exist() -> None:
    assert {path.stem for path in PROFILE_FILES} >= REQUIRED_PROFILES


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda p: p.stem)
def test_profile_loads(path: Path) -> None:
    profile = load_profile(path)
    assert profile.id == path.stem


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda p: p.stem)
def test_profile_points_are_described_for_rules(path: Path) -> None:
    """Every point has a quantity; measured values carry a unit and a valid range; every flag
    of a status word has a quantity too."""
    profile = load_profile(path)
    for point in _points(profile):
        assert point.quantity and QUANTITY.match(point.quantity), point.name
        for flag in point.flags:
            assert flag.quantity, f"{point.name}.{flag.name}"
        if _is_numeric(point) and not point.flags and point.enum is None:
            assert point.unit, f"{profile.id}.{point.name} has no unit"
            assert point.valid is not None, f"{profile.id}.{point.name} has no valid range"
            assert point.valid.min is not None and point.valid.max is not None, point.name
        if point.enum is not None:
            assert point.valid is not None, f"{profile.id}.{point.name}: enum without range"


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda p: p.stem)
def test_named_profiles_cite_their_source(path: Path) -> None:
    profile = load_profile(path)
    if profile.generic:
        assert profile.manufacturer == "generic"
        assert profile.description and "not a named model" in profile.description
    else:
        assert profile.source and len(profile.source) > 20
        assert profile.manufacturer != "generic"


def test_every_data_type_and_byte_order_is_used() -> None:
    types: set[DataType] = set()
    orders: set[ByteOrder] = set()
    bool_places: set[str] = set()
    for profile in _profiles().values():
        if not isinstance(profile, ModbusProfile):
            continue
        for point in profile.points:
            types.add(point.type)
            orders.add(point.order)
            if point.type is DataType.BOOL:
                bool_places.add("register_bit" if point.bit is not None else point.register.value)
    assert set(DataType) - types == set()
    assert set(ByteOrder) - orders == set()
    assert bool_places >= {RegisterType.COIL.value, RegisterType.DISCRETE_INPUT.value,
                           "register_bit"}


def test_relay_module_outputs_are_writable_coils() -> None:
    profile = load_profile(PROFILES_DIR / "generic_relay_module.yaml")
    assert isinstance(profile, ModbusProfile)
    coils = [p for p in profile.points if p.register is RegisterType.COIL]
    assert [p.name for p in coils] == [f"do{i}" for i in range(1, 9)]
    assert all(p.writable and p.quantity == "relay_state" for p in coils)


def test_sdm630_map_matches_eastron_addresses() -> None:
    """Spot checks against the Eastron table (address = 3xxxx register number - 30001)."""
    profile = load_profile(PROFILES_DIR / "eastron_sdm630.yaml")
    assert isinstance(profile, ModbusProfile)
    by_name = {p.name: p for p in profile.points}
    expected = {"l1_voltage": 0, "l2_voltage": 2, "l3_voltage": 4, "l1_current": 6,
                "l1_power": 12, "total_power": 52, "total_power_factor": 62, "frequency": 70,
                "import_energy": 72, "l1_l2_voltage": 200, "neutral_current": 224,
                "total_energy": 342}
    for name, address in expected.items():
        assert by_name[name].address == address, name
    assert all(p.register is RegisterType.INPUT and p.type is DataType.FLOAT32
               and p.address % 2 == 0 for p in profile.points)


# --- Megatec Q1 ------------------------------------------------------------------------------


def _q1() -> SerialTextProfile:
    profile = load_profile(PROFILES_DIR / "megatec_q1_ups.yaml")
    assert isinstance(profile, SerialTextProfile)
    return profile


def test_q1_request_bytes() -> None:
    profile = _q1()
    assert profile.request_bytes == b"Q1\r"
    assert profile.terminator_bytes == b"\r"


@pytest.mark.parametrize("reply", [Q1_EXAMPLE, Q1_EXAMPLE.rstrip("\r")])
def test_q1_pattern_matches_the_domain_example(reply: str) -> None:
    match = re.match(_q1().reply_pattern, reply)
    assert match is not None
    assert match.groupdict() == {
        "input_voltage": "226.0", "input_fault_voltage": "195.0", "output_voltage": "226.0",
        "load_pct": "014", "input_frequency": "49.0", "battery_voltage": "27.5",
        "temperature": "30.0", "status": "00001000",
    }


def test_q1_status_flags_follow_megatec_bit_numbering() -> None:
    status = next(f for f in _q1().fields if f.name == "status")
    assert status.type == "bitstring"
    by_bit = {flag.bit: (flag.name, flag.quantity) for flag in status.flags}
    assert by_bit[7] == ("utility_fail", "ups_on_battery")
    assert by_bit[6] == ("battery_low", "ups_battery_low")
    assert by_bit[5] == ("bypass_active", "ups_bypass")
    assert by_bit[4] == ("ups_failed", "ups_fault")
    assert sorted(by_bit) == list(range(8))
    # "00001000": the first character is b7, so only b3 (standby type) is set.
    bits = "00001000"
    value = int(bits, 2)
    active = {name for bit, (name, _) in by_bit.items() if (value >> bit) & 1}
    assert active == {"standby_type"}


@pytest.mark.parametrize("values", [
    dict(input_voltage=226.0, input_fault_voltage=195.0, output_voltage=226.0, load_pct=14,
         input_frequency=49.0, battery_voltage=27.5, temperature=30.0, status=0b00001000),
    dict(input_voltage=0.0, input_fault_voltage=0.0, output_voltage=219.8, load_pct=87,
         input_frequency=0.0, battery_voltage=24.1, temperature=41.5, status=0b11000001),
    dict(input_voltage=241.3, input_fault_voltage=241.3, output_voltage=220.0, load_pct=105,
         input_frequency=50.1, battery_voltage=2.27, temperature=25.0, status=0b00110000),
])
def test_q1_reply_format_round_trips(values: dict[str, float | int]) -> None:
    profile = _q1()
    assert profile.reply_format is not None
    reply = profile.reply_format.format(**values)
    match = re.match(profile.reply_pattern, reply)
    assert match is not None, reply
    assert int(match["load_pct"]) == values["load_pct"]
    assert int(match["status"], 2) == values["status"]
    assert float(match["input_voltage"]) == pytest.approx(values["input_voltage"])
    assert float(match["battery_voltage"]) == pytest.approx(values["battery_voltage"], abs=0.05)


def test_the_domain_example_is_reproduced_exactly() -> None:
    profile = _q1()
    assert profile.reply_format is not None
    assert profile.reply_format.format(
        input_voltage=226.0, input_fault_voltage=195.0, output_voltage=226.0, load_pct=14,
        input_frequency=49.0, battery_voltage=27.5, temperature=30.0, status=8,
    ) == Q1_EXAMPLE


def test_ascii_th_sensor_round_trips() -> None:
    profile = load_profile(PROFILES_DIR / "generic_ascii_th_sensor.yaml")
    assert isinstance(profile, SerialTextProfile)
    assert profile.request_bytes == b"READ\r"
    assert profile.reply_format is not None
    for temperature, humidity in ((23.4, 45.1), (-12.0, 99.9), (0.0, 0.0)):
        reply = profile.reply_format.format(temperature=temperature, humidity=humidity)
        match = re.match(profile.reply_pattern, reply)
        assert match is not None, reply
        assert float(match["temperature"]) == pytest.approx(temperature)
        assert float(match["humidity"]) == pytest.approx(humidity)
    assert re.match(profile.reply_pattern, "T=23.4 H=45.1\r") is not None


# --- site configs ----------------------------------------------------------------------------


def test_the_three_example_configs_exist() -> None:
    assert {p.name for p in CONFIG_FILES} >= {
        "telecom_equipment_room.yaml", "datacenter_lithium_room.yaml",
        "power_distribution_room.yaml",
    }


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_config_loads(path: Path) -> None:
    loaded = load_gateway_config(path)
    config = loaded.config
    assert config.profiles_dir is None  # the examples use the default profiles directory
    for device in config.devices:
        assert loaded.profile_of(device).id == device.profile


def test_configs_use_point_overrides_and_every_bus_kind() -> None:
    bus_types: set[str] = set()
    overrides = 0
    room_types: set[str] = set()
    for path in CONFIG_FILES:
        config = load_gateway_config(path).config
        bus_types |= {bus.type for bus in config.buses}
        room_types |= {room.type for room in config.rooms}
        overrides += sum(len(device.points) for device in config.devices)
    assert bus_types == {"modbus_rtu", "modbus_tcp", "serial_text"}
    assert {"equipment", "battery", "data_center", "energy_storage", "distribution"} <= room_types
    assert overrides > 0


def test_telecom_room_has_two_smoke_detectors_for_coincidence() -> None:
    config = load_gateway_config(CONFIGS_DIR / "telecom_equipment_room.yaml").config
    smoke = [d for d in config.devices if d.profile == "generic_smoke_detector"]
    assert len(smoke) >= 2
    assert len({d.room for d in smoke}) == 1
