"""Fixtures for the simulator tests: a small profile set and site config under tmp_path."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config.loader import LoadedConfig, load_gateway_config
from gateway.sim.site import SimulatedSite

NUMERIC_TYPES = ["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]
ORDERS = ["ABCD", "BADC", "CDAB", "DCBA"]
WIDTH = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2,
         "int64": 4, "uint64": 4, "float64": 4}


def all_types_points() -> list[dict[str, Any]]:
    """Every numeric type in every byte order, a string, register bits, coils with a gap,
    discrete inputs and a status word with flags. Holding 0..: packed; a gap at 200-209."""
    points: list[dict[str, Any]] = []
    address = 0
    for kind, order in itertools.product(NUMERIC_TYPES, ORDERS):
        point: dict[str, Any] = {"name": f"{kind}_{order.lower()}", "register": "holding",
                                 "address": address, "type": kind, "order": order}
        if kind in ("int16", "int32", "int64"):
            point["scale"] = 0.1
        if kind == "uint16":
            point["offset"] = -40
        points.append(point)
        address += WIDTH[kind]
    points += [
        {"name": "label", "register": "holding", "address": 190, "type": "string", "length": 4},
        {"name": "alarm_bit", "register": "holding", "address": 195, "type": "bool", "bit": 3},
        {"name": "fault_bit", "register": "holding", "address": 195, "type": "bool",
         "bit": 12, "order": "BADC"},
        {"name": "setpoint", "register": "holding", "address": 210, "type": "uint16",
         "writable": True},
        {"name": "status", "register": "input", "address": 0, "type": "uint16", "flags": [
            {"bit": 0, "name": "on_battery", "quantity": "ups_on_battery"},
            {"bit": 3, "name": "healthy", "active_low": True}]},
        {"name": "temperature", "register": "input", "address": 1, "type": "int16",
         "scale": 0.1, "quantity": "temperature", "unit": "°C", "valid": {"min": -40, "max": 80}},
        {"name": "relay1", "register": "coil", "address": 0, "type": "bool", "writable": True},
        {"name": "relay2", "register": "coil", "address": 1, "type": "bool", "writable": True},
        {"name": "lamp", "register": "coil", "address": 3, "type": "bool"},
        {"name": "smoke", "register": "discrete_input", "address": 0, "type": "bool",
         "quantity": "smoke"},
        {"name": "door", "register": "discrete_input", "address": 5, "type": "bool",
         "quantity": "door_open"},
    ]
    return points


Q1_PROFILE: dict[str, Any] = {
    "kind": "serial_text", "id": "sim_q1", "manufacturer": "test", "model": "Q1",
    "generic": True, "request": "Q1\\r", "reply_terminator": "\r",
    "reply_pattern": r"^\((?P<input_voltage>\d{1,3}\.\d) (?P<input_fault_voltage>\d{1,3}\.\d)"
                     r" (?P<output_voltage>\d{1,3}\.\d) (?P<load_pct>\d{3})"
                     r" (?P<input_frequency>\d{1,2}\.\d) (?P<battery_voltage>\d{1,3}\.\d{1,2})"
                     r" (?P<temperature>\d{1,2}\.\d) (?P<status>[01]{8})\r?$",
    "reply_format": "({input_voltage:05.1f} {input_fault_voltage:05.1f} "
                    "{output_voltage:05.1f} {load_pct:03d} {input_frequency:04.1f} "
                    "{battery_voltage:04.1f} {temperature:04.1f} {status:08b}\r",
    "fields": [
        {"name": "input_voltage", "group": "input_voltage", "quantity": "ups_input_voltage",
         "unit": "V", "valid": {"min": 0, "max": 300}},
        {"name": "input_fault_voltage", "group": "input_fault_voltage",
         "quantity": "ups_input_fault_voltage", "unit": "V"},
        {"name": "output_voltage", "group": "output_voltage", "quantity": "ups_output_voltage",
         "unit": "V"},
        {"name": "load_pct", "group": "load_pct", "type": "int", "quantity": "ups_load_pct",
         "unit": "%"},
        {"name": "input_frequency", "group": "input_frequency", "unit": "Hz",
         "quantity": "ups_input_frequency"},
        {"name": "battery_voltage", "group": "battery_voltage", "unit": "V",
         "quantity": "ups_battery_voltage"},
        {"name": "temperature", "group": "temperature", "unit": "°C",
         "quantity": "ups_temperature"},
        {"name": "status", "group": "status", "type": "bitstring", "flags": [
            {"bit": 7, "name": "utility_fail", "quantity": "ups_on_battery"},
            {"bit": 6, "name": "battery_low", "quantity": "ups_battery_low"}]},
    ],
}


def write_site(tmp_path: Path, *, rtu_baud: int = 19200) -> Path:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "sim_all.yaml").write_text(yaml.safe_dump({
        "kind": "modbus", "id": "sim_all", "manufacturer": "test", "model": "all types",
        "generic": True, "points": all_types_points()}))
    (profiles / "sim_q1.yaml").write_text(yaml.safe_dump(Q1_PROFILE))
    config = {
        "gateway": {"id": "gw-sim", "site": "sim"},
        "profiles_dir": "profiles",
        "rooms": [{"id": "room1", "type": "equipment"}],
        "buses": [
            {"id": "tcp1", "type": "modbus_tcp", "host": "192.0.2.10", "port": 502},
            {"id": "rtu1", "type": "modbus_rtu", "port": "/dev/ttyUSB0", "baudrate": rtu_baud},
            {"id": "ups", "type": "serial_text", "port": "/dev/ttyUSB1"},
        ],
        "devices": [
            {"id": "meter", "bus": "tcp1", "unit": 1, "profile": "sim_all", "room": "room1"},
            {"id": "meter2", "bus": "tcp1", "unit": 7, "profile": "sim_all", "room": "room1"},
            {"id": "rtu_dev", "bus": "rtu1", "unit": 3, "profile": "sim_all", "room": "room1"},
            {"id": "ups1", "bus": "ups", "profile": "sim_q1", "room": "room1"},
        ],
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def loaded(tmp_path: Path) -> LoadedConfig:
    return load_gateway_config(write_site(tmp_path))


@pytest.fixture
async def site(loaded: LoadedConfig) -> AsyncIterator[SimulatedSite]:
    async with SimulatedSite(loaded) as running:
        yield running
