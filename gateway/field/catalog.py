"""The point catalog of a loaded config: every point a gateway reports (with its flags and the
per-device `online` point), as the central side needs it to tag them: `PointTags`, the
contract's `PointTags` without the model (gateway.contract.outbound: building its validator
cost a running gateway memory too, issue 15); the uplink checks them against the contract.

Points of one device that share room, quantity and unit share one `PointTags` (frozen, so
nothing can tell): a device's points mostly repeat a few quantities, and a model instance
each was 0.4 KiB of every 2,000-point gateway's memory for as long as it runs (issue 15)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.contract.outbound import PointTags
from gateway.field.bus_loop import ONLINE_POINT
from gateway.field.points import bind_points

if TYPE_CHECKING:
    from gateway.config.loader import LoadedConfig


def catalog_points(loaded: LoadedConfig) -> dict[str, PointTags]:
    """What the central side needs to tag every point this gateway reports."""
    points: dict[str, PointTags] = {}
    for device in loaded.config.devices:
        if not device.enabled:
            continue
        # built with the same arguments as one each would be (a flag's and the online point's
        # without `unit`), so each shared one is what the point would have had
        metas: dict[tuple[str | None, str | None, bool], PointTags] = {}
        for point in bind_points(device, loaded.profile_of(device)):
            key = (point.quantity, point.unit, True)
            meta = metas.get(key)
            if meta is None:
                meta = metas[key] = PointTags(device=device.id, room=device.room,
                                              quantity=point.quantity, unit=point.unit)
            points[point.id] = meta
            for flag in point.flags:
                key = (flag.quantity, None, False)
                meta = metas.get(key)
                if meta is None:
                    meta = metas[key] = PointTags(device=device.id, room=device.room,
                                                  quantity=flag.quantity)
                points[flag.id] = meta
        points[f"{device.id}.{ONLINE_POINT}"] = PointTags(device=device.id, room=device.room,
                                                          quantity="device_online")
    return points
