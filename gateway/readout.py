"""Live readings as text for a terminal (`roomwarden run --print`, `roomwarden demo`)."""

from __future__ import annotations

import textwrap
import time

from gateway.field.bus_loop import BusLoop
from gateway.field.latest import LatestSamples
from gateway.field.points import BoundPoint
from gateway.field.sample import Quality, Sample

WIDTH = 100


def render(bus_loops: list[BusLoop], latest: LatestSamples, now_ns: int | None = None) -> str:
    """One block per device: its state, then `name=value unit` for each point; flags are shown
    only when raised, values of bad quality as `?quality`."""
    now_ns = now_ns or time.time_ns()
    lines = [f"--- {time.strftime('%H:%M:%S')}  {len(latest.latest)} points, "
             f"{latest.samples} samples so far"]
    for loop in bus_loops:
        for poller in loop.pollers:
            health = loop.stats.device_health[poller.device_id]
            state = {True: "online", False: "OFFLINE", None: "waiting"}[health.online]
            head = f"{loop.bus_id}/{poller.device_id}  {state}"
            if health.last_error:
                head += f"  ({health.last_error})"
            lines.append(head)
            points: list[BoundPoint] = getattr(poller, "points", [])
            items = [item for point in points for item in _items(point, latest.latest, now_ns)]
            if items:
                lines.extend(textwrap.wrap("  ".join(items), WIDTH, initial_indent="    ",
                                           subsequent_indent="    "))
    return "\n".join(lines)


def _items(point: BoundPoint, latest: dict[str, Sample], now_ns: int) -> list[str]:
    sample = latest.get(point.id)
    if sample is None:
        return []
    items = [f"{point.name}={_value(point, sample)}"]
    for flag in point.flags:
        flag_sample = latest.get(flag.id)
        if flag_sample is not None and flag_sample.value is True:
            items.append(f"{point.name}.{flag.id.rsplit('.', 1)[1]}=ON")
    return items


def _value(point: BoundPoint, sample: Sample) -> str:
    if sample.quality is not Quality.GOOD and sample.value is None:
        return f"?{sample.quality.value}"
    value = sample.value
    if point.enum and isinstance(value, int) and not isinstance(value, bool):
        text = point.enum.get(value, str(value))
    elif isinstance(value, float):
        text = f"{value:.2f}".rstrip("0").rstrip(".")
    else:
        text = str(value)
    if point.unit and point.unit != "1" and not isinstance(value, bool | str):
        text += point.unit if point.unit in ("%", "°C") else f" {point.unit}"
    if sample.quality is not Quality.GOOD:
        text += f"(?{sample.quality.value})"
    return text.replace(" ", "\u00a0")  # keep a value and its unit on one line
