"""What changes between two gateway configs, readable by the technician who flashes them.

`diff_configs(old, new)` walks the validated configs (their JSON dump, so durations
read `5s`): mappings key by key, lists of things with an identity (rooms, buses, devices,
outputs by `id`; interlocks by output and blocker; rule parameter overrides by rule and
scope; panel users by name) item by item, anything else as a whole. Added and removed
devices get a one-line summary::

    devices:
      + devices.h2-3 (generic_h2_detector on rs485-1 unit 5, room battery-1)
      ~ devices.th-1.points.temperature.offset: -0.4 → -0.2
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from gateway.config.section import validator
from gateway.config.site import GatewayConfig
from gateway.records import dataclass

Op = Literal["+", "-", "~"]
SECTION_ORDER = ("version", "gateway", "profiles_dir", "rooms", "buses", "devices", "outputs",
                 "interlocks", "rules", "alarms", "panel", "uplink", "flashing")


@dataclass(frozen=True)
class Change:
    """One difference: `+` added, `-` removed, `~` changed, at a dotted `path`."""

    op: Op
    path: tuple[str, ...]
    old: Any = None
    new: Any = None
    summary: str | None = None
    """For added or removed items: what they are, in a few words."""

    @property
    def section(self) -> str:
        return self.path[0]

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    def __str__(self) -> str:
        if self.op == "~":
            return f"~ {self.dotted}: {format_value(self.old)} → {format_value(self.new)}"
        what = self.summary if self.summary is not None else format_value(
            self.new if self.op == "+" else self.old)
        return f"{self.op} {self.dotted} ({what})" if what else f"{self.op} {self.dotted}"


def format_value(value: Any, limit: int = 120) -> str:
    """A compact, YAML-like rendering of a dumped value."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, str):
        text = value if value and value.strip() == value and "\n" not in value \
            else json.dumps(value, ensure_ascii=False)
    elif isinstance(value, list):
        text = "[" + ", ".join(format_value(v, limit) for v in value) + "]"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{k}: {format_value(v, limit)}" for k, v in value.items()) + "}"
    else:
        text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _summary(item: Any) -> str:
    """Non-empty fields of an added/removed item, compactly (identity keys left out)."""
    if not isinstance(item, dict):
        return format_value(item)
    parts = [f"{k}: {format_value(v, 40)}" for k, v in item.items()
             if k not in ("id",) and v not in (None, [], {})]
    return format_value(", ".join(parts), 160) if parts else ""


def _scope(item: dict[str, Any]) -> str:
    for scope in ("device", "room", "room_type"):
        if item.get(scope) is not None:
            return f"{item['rule']}[{scope}={item[scope]}]"
    return str(item["rule"])


_IDENTITY: dict[tuple[str, ...], Callable[[dict[str, Any]], str]] = {
    ("interlocks",): lambda i: f"{i['output']}/while_on={i['while_on']}",
    ("rules", "parameters"): _scope,
    ("panel", "users"): lambda i: str(i["name"]),
}


def _identity(path: tuple[str, ...], items: list[Any]) -> dict[str, Any] | None:
    """Items keyed by their identity, or None if they have none (or it is not unique)."""
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    key_of = _IDENTITY.get(path)
    if key_of is None:
        if not all(isinstance(i.get("id"), str) for i in items):
            return None
        key_of = lambda i: str(i["id"])  # noqa: E731
    try:
        keyed = {key_of(i): i for i in items}
    except (KeyError, TypeError):
        return None
    return keyed if len(keyed) == len(items) else None


class _Differ:
    def __init__(self, old: GatewayConfig, new: GatewayConfig) -> None:
        self.old, self.new = old, new
        self.changes: list[Change] = []

    def summary(self, op: Op, path: tuple[str, ...], item: Any) -> str:
        if len(path) == 2 and path[0] == "devices" and isinstance(item, dict):
            cfg = self.new if op == "+" else self.old
            bus = next((b for b in cfg.buses if b.id == item.get("bus")), None)
            on = f" on {item.get('bus')}"
            if bus is None or bus.type != "serial_text":
                on += f" unit {item.get('unit')}"
            text = f"{item.get('profile')}{on}, room {item.get('room')}"
            if item.get("enabled") is False:
                text += ", disabled"
            return text
        if path[:2] == ("rules", "parameters") and isinstance(item, dict):
            return format_value(item.get("set"))
        if len(path) == 2 and path[0] == "buses" and isinstance(item, dict):
            where = item.get("port") or f"{item.get('host')}:{item.get('port')}"
            return f"{item.get('type')} {where}"
        return _summary(item)

    def add(self, op: Op, path: tuple[str, ...], old: Any, new: Any) -> None:
        summary = self.summary(op, path, new if op == "+" else old) if op != "~" else None
        self.changes.append(Change(op, path, old, new, summary))

    def walk(self, path: tuple[str, ...], old: Any, new: Any) -> None:
        if old == new and type(old) is type(new):
            return
        if isinstance(old, dict) and isinstance(new, dict):
            self.mapping(path, old, new)
        elif isinstance(old, list) and isinstance(new, list):
            self.sequence(path, old, new)
        elif old is None and isinstance(new, dict) and path:
            self.add("+", path, None, new)
        elif new is None and isinstance(old, dict) and path:
            self.add("-", path, old, None)
        else:
            self.add("~", path, old, new)

    def mapping(self, path: tuple[str, ...], old: dict[str, Any], new: dict[str, Any]) -> None:
        for key in [*old, *(k for k in new if k not in old)]:
            here = (*path, str(key))
            if key not in new:
                self.add("-", here, old[key], None)
            elif key not in old:
                self.add("+", here, None, new[key])
            else:
                self.walk(here, old[key], new[key])

    def sequence(self, path: tuple[str, ...], old: list[Any], new: list[Any]) -> None:
        old_keyed = _identity(path, old) if old else {}
        new_keyed = _identity(path, new) if new else {}
        if old_keyed is not None and new_keyed is not None:  # both keyed (or empty)
            self.mapping(path, old_keyed, new_keyed)
            return
        scalars = all(not isinstance(v, dict | list) for v in [*old, *new])
        if scalars and len(set(map(repr, old))) == len(old) and len(
                set(map(repr, new))) == len(new) and set(map(repr, old)) != set(map(repr, new)):
            for value in old:
                if value not in new:
                    self.changes.append(Change("-", (*path, format_value(value)), value, None,
                                               ""))
            for value in new:
                if value not in old:
                    self.changes.append(Change("+", (*path, format_value(value)), None, value,
                                               ""))
            return
        self.add("~", path, old, new)


def diff_configs(old: GatewayConfig, new: GatewayConfig) -> list[Change]:
    """Every difference between two validated configs, grouped by section in SECTION_ORDER
    (file order within a section)."""
    differ = _Differ(old, new)
    dump = validator(GatewayConfig).dump_python  # pydantic's serializer, built at a diff
    differ.walk((), dump(old, mode="json"), dump(new, mode="json"))
    order = {name: index for index, name in enumerate(SECTION_ORDER)}
    return sorted(differ.changes, key=lambda c: order.get(c.section, len(order)))


def render(changes: list[Change]) -> str:
    """Readable lines grouped by section, with a heading per section; empty if equal."""
    lines: list[str] = []
    section: str | None = None
    for change in changes:
        if change.section != section:
            section = change.section
            count = sum(1 for c in changes if c.section == section)
            lines.append(f"{section}: {count} change{'s' if count != 1 else ''}")
        lines.append(f"  {change}")
    return "\n".join(lines)
