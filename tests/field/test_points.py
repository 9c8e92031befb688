"""Site overrides bind onto profile points: calibration, ranges, inverted contacts, flags."""

from __future__ import annotations

import gc

import gateway.field.points as points_module
from gateway.config.section import validator
from gateway.config.site import Device, PointOverride
from gateway.field.planner import plan_requests
from gateway.field.points import bind_points
from gateway.field.readings import bit_samples, register_samples
from gateway.field.sample import Quality, Sample
from tests.helpers import modbus_profile

PROFILE = modbus_profile([
    {"name": "temp", "register": "holding", "address": 0, "type": "int16", "scale": 0.1,
     "valid": {"min": -40, "max": 80}},
    {"name": "alarms", "register": "holding", "address": 1,
     "flags": [{"bit": 0, "name": "ct_fault", "quantity": "detector_fault"},
               {"bit": 1, "name": "leak"}]},
    {"name": "door", "register": "discrete_input", "address": 0, "quantity": "door_open"},
])


def read(device: Device, registers: list[int], bits: list[bool]) -> dict[str, Sample]:
    points = bind_points(device, PROFILE)
    out: list[Sample] = []
    for request in plan_requests(points):
        if request.register.is_bit:
            bit_samples(request, bits, 1, out)
        else:
            register_samples(request, registers, 1, out)
    return {s.point: s for s in out}


def test_profile_values_without_overrides() -> None:
    got = read(Device(id="d", bus="b", profile="p", room="r"), [215, 0b11], [True])
    assert got["d.temp"].value == 21.5
    assert got["d.alarms.ct_fault"].value is True and got["d.alarms.leak"].value is True
    assert got["d.door"].value is True


def test_overrides_calibrate_narrow_invert_and_disable_flags() -> None:
    device = validator(Device).validate_python({
        "id": "d", "bus": "b", "profile": "p", "room": "r",
        "points": {"temp": {"offset": -0.5, "valid_max": 21.0},
                   "door": {"invert": True},
                   "alarms.ct_fault": {"enabled": False},
                   "alarms.leak": {"quantity": "water_leak", "invert": True}}})
    got = read(device, [215, 0b11], [True])
    assert got["d.temp"].value == 21.0 and got["d.temp"].quality is Quality.GOOD
    assert "d.alarms.ct_fault" not in got
    assert got["d.alarms.leak"].value is False
    assert got["d.door"].value is False
    got = read(device, [216, 0], [False])
    assert got["d.temp"].quality is Quality.INVALID  # 21.1 > valid_max 21.0: kept, flagged
    assert got["d.temp"].value == 21.1
    leak = next(f for p in bind_points(device, PROFILE) for f in p.flags)
    assert leak.quantity == "water_leak"


def test_a_device_is_bound_once_while_it_lives() -> None:
    """The pollers, the rules and the catalog each bind the config's devices: the same device
    and profile objects give the same points (one copy of each id), a device made again is
    bound again (equal points), and a device's entry goes with it."""
    device = Device(id="d", bus="b", profile="p", room="r",
                    points={"temp": PointOverride(offset=0.5)})
    first, again = bind_points(device, PROFILE), bind_points(device, PROFILE)
    assert first is not again and first == again
    assert all(a is b for a, b in zip(first, again, strict=True))
    same = Device(id="d", bus="b", profile="p", room="r",
                  points={"temp": PointOverride(offset=0.5)})
    other = bind_points(same, PROFILE)
    assert other == first and other[0] is not first[0]
    assert bind_points(device, modbus_profile([{"name": "temp", "register": "holding",
                                                "address": 0}]))[0].scale == 1.0
    key = id(same)
    assert key in points_module._BOUND
    del same, other
    gc.collect()
    assert key not in points_module._BOUND
