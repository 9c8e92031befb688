"""Small builders shared by tests: profiles, devices and bound points made in code."""

from __future__ import annotations

from typing import Any

from gateway.config.profile import ModbusProfile
from gateway.config.site import Device
from gateway.field.points import BoundPoint, bind_points


def modbus_profile(points: list[dict[str, Any]], **extra: Any) -> ModbusProfile:
    return ModbusProfile.model_validate({
        "kind": "modbus", "id": "test_profile", "manufacturer": "test", "model": "test",
        "generic": True, "points": points, **extra})


def bound(points: list[dict[str, Any]], device_id: str = "dev1", **extra: Any) -> list[BoundPoint]:
    profile = modbus_profile(points, **extra)
    device = Device(id=device_id, bus="bus1", profile=profile.id, room="room1")
    return bind_points(device, profile)


def registers(addresses: list[int], kind: str = "uint16", register: str = "holding",
              ) -> list[dict[str, Any]]:
    return [{"name": f"p{a}", "register": register, "address": a, "type": kind}
            for a in addresses]
