"""The site's points as rules see them: one `PointInfo` and one `PointState` per point of every
enabled device (flags of a register as points of their own, and every device's
`<device>.online` as quantity `device_online`), a rule's `select` over them, and the subjects
it groups them into. Pure.

What depends only on the config — the points, each device's quantities, the subjects of each
(select, subject kind) — is computed once per `LoadedConfig` object and kept while that object
lives (`WeakMemo`): engines built again on the same config (a restart of the rules, the tests)
reuse it. The states are new for every engine.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from gateway.config.loaded import LoadedConfig
from gateway.config.profile import Flag, PointCommon
from gateway.config.site import Device
from gateway.field.bus_loop import ONLINE_POINT
from gateway.field.points import bind_points
from gateway.rules import model as m
from gateway.rules.compiler import PointInfo
from gateway.rules.conditions import PointState
from gateway.rules.model import DEVICE_ONLINE

K = TypeVar("K")
V = TypeVar("V")

Groups = Iterator[tuple[str, tuple[PointInfo, ...], tuple[str, ...]]]
"""(subject, its points in site order, their ids), in order of each subject's first point.
The ids are one tuple per set of points across the config's groups, or for one point a tuple
made as it is read (the config keeps only the tuples of groups, and one point's id: the
points are looked up by id as the groups are read)."""


class WeakMemo(Generic[K, V]):
    """A value made from an object, kept while that object lives (by identity: for objects
    that cannot be hashed, or only at a cost). Bounded by the objects alive."""

    def __init__(self, make: Callable[[K], V]) -> None:
        self._make = make
        self._items: dict[int, tuple[weakref.ref[K], V]] = {}

    def __call__(self, key: K) -> V:
        ident = id(key)
        found = self._items.get(ident)
        if found is not None and found[0]() is key:
            return found[1]
        value = self._make(key)
        items = self._items

        def forget(ref: weakref.ref[K]) -> None:
            entry = items.get(ident)
            if entry is not None and entry[0] is ref:
                del items[ident]
        self._items[ident] = (weakref.ref(key, forget), value)
        return value


class _Site:
    """What the rules need of a config's points; no state (shared by engines)."""

    def __init__(self, loaded: LoadedConfig) -> None:
        self.infos: list[PointInfo] = []
        self.devices: list[tuple[PointInfo, list[PointInfo]]] = []
        """Per enabled device: its online point, and its other points."""
        self.device_quantities: dict[str, set[str]] = {}
        self.groups: dict[tuple[m.Select, str], list[str | tuple[str, ...]]] = {}
        self._ids: dict[tuple[str, ...], tuple[str, ...]] = {}
        """One tuple per set of point ids."""
        rooms = {room.id: room.type for room in loaded.config.rooms}
        for device in loaded.config.devices:
            if not device.enabled:
                continue
            room_type = rooms.get(device.room, "other")
            online = PointInfo(f"{device.id}.{ONLINE_POINT}", device.id, device.room, room_type,
                               device.profile, DEVICE_ONLINE)
            infos = []
            for point in bind_points(device, loaded.profile_of(device)):
                infos.append(PointInfo(point.id, device.id, device.room, room_type,
                                       device.profile, point.quantity, point.enum,
                                       point.valid_min, point.valid_max,
                                       _field_device(device, point.name, point.spec)))
                specs = {f.name: f for f in point.spec.flags}
                for flag in point.flags:
                    name = flag.id.rsplit(".", 1)[1]
                    infos.append(PointInfo(
                        flag.id, device.id, device.room, room_type, device.profile,
                        flag.quantity, field_device=_field_device(
                            device, f"{point.name}.{name}", specs[name])))
            self.devices.append((online, infos))
            self.infos.append(online)
            self.infos.extend(infos)
            self.device_quantities[device.id] = {DEVICE_ONLINE} | {
                i.quantity for i in infos if i.quantity}
        self.by_id = {info.id: info for info in self.infos}

    def select(self, select: m.Select) -> list[PointInfo]:
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
            if device_has is not None and not device_has & self.device_quantities[info.device]:
                continue
            out.append(info)
        return out

    def subjects(self, select: m.Select, subject: str) -> Groups:
        key = (select, subject)
        found = self.groups.get(key)
        if found is None:
            groups: dict[str, list[PointInfo]] = {}
            for info in self.select(select):
                groups.setdefault(subject_name(info, subject), []).append(info)
            shared = self._ids
            found = self.groups[key] = [
                ids[0] if len(ids) == 1 else shared.setdefault(ids, ids) for ids in (
                    tuple(info.id for info in members) for members in groups.values()
                    if len(members) >= select.min_members)]
        by_id = self.by_id
        for kept in found:
            ids = (kept,) if isinstance(kept, str) else kept
            members = tuple([by_id[i] for i in ids])
            yield subject_name(members[0], subject), members, ids  # every member has its name


def _field_device(device: Device, name: str, spec: PointCommon | Flag) -> bool:
    """The point's (or flag's) `field_device`: the device's override, else the profile's."""
    override = device.points.get(name)
    if override is not None and override.field_device is not None:
        return override.field_device
    return spec.field_device


def subject_name(info: PointInfo, subject: str) -> str:
    """The subject of kind `subject` (point, device, room) that `info` belongs to (a
    binding's: its first point's, gateway.rules.engine)."""
    return info.id if subject == "point" else info.device if subject == "device" else info.room


_sites: WeakMemo[LoadedConfig, _Site] = WeakMemo(_Site)


class SitePoints:
    """`infos` (every point, device by device, each device's online point first), `states`
    (point id → what the engine knows of it, started at `start`: a `state`, PointState or a
    subclass — the engine's carry its intake's fields, gateway.rules.intake)."""

    def __init__(self, loaded: LoadedConfig, start: float,
                 state: type[PointState] = PointState) -> None:
        site = self._site = _sites(loaded)
        self.infos = site.infos
        self.by_id = site.by_id
        """Point id → its `PointInfo` (shared between engines: do not change)."""
        self.states: dict[str, PointState] = {}
        states = self.states
        for online, infos in site.devices:
            device = online.device
            online_state = states[online.id] = state(online.id, device, start)
            for info in infos:
                point = states[info.id] = state(info.id, device, start, info.valid_min,
                                                info.valid_max)
                point.online = online_state

    def select(self, select: m.Select) -> list[PointInfo]:
        """The points a rule's `select` picks, in site order."""
        return self._site.select(select)

    def subjects(self, rule: m.Rule) -> Groups:
        """The rule's subjects with its selected points, those with at least its
        `min_members` (shared between engines: do not change)."""
        return self._site.subjects(rule.select, rule.subject)
