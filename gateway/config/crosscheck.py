"""Cross-checks of a validated site config against itself and its profiles.

What one model's validation cannot see: duplicate ids, references to buses, rooms, devices
and profiles that do not exist, RTU unit and serial port clashes, bus types that do not fit a
profile, point overrides a profile lacks, outputs that are not writable coils or are on a
disabled device, interlocks (and their cycles) and output feedback. Each problem is a
ConfigError with file, line and YAML path; outputs that share a feedback point are a warning
(`shared_feedback`, printed by `roomwarden check`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway.config.profile import DataType, ModbusProfile, RegisterType, SerialTextProfile
from gateway.config.profiles import find_profile, profile_not_found
from gateway.config.site import Device, GatewayConfig, OutputFeedback
from gateway.config.yamlfile import ConfigError, LineMap, YamlPath


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
    _check_size(config, profiles, err)
    return errors


MAX_SITE_POINTS = 20_000
"""Points one gateway polls, all devices together (the flight recorder's `max_points`; 10× the
benchmarked 2,000, which take ~63 MiB): 50 devices of a 2,000-point profile — an 8.7 KB
config — took the gateway to 1.28 GB and stalled its event loop for 13.6 s in the audit."""


def _check_size(config: GatewayConfig,
                profiles: dict[str, ModbusProfile | SerialTextProfile],
                err: Callable[[YamlPath, str], None]) -> None:
    total = 0
    for device in config.devices:
        profile = profiles.get(device.profile)
        if device.enabled and profile is not None:
            total += len(_point_names(profile))
    if total > MAX_SITE_POINTS:
        err(("devices",), f"the enabled devices have {total} points in all; one gateway "
                          f"polls at most {MAX_SITE_POINTS} (split the site over gateways)")


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
        if not device.enabled:  # not polled, maybe alone on its bus: never written (audit F5)
            err((*here, "device"),
                f"device {device.id!r} is disabled (`enabled: false`: not polled), so output "
                f"{output.id!r} cannot be relied on (never written when nothing else on bus "
                f"{device.bus!r} is polled); enable the device, or take the output (and its "
                "interlocks) out of the file while the device is out of service")
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
        elif (override := device.points.get(output.point)) is not None \
                and not override.enabled:  # (never read back: a coil switched off by hand at
            # the module was neither repaired nor reported — the outputs audit)
            err((*here, "point"), f"point {output.point!r} of device {device.id!r} is "
                                  "disabled (`enabled: false` in its points), so the output's "
                                  "coil is never read back: a coil changed at the module "
                                  "would be neither repaired nor reported; enable the point")
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
    _check_interlock_cycles(config, err)


def _check_interlock_cycles(config: GatewayConfig, err: Callable[[YamlPath, str], None]
                            ) -> None:
    """Interlocks that chain back to where they start (a held off while b is on, b while a
    is on …) would each hold the other off: no order decides them. One error per cycle, at
    its first lock."""
    blockers: dict[str, list[str]] = {}
    for lock in config.interlocks:
        blockers.setdefault(lock.output, []).append(lock.while_on)
    reported: set[frozenset[str]] = set()
    for index, lock in enumerate(config.interlocks):
        if lock.output == lock.while_on:
            continue  # reported above
        back = _blocker_chain(blockers, lock.while_on, lock.output)
        if back is None:
            continue
        cycle = [lock.output, *back]
        if frozenset(cycle) in reported:
            continue
        reported.add(frozenset(cycle))
        chain = "; ".join(f"{a} is held off while {b} is on"
                          for a, b in itertools.pairwise(cycle))
        err(("interlocks", index), f"interlocks form a cycle ({chain}): each output in it "
                                   "would hold off one that holds it off; remove one of them")


def _blocker_chain(blockers: dict[str, list[str]], start: str, goal: str) -> list[str] | None:
    """The shortest chain start, its blocker, that one's blocker … ending at `goal`; None if
    there is none."""
    came_from: dict[str, str | None] = {start: None}
    todo = [start]
    while todo:
        here = todo.pop(0)
        if here == goal:
            chain = [here]
            while (previous := came_from[chain[-1]]) is not None:
                chain.append(previous)
            return chain[::-1]
        for blocker in sorted(blockers.get(here, ())):
            if blocker not in came_from:
                came_from[blocker] = here
                todo.append(blocker)
    return None


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


def shared_feedback(config: GatewayConfig, name: str, lines: LineMap) -> list[ConfigError]:
    """Warnings (`roomwarden check` prints them; the config runs): an output whose feedback
    point is already another output's. Both are supervised by it — right for two fans in one
    duct on one airflow switch — but a copy-paste slip looks the same, and a shared switch
    cannot tell which of the fans stopped while the other keeps the air moving."""
    first: dict[str, int] = {}
    warnings = []
    for index, output in enumerate(config.outputs):
        if output.feedback is None:
            continue
        point = f"{output.feedback.device}.{output.feedback.point}"
        if point not in first:
            first[point] = index
            continue
        path: YamlPath = ("outputs", index, "feedback")
        warnings.append(ConfigError(
            name, path,
            f"{point} is also the feedback of outputs[{first[point]}]: both outputs are "
            f"supervised by it, as two fans in one duct on one airflow switch are (a fan that "
            f"stops while the other keeps the air moving is then not seen); if "
            f"{output.id!r} has a feedback of its own, name it here",
            lines.line_of(path)))
    return warnings


def _point_names(profile: ModbusProfile | SerialTextProfile) -> set[str]:
    """Names a device's `points:` may override: every point and every `point.flag`."""
    points = profile.points if isinstance(profile, ModbusProfile) else profile.fields
    return {p.name for p in points} | {f"{p.name}.{f.name}" for p in points for f in p.flags}
