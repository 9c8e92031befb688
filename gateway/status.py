"""The gateway's live state as the panel's views: readings by room and device, and health.

The panel's models (gateway.panel.views, pydantic) are imported at the first view made: an
incident's health snapshot (gateway.recorder.hook) is `health_data`, the same JSON data
without them, so a gateway at rest holds none (issue 15)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.actions.driver import OutputDriver
from gateway.actions.planner import OutputPlanner
from gateway.config.loaded import LoadedConfig
from gateway.field.bus_loop import BusLoop
from gateway.field.latest import LatestSamples
from gateway.field.points import BoundPoint
from gateway.field.sample import Quality, Sample

if TYPE_CHECKING:
    from gateway.panel.views import HealthView, PointView, RoomView


def room_views(loaded: LoadedConfig, bus_loops: list[BusLoop], latest: LatestSamples,
               now_ns: int) -> list[RoomView]:
    from gateway.panel.views import DeviceView, PointView, RoomView

    health = {device: h for loop in bus_loops for device, h in loop.stats.device_health.items()}
    points = {poller.device_id: getattr(poller, "points", []) for loop in bus_loops
              for poller in loop.pollers}
    devices_by_room: dict[str, list[DeviceView]] = {}
    for device in loaded.config.devices:
        if not device.enabled:
            continue
        device_health = health.get(device.id)
        views: list[PointView] = []
        for point in points.get(device.id, []):
            views.append(_point_view(PointView, point, point.name, point.unit,
                                     point.quantity, latest.latest.get(point.id), now_ns))
            for flag in point.flags:
                views.append(_point_view(PointView, point,
                                         f"{point.name}.{flag.id.rsplit('.', 1)[1]}", None,
                                         flag.quantity, latest.latest.get(flag.id), now_ns,
                                         is_flag=True))
        devices_by_room.setdefault(device.room, []).append(DeviceView(
            id=device.id, name=device.name, bus=device.bus,
            online=device_health.online if device_health else None,
            last_error=device_health.last_error if device_health else None, points=views))
    return [RoomView(id=room.id, name=room.name, type=room.type,
                     devices=devices_by_room.get(room.id, []))
            for room in loaded.config.rooms]


def _point_view(view: type[PointView], point: BoundPoint, name: str, unit: str | None,
                quantity: str | None, sample: Sample | None, now_ns: int,
                is_flag: bool = False) -> PointView:
    """One reading as the panel shows it (`view`: the panel's PointView, imported by the
    caller once for all readings)."""
    if sample is None:
        return view(name=name, value=None, unit=unit, quantity=quantity,
                         quality=Quality.STALE.value, age_s=None)
    label = None
    if not is_flag and point.enum and isinstance(sample.value, int) \
            and not isinstance(sample.value, bool):
        label = point.enum.get(sample.value)
    return view(name=name, value=sample.value, unit=unit, quantity=quantity,
                     quality=sample.quality.value, age_s=round((now_ns - sample.ts) / 1e9, 1),
                     label=label)


def health_view(loaded: LoadedConfig, bus_loops: list[BusLoop], planner: OutputPlanner,
                driver: OutputDriver, uptime_s: float, *, flood: bool = False,
                uplink: str = "not configured", outbox_depth: int | None = None,
                config_version: int = 0, config_sha256: str | None = None) -> HealthView:
    """The gateway's health as the panel's `HealthView` (`health_data`, validated)."""
    from gateway.panel.views import HealthView

    return HealthView.model_validate(health_data(
        loaded, bus_loops, planner, driver, uptime_s, flood=flood, uplink=uplink,
        outbox_depth=outbox_depth, config_version=config_version,
        config_sha256=config_sha256))


def health_data(loaded: LoadedConfig, bus_loops: list[BusLoop], planner: OutputPlanner,
                driver: OutputDriver, uptime_s: float, *, flood: bool = False,
                uplink: str = "not configured", outbox_depth: int | None = None,
                config_version: int = 0, config_sha256: str | None = None
                ) -> dict[str, Any]:
    """The gateway's health as JSON data: `health_view(...).model_dump(mode="json")` (every
    field, in its order; tests/panel/test_panel_at_rest.py compares them) without pydantic."""
    buses: list[dict[str, Any]] = []
    for loop in bus_loops:
        healths = loop.stats.device_health.values()
        bus = next(b for b in loaded.config.buses if b.id == loop.bus_id)
        buses.append({"id": loop.bus_id, "type": bus.type,
                      "devices_online": sum(1 for h in healths if h.online),
                      "devices_total": len(loop.stats.device_health),
                      "polls": loop.stats.cycles, "overruns": loop.stats.overruns,
                      "last_poll_ms": round(loop.stats.last_poll_seconds * 1000, 1)})
    outputs = []
    for output in loaded.config.outputs:
        plan, state = planner.state[output.id], driver.state[output.id]
        outputs.append({"id": output.id, "role": output.role, "on": state.commanded,
                        "confirmed": state.confirmed, "failed": state.failed,
                        "error": state.last_error, "blocked_by": plan.blocked_by,
                        "block_reason": plan.block_reason, "reasons": list(plan.reasons),
                        "rooms": sorted(planner.rooms.get(output.id, ())),
                        "silence_on_ack": output.silences_on_ack, "held": False})
    return {"buses": buses, "outputs": outputs,
            "devices_online": sum(b["devices_online"] for b in buses),
            "devices_total": sum(b["devices_total"] for b in buses), "uplink": uplink,
            "outbox_depth": outbox_depth, "flood": flood, "uptime_s": round(uptime_s, 1),
            "config_version": config_version, "config_sha256": config_sha256}
