"""The point catalog of a loaded config: every point a gateway reports (with its flags and the
per-device `online` point), as the central side needs it to tag them (`PointMeta`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.contract.wire import PointMeta
from gateway.field.bus_loop import ONLINE_POINT
from gateway.field.points import bind_points

if TYPE_CHECKING:
    from gateway.config.loader import LoadedConfig


def catalog_points(loaded: LoadedConfig) -> dict[str, PointMeta]:
    """What the central side needs to tag every point this gateway reports."""
    points: dict[str, PointMeta] = {}
    for device in loaded.config.devices:
        if not device.enabled:
            continue
        for point in bind_points(device, loaded.profile_of(device)):
            points[point.id] = PointMeta(device=device.id, room=device.room,
                                         quantity=point.quantity, unit=point.unit)
            for flag in point.flags:
                points[flag.id] = PointMeta(device=device.id, room=device.room,
                                            quantity=flag.quantity)
        points[f"{device.id}.{ONLINE_POINT}"] = PointMeta(device=device.id, room=device.room,
                                                          quantity="device_online")
    return points
