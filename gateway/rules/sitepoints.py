"""The site's points as rules see them: one `PointInfo` and one `PointState` per point of every
enabled device (flags of a register as points of their own, and every device's
`<device>.online` as quantity `device_online`), and a rule's `select` over them. Pure.
"""

from __future__ import annotations

from gateway.config.loader import LoadedConfig
from gateway.field.bus_loop import ONLINE_POINT
from gateway.field.points import bind_points
from gateway.rules import model as m
from gateway.rules.compiler import PointInfo
from gateway.rules.conditions import PointState
from gateway.rules.model import DEVICE_ONLINE


class SitePoints:
    """`infos` (every point, device by device, each device's online point first), `states`
    (point id → what the engine knows of it, started at `start`)."""

    def __init__(self, loaded: LoadedConfig, start: float) -> None:
        self.infos: list[PointInfo] = []
        self.states: dict[str, PointState] = {}
        self._device_quantities: dict[str, set[str]] = {}
        rooms = {room.id: room.type for room in loaded.config.rooms}
        for device in loaded.config.devices:
            if not device.enabled:
                continue
            room_type = rooms.get(device.room, "other")
            online = PointInfo(f"{device.id}.{ONLINE_POINT}", device.id, device.room, room_type,
                               device.profile, DEVICE_ONLINE)
            infos = [online]
            for point in bind_points(device, loaded.profile_of(device)):
                infos.append(PointInfo(point.id, device.id, device.room, room_type,
                                       device.profile, point.quantity, point.enum))
                infos.extend(PointInfo(flag.id, device.id, device.room, room_type,
                                       device.profile, flag.quantity) for flag in point.flags)
            online_state = PointState(online.id, device.id, start)
            self.states[online.id] = online_state
            for info in infos[1:]:
                state = PointState(info.id, device.id, start)
                state.online = online_state
                self.states[info.id] = state
            self.infos.extend(infos)
            self._device_quantities[device.id] = {i.quantity for i in infos if i.quantity}

    def select(self, select: m.Select) -> list[PointInfo]:
        """The points a rule's `select` picks, in site order."""
        quantities = set(select.quantity) if select.quantity else None
        excluded = set(select.exclude_quantity)
        room_types = set(select.room_type) if select.room_type else None
        room_ids = set(select.room) if select.room else None
        profiles = set(select.profile) if select.profile else None
        device_has = set(select.device_has) if select.device_has else None
        out = []
        for info in self.infos:
            quantity = info.quantity
            if quantities is None:
                if quantity is None or quantity == DEVICE_ONLINE:
                    continue
            elif quantity not in quantities:
                continue
            if quantity in excluded:
                continue
            if room_types is not None and info.room_type not in room_types:
                continue
            if room_ids is not None and info.room not in room_ids:
                continue
            if profiles is not None and info.profile not in profiles:
                continue
            if device_has is not None and not device_has & self._device_quantities[info.device]:
                continue
            out.append(info)
        return out
