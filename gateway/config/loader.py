"""Load YAML config and profile files into validated models, with errors a technician can act on.

Every error names the file, the line, the YAML path and the reason. Loading collects all the
errors of a file (and of the profiles it uses) rather than stopping at the first.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from gateway.config.profile import (
    MAX_PROFILE_POINTS,
    DataType,
    ModbusProfile,
    Profile,
    RegisterType,
    SerialTextProfile,
)
from gateway.config.site import Device, GatewayConfig, OutputFeedback
from gateway.config.yamlsafe import (
    DEFAULT_LIMITS,
    MAX_BYTES,
    YamlLimitError,
    YamlLimits,
    compose_limited,
)

PathPart = str | int
YamlPath = tuple[PathPart, ...]

MAX_FILE_BYTES = MAX_BYTES

_PROFILE_ADAPTER: TypeAdapter[ModbusProfile | SerialTextProfile] = TypeAdapter(Profile)
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ConfigError:
    file: str
    path: YamlPath
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {format_path(self.path) or '(top)'}: {self.reason}"


class ConfigErrors(Exception):
    """One or more problems in config files; `errors` lists each with file, path and reason."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def format_path(path: YamlPath) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.startswith("["):  # issue 14: `roomwarden check` names items by id
            text += part
        else:
            text += f".{part}" if text else part
    return text


# --- YAML with line numbers --------------------------------------------------------------


@dataclass
class LineMap:
    """Line (1-based) of every node of a YAML document, keyed by its path."""

    lines: dict[YamlPath, int] = field(default_factory=dict)

    def line_of(self, path: YamlPath) -> int | None:
        """The line of `path`, or of its nearest ancestor that exists in the document."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


def _walk(node: yaml.Node, path: YamlPath, lines: LineMap, problems: list[tuple[YamlPath, str]],
          visited: set[int]) -> None:
    """Record the line of every path and duplicate keys. A node an alias repeats is walked
    once (its repeats get the anchor's line), so the walk costs what the file holds."""
    lines.lines.setdefault(path, node.start_mark.line + 1)
    if id(node) in visited:
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[object] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            if key in seen:
                lines.lines.setdefault(path + (key,), key_node.start_mark.line + 1)
                problems.append((path + (key,), f"key {key!r} appears twice in this mapping"))
            seen.add(key)
            _walk(value_node, path + (key,), lines, problems, visited)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, path + (index,), lines, problems, visited)


def read_yaml(path: Path, name: str | None = None,
              limits: YamlLimits = DEFAULT_LIMITS) -> tuple[Any, LineMap]:
    """Parse one YAML file; raise ConfigErrors for unreadable, oversized or malformed files
    and for files past the limits of gateway.config.yamlsafe."""
    name = name or str(path)
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise ConfigErrors([ConfigError(name, (), f"file is {size} bytes; the limit is "
                                                      f"{limits.max_bytes}")])
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigErrors([ConfigError(name, (), f"cannot read: {exc.strerror or exc}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigErrors([ConfigError(name, (), f"not UTF-8 text: {exc.reason}")]) from exc
    return parse_yaml(text, name, limits)


def parse_yaml(text: str, name: str, limits: YamlLimits = DEFAULT_LIMITS,
               ) -> tuple[Any, LineMap]:
    """The data of one YAML document and the line of each of its paths; ConfigErrors with
    `file:line` for malformed YAML, duplicate keys or a document past `limits`."""
    lines = LineMap()
    try:
        node, loader = compose_limited(text, limits)
        if node is None:
            raise ConfigErrors([ConfigError(name, (), "file is empty")])
        problems: list[tuple[YamlPath, str]] = []
        _walk(node, (), lines, problems, set())
        if problems:
            raise ConfigErrors(
                ConfigError(name, p, reason, lines.line_of(p)) for p, reason in problems
            )
        data = loader.construct_document(node)
    except YamlLimitError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise ConfigErrors([ConfigError(name, (), f"refused: {exc.reason}", line)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigErrors(
            [ConfigError(name, (), f"not valid YAML: {exc.problem or exc}", line)]
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigErrors([ConfigError(name, (), f"not valid YAML: {exc}")]) from exc
    return data, lines


def pydantic_errors(exc: ValidationError, name: str, lines: LineMap, prefix: YamlPath = (),
                    tags: frozenset[str] = frozenset()) -> list[ConfigError]:
    """pydantic's errors as ConfigErrors with file, line, YAML path and a readable reason.

    pydantic puts the names of union members in error paths (`buses[0].modbus_rtu.port`,
    `expect[2].ExpectAlarm.alarm`); they are dropped (`tags` adds model-specific ones). One
    reason is kept per place (the first alternative of a union), and a list that is "too
    short" only because one of its items failed is not reported besides that item."""
    known = _TAGS | tags
    seen: set[YamlPath] = set()
    errors: list[ConfigError] = []
    for err in exc.errors(include_url=False):
        path = prefix + _strip_tags(tuple(err["loc"]), lines, prefix, known)
        reason = str(err["msg"])
        if err["type"] == "extra_forbidden":
            reason = "unknown key (not part of the schema; check its spelling)"
        elif err["type"] == "missing":
            reason = "required key is missing"
        elif reason.startswith("Value error, "):
            reason = reason.removeprefix("Value error, ")
        elif err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            ctx = err.get("ctx", {})
            key = str(ctx.get("discriminator", "")).strip("'") or "type"
            path = (*path, key)
            reason = (f"{ctx.get('tag')!r} is not one of {ctx.get('expected_tags')}"
                      if err["type"] == "union_tag_invalid" else "required key is missing")
        if path in seen:
            continue
        seen.add(path)
        errors.append(ConfigError(name, path, reason, lines.line_of(path)))
    return [e for e in errors if not (e.reason.startswith(("Tuple should have at least",
                                                           "List should have at least"))
                                      and any(o.path[:len(e.path)] == e.path and o is not e
                                              for o in errors))]


def _strip_tags(loc: tuple[Any, ...], lines: LineMap, prefix: YamlPath,
                tags: frozenset[str]) -> YamlPath:
    out: list[PathPart] = []
    for part in loc:
        if isinstance(part, str) and (*prefix, *out, part) not in lines.lines and (
                part in tags or part[:1].isupper() or "[" in part
                or part.startswith(("function-", "literal["))):
            continue  # a union member's name, not a key of the file
        out.append("in" if part == "in_" else part)
    return tuple(out)


_TAGS = frozenset({"modbus_rtu", "modbus_tcp", "serial_text", "modbus", "str", "float", "bool",
                   "int"})


def validate(model: type[M], data: Any, name: str, lines: LineMap) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigErrors(pydantic_errors(exc, name, lines)) from exc


# --- profiles ---------------------------------------------------------------------------


PROFILE_LIMITS = YamlLimits(top_level_items={"points": MAX_PROFILE_POINTS,
                                             "fields": MAX_PROFILE_POINTS},
                            top_level_what="points")
"""A profile's points are counted while it is read: a longer list is refused at once."""


def load_profile(path: Path) -> ModbusProfile | SerialTextProfile:
    data, lines = read_yaml(path, limits=PROFILE_LIMITS)
    try:
        profile = _PROFILE_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ConfigErrors(pydantic_errors(exc, str(path), lines)) from exc
    if profile.id != path.stem:
        raise ConfigErrors([ConfigError(str(path), ("id",), f"profile id {profile.id!r} must "
                            f"match its file name {path.stem!r}", lines.line_of(("id",)))])
    return profile


def default_profiles_dir() -> Path:
    env = os.environ.get("ROOMWARDEN_PROFILES")
    if env:
        return Path(env)
    in_repo = Path(__file__).resolve().parents[2] / "hardware" / "profiles"
    if in_repo.is_dir():
        return in_repo
    return Path("/usr/share/roomwarden/profiles")


# --- issue 11: the profile search path ------------------------------------------------------


def profile_search_path(profiles_dir: str | None, base: Path) -> tuple[Path, ...]:
    """Where a config's profiles are looked for, in order: the site's own `profiles_dir`
    (relative to `base`, the config's directory) first, then the shipped library. A site's
    profile of the same id as a shipped one replaces it for that site."""
    shipped = default_profiles_dir()
    if not profiles_dir:
        return (shipped,)
    own = base / profiles_dir
    return (own,) if own.resolve() == shipped.resolve() else (own, shipped)


def find_profile(profile_id: str, search: Sequence[Path]) -> Path | None:
    """The first `<profile_id>.yaml` on the search path."""
    for directory in search:
        path = directory / f"{profile_id}.yaml"
        if path.is_file():
            return path
    return None


def profile_not_found(profile_id: str, search: Sequence[Path]) -> str:
    """"profile not found" naming every directory looked in and the nearest names."""
    names = sorted({p.stem for d in search if d.is_dir() for p in profile_files(d)})
    near = difflib.get_close_matches(profile_id, names, n=3, cutoff=0.5)
    where = ", ".join(str(d) for d in search)
    hint = f"; nearest: {', '.join(near)}" if near else ""
    return f"profile {profile_id!r} not found: looked for {profile_id}.yaml in {where}{hint}"
# --- end issue 11 -----------------------------------------------------------------------------


def profile_files(directory: Path) -> Iterator[Path]:
    yield from sorted(p for p in directory.glob("*.yaml") if p.is_file())


# --- gateway configs --------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedConfig:
    """A validated gateway config with the profiles its devices use."""

    path: Path
    config: GatewayConfig
    profiles: dict[str, ModbusProfile | SerialTextProfile]

    def profile_of(self, device: Device) -> ModbusProfile | SerialTextProfile:
        return self.profiles[device.profile]


def load_gateway_config(path: Path, *, base_dir: Path | None = None,
                        name: str | None = None) -> LoadedConfig:
    """Load, validate and cross-check a gateway config; raise ConfigErrors listing every problem.

    `base_dir` resolves a relative `profiles_dir` (default: the file's own directory; a config
    staged in the state directory resolves against the installed config's directory). `name`
    is what errors call the file (default: its path)."""
    name = name or str(path)
    data, lines = read_yaml(path, name=name)
    config = validate(GatewayConfig, data, name, lines)
    base = base_dir if base_dir is not None else path.parent
    profiles_dir = profile_search_path(config.profiles_dir, base)
    errors: list[ConfigError] = []
    profiles: dict[str, ModbusProfile | SerialTextProfile] = {}
    for profile_id in sorted({d.profile for d in config.devices}):
        profile_path = find_profile(profile_id, profiles_dir)
        if profile_path is None:
            continue  # reported per device below
        try:
            profiles[profile_id] = load_profile(profile_path)
        except ConfigErrors as exc:
            errors.extend(exc.errors)
    errors.extend(cross_check(config, profiles, name, lines, profiles_dir))
    if errors:
        raise ConfigErrors(errors)
    return LoadedConfig(path=path, config=config, profiles=profiles)


def cross_check(config: GatewayConfig, profiles: dict[str, ModbusProfile | SerialTextProfile],
                name: str, lines: LineMap, profiles_dir: Sequence[Path]) -> list[ConfigError]:
    errors: list[ConfigError] = []

    def err(path: YamlPath, reason: str) -> None:
        errors.append(ConfigError(name, path, reason, lines.line_of(path)))

    for section, items in (("rooms", config.rooms), ("buses", config.buses),
                           ("devices", config.devices)):
        first_index: dict[str, int] = {}
        for index, item in enumerate(items):
            if item.id in first_index:
                err((section, index, "id"),
                    f"id {item.id!r} is already used by {section}[{first_index[item.id]}]")
            else:
                first_index[item.id] = index

    buses = {b.id: b for b in config.buses}
    rooms = {r.id for r in config.rooms}
    units_on_bus: dict[tuple[str, int], int] = {}
    ports: dict[str, int] = {}
    for index, bus_def in enumerate(config.buses):
        port = getattr(bus_def, "port", None)
        if bus_def.type != "modbus_tcp" and isinstance(port, str):
            if port in ports:
                err(("buses", index, "port"),
                    f"serial port {port!r} is already used by buses[{ports[port]}]")
            ports.setdefault(port, index)

    for index, device in enumerate(config.devices):
        here: YamlPath = ("devices", index)
        bus = buses.get(device.bus)
        if bus is None:
            err(here + ("bus",), f"bus {device.bus!r} is not defined in `buses` "
                                 f"(defined: {', '.join(sorted(buses)) or 'none'})")
        if device.room not in rooms:
            err(here + ("room",), f"room {device.room!r} is not defined in `rooms`")
        profile = profiles.get(device.profile)
        if profile is None:
            if find_profile(device.profile, profiles_dir) is not None:
                continue  # it exists but is invalid: its own errors are already listed
            err(here + ("profile",), profile_not_found(device.profile, profiles_dir))
            continue
        if bus is not None:
            wants = "serial_text" if profile.kind == "serial_text" else ("modbus_rtu",
                                                                         "modbus_tcp")
            if (bus.type != wants) if isinstance(wants, str) else (bus.type not in wants):
                err(here + ("bus",), f"profile {profile.id!r} is a {profile.kind} device but "
                                     f"bus {bus.id!r} is {bus.type}")
            elif bus.type in ("modbus_rtu", "modbus_tcp") and device.enabled:
                if bus.type == "modbus_rtu" and device.unit == 0:
                    err(here + ("unit",), "unit 0 is the RTU broadcast address; use 1-247")
                key = (bus.id, device.unit)
                if key in units_on_bus:
                    err(here + ("unit",), f"unit {device.unit} on bus {bus.id!r} is already "
                                          f"used by devices[{units_on_bus[key]}]")
                else:
                    units_on_bus[key] = index
            elif bus.type == "serial_text":
                other = [i for i, d in enumerate(config.devices[:index])
                         if d.bus == bus.id and d.enabled]
                if other and device.enabled:
                    err(here + ("bus",), f"serial-text bus {bus.id!r} already carries "
                                         f"devices[{other[0]}]; one device per serial line")
        point_names = _point_names(profile)
        for point_name in device.points:
            if point_name not in point_names:
                err(here + ("points", point_name),
                    f"profile {profile.id!r} has no point {point_name!r}")
    _check_outputs(config, profiles, err)
    return errors


def _check_outputs(config: GatewayConfig,
                   profiles: dict[str, ModbusProfile | SerialTextProfile],
                   err: Callable[[YamlPath, str], None]) -> None:
    devices = {d.id: d for d in config.devices}
    rooms = {r.id for r in config.rooms}
    outputs: dict[str, int] = {}
    targets: dict[tuple[str, str], int] = {}
    for index, output in enumerate(config.outputs):
        here: YamlPath = ("outputs", index)
        if output.id in outputs:
            err((*here, "id"), f"id {output.id!r} is already used by outputs[{outputs[output.id]}]")
        outputs.setdefault(output.id, index)
        for room in output.rooms:
            if room not in rooms:
                err((*here, "rooms"), f"room {room!r} is not defined in `rooms`")
        device = devices.get(output.device)
        if device is None:
            err((*here, "device"), f"device {output.device!r} is not defined in `devices`")
            continue
        profile = profiles.get(device.profile)
        if not isinstance(profile, ModbusProfile):
            if profile is not None:
                err((*here, "device"), f"device {device.id!r} is not a Modbus device")
            continue
        point = next((p for p in profile.points if p.name == output.point), None)
        if point is None:
            err((*here, "point"), f"profile {profile.id!r} has no point {output.point!r}")
        elif not point.writable or point.register is not RegisterType.COIL:
            err((*here, "point"), f"point {output.point!r} of {profile.id!r} is not a "
                                  "writable coil (`register: coil`, `writable: true`)")
        key = (output.device, output.point)
        if key in targets:
            err((*here, "point"), f"{output.device}.{output.point} already drives "
                                  f"outputs[{targets[key]}]")
        targets.setdefault(key, index)
        _check_feedback(output.feedback, devices, profiles, here, err)  # issue 11
    for index, lock in enumerate(config.interlocks):
        for field_name in ("output", "while_on"):
            if getattr(lock, field_name) not in outputs:
                err(("interlocks", index, field_name),
                    f"output {getattr(lock, field_name)!r} is not defined in `outputs`")
        if lock.output == lock.while_on:
            err(("interlocks", index), "an output cannot be interlocked with itself")


# --- issue 11: an output's feedback names a boolean point of a polled device ----------------
def _check_feedback(feedback: OutputFeedback | None, devices: dict[str, Device],
                    profiles: dict[str, ModbusProfile | SerialTextProfile], here: YamlPath,
                    err: Callable[[YamlPath, str], None]) -> None:
    if feedback is None:
        return
    device = devices.get(feedback.device)
    if device is None:
        err((*here, "feedback", "device"),
            f"device {feedback.device!r} is not defined in `devices`")
        return
    if not device.enabled:
        err((*here, "feedback", "device"), f"device {device.id!r} is disabled")
        return
    profile = profiles.get(device.profile)
    if profile is None:
        return  # reported with the device
    points = profile.points if isinstance(profile, ModbusProfile) else profile.fields
    bools = {p.name for p in points if p.type in (DataType.BOOL, "bool")}
    bools |= {f"{p.name}.{f.name}" for p in points for f in p.flags}
    override = device.points.get(feedback.point)
    if feedback.point not in bools or (override is not None and not override.enabled):
        err((*here, "feedback", "point"), f"{device.id}.{feedback.point} is not an enabled "
                                          f"boolean point of profile {profile.id!r}")
# --- end issue 11 -----------------------------------------------------------------------------


def _point_names(profile: ModbusProfile | SerialTextProfile) -> set[str]:
    """Names a device's `points:` may override: every point and every `point.flag`."""
    points = profile.points if isinstance(profile, ModbusProfile) else profile.fields
    return {p.name for p in points} | {f"{p.name}.{f.name}" for p in points for f in p.flags}
