"""What a gateway config says about rules, and loading the rule packs.

A gateway config's `rules:` section (model `RulesSection`):

    rules:
      packs: [fire, explosion, power, environment, sensor_health]   # default: all
      disabled: [environment.door_open_long]
      parameters:
        - {rule: power.branch_overload, device: meter-ap1, set: {rating_a: 63}}
        - {rule: power.branch_load_high, device: meter-ap1, set: {rating_a: 63}}
        - {rule: environment.temperature_recommended, room_type: battery, set: {high: 30}}
        - {rule: power.mains_frequency, set: {low_hz: 49.5, high_hz: 50.5}}   # site-wide

An override applies to one rule at one scope: the whole site (no scope key), a room type, a
room id or a device id. The most specific wins: device > room > room type > site > chemistry
default > default.

Battery chemistry: a room or device may declare `chemistry: vrla | vla | lfp | nmc`; a rule's
`chemistry:` block gives its parameter defaults per chemistry (each with its basis), applied
before any site override (a device's chemistry wins over its room's).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config.errors import ConfigError, ConfigErrors, YamlPath
from gateway.config.loaded import LoadedConfig
from gateway.rules.model import Rule, RulePack, load_pack, parameter_kinds
from gateway.rules.param_limits import unbuildable
from gateway.rules.responses import response_ids
from gateway.rules.section import (
    ParameterOverride,
    ParamValue,
    RulesSection,
)

if TYPE_CHECKING:
    from gateway.config.yamlfile import LineMap


def default_rules_dir() -> Path:
    """`$ROOMWARDEN_RULES` if set (systemd/install.sh checks a site's configs against the rule
    packs it is about to install), else `edge_rules/` of the repository, or
    /usr/share/roomwarden/rules on a gateway."""
    env = os.environ.get("ROOMWARDEN_RULES")
    if env:
        return Path(env)
    in_repo = Path(__file__).resolve().parents[2] / "edge_rules"
    if in_repo.is_dir():
        return in_repo
    return Path("/usr/share/roomwarden/rules")


class ParameterOverrides:
    """Site parameter overrides and disabled rules, resolved per binding by the engine."""

    def __init__(self, entries: Iterable[ParameterOverride] = (),
                 disabled: Iterable[str] = (), *,
                 chemistry_defaults: Mapping[str, Mapping[str, Mapping[str, ParamValue]]]
                 | None = None,
                 device_chemistry: Mapping[str, str] | None = None,
                 room_chemistry: Mapping[str, str] | None = None) -> None:
        self.entries = tuple(entries)
        self.disabled = frozenset(disabled)
        self._by_rule: dict[str, list[ParameterOverride]] = {}
        for entry in sorted(self.entries, key=lambda e: e.rank):
            self._by_rule.setdefault(entry.rule, []).append(entry)
        self.chemistry_defaults = dict(chemistry_defaults or {})
        """rule id → chemistry → parameter defaults."""
        self.device_chemistry = dict(device_chemistry or {})
        self.room_chemistry = dict(room_chemistry or {})

    @classmethod
    def from_section(cls, section: RulesSection) -> ParameterOverrides:
        return cls(section.parameters, section.disabled)

    @classmethod
    def for_site(cls, loaded: LoadedConfig, packs: Mapping[str, RulePack] | Iterable[RulePack]
                 ) -> ParameterOverrides:
        """The site's overrides plus the chemistry defaults of `packs` for the chemistries its
        rooms and devices declare."""
        section = loaded.config.rules
        pack_list = packs.values() if isinstance(packs, Mapping) else packs
        defaults = {pack.full_id(rule): {c: d.set for c, d in rule.chemistry.items()}
                    for pack in pack_list for rule in pack.rules if rule.chemistry}
        rooms = {r.id: r.chemistry for r in loaded.config.rooms if r.chemistry}
        devices = {d.id: d.chemistry or rooms.get(d.room) for d in loaded.config.devices}
        return cls(section.parameters, section.disabled, chemistry_defaults=defaults,
                   device_chemistry={k: v for k, v in devices.items() if v},
                   room_chemistry=rooms)

    def chemistry(self, device: str | None, room: str | None) -> str | None:
        """The battery chemistry of a device (its own, else its room's) or of a room."""
        if device is not None and device in self.device_chemistry:
            return self.device_chemistry[device]
        return self.room_chemistry.get(room) if room is not None else None

    def resolve(self, rule_id: str, defaults: Mapping[str, ParamValue], *,
                device: str | None, room: str | None, room_type: str | None,
                ) -> dict[str, ParamValue]:
        """The rule's parameters for one subject: defaults, the defaults for its battery
        chemistry, then site, room type, room and device overrides in that order (the most
        specific applied last)."""
        values = dict(defaults)
        chemistry = self.chemistry(device, room)
        if chemistry is not None:
            values.update(self.chemistry_defaults.get(rule_id, {}).get(chemistry, {}))
        for entry in self._by_rule.get(rule_id, ()):
            if entry.device is not None and entry.device != device:
                continue
            if entry.room is not None and entry.room != room:
                continue
            if entry.room_type is not None and entry.room_type != room_type:
                continue
            values.update({k: v for k, v in entry.set.items() if k in values})
        return values


def load_rule_packs(directory: Path, ids: list[str] | None = None) -> dict[str, RulePack]:
    """Load the packs `ids` (default: every `*.yaml` in `directory`), keyed by pack id.
    Raise ConfigErrors listing every problem of every pack (file, YAML path, line, reason);
    rule ids are checked for uniqueness across packs too."""
    errors: list[ConfigError] = []
    if ids is None:
        paths = sorted(p for p in directory.glob("*.yaml") if p.is_file())
        if not paths:
            raise ConfigErrors([ConfigError(str(directory), (), "no rule packs (*.yaml) here")])
    else:
        paths = []
        for pack_id in ids:
            path = directory / f"{pack_id}.yaml"
            if not path.is_file():
                errors.append(ConfigError(str(path), (), f"rule pack {pack_id!r} not found"))
            else:
                paths.append(path)
    packs: dict[str, RulePack] = {}
    for path in paths:
        try:
            pack = load_pack(path)
        except ConfigErrors as exc:
            errors.extend(exc.errors)
            continue
        packs[pack.pack] = pack
    errors.extend(_check_escalations(packs))
    if errors:
        raise ConfigErrors(errors)
    return packs


def _check_escalations(packs: Mapping[str, RulePack]) -> list[ConfigError]:
    """An escalation's `while_active` patterns must each match a rule of a loaded pack (a
    pattern naming a pack that is not loaded is left alone: a site may load fewer packs)."""
    every = [pack.full_id(rule) for pack in packs.values() for rule in pack.rules]
    errors = []
    for pack in packs.values():
        for index, escalation in enumerate(pack.escalations):
            for number, pattern in enumerate(escalation.while_active):
                if pattern.split(".", 1)[0] not in packs:
                    continue
                if not any(fnmatch.fnmatchcase(rule, pattern) for rule in every):
                    errors.append(ConfigError(
                        f"{pack.pack}.yaml", ("escalations", index, "while_active", number),
                        f"{pattern!r} matches no rule of the loaded packs"))
    return errors


def _config_lines(loaded: LoadedConfig) -> LineMap:
    # the YAML reader, for a check's error lines (a running gateway loads no config: issue 15)
    from gateway.config.yamlfile import LineMap, read_yaml

    try:
        return read_yaml(loaded.path)[1]
    except ConfigErrors:
        return LineMap()


def check_rules(section: RulesSection, packs: Mapping[str, RulePack],
                loaded: LoadedConfig) -> list[ConfigError]:
    """Problems of a `rules:` section against the loaded packs and the site: unknown packs,
    rule ids and parameters, overrides naming rooms or devices that do not exist, values of
    the wrong kind. Errors name the gateway config file and the `rules.…` YAML path."""
    name = str(loaded.path)
    lines = _config_lines(loaded)
    errors: list[ConfigError] = []

    def err(path: YamlPath, reason: str) -> None:
        full = ("rules", *path)
        errors.append(ConfigError(name, full, reason, lines.line_of(full)))

    rules = {pack.full_id(rule): rule for pack in packs.values() for rule in pack.rules}
    known = ", ".join(sorted(packs)) or "none"
    for index, pack_id in enumerate(section.packs or ()):
        if pack_id not in packs:
            err(("packs", index), f"rule pack {pack_id!r} is not loaded (loaded: {known})")
    for index, rule_id in enumerate(section.disabled):
        if rule_id not in rules:
            err(("disabled", index), f"no rule {rule_id!r} in the loaded packs")
    answerable = response_ids(packs.values())
    for rule_id in section.responses:
        if rule_id not in answerable:
            err(("responses", rule_id), f"no rule or escalation {rule_id!r} in the loaded "
                                        f"packs, nor an alarm of the gateway's own")
    devices = {d.id for d in loaded.config.devices}
    rooms = {r.id for r in loaded.config.rooms}
    for index, entry in enumerate(section.parameters):
        here: YamlPath = ("parameters", index)
        rule = rules.get(entry.rule)
        if rule is None:
            err(here + ("rule",), f"no rule {entry.rule!r} in the loaded packs")
        if entry.device is not None and entry.device not in devices:
            err(here + ("device",), f"device {entry.device!r} is not in this config")
        if entry.room is not None and entry.room not in rooms:
            err(here + ("room",), f"room {entry.room!r} is not in this config")
        if rule is None:
            continue
        if entry.device is not None and rule.subject == "room":
            err(here + ("device",), f"{entry.rule} is evaluated per room; override it per "
                                    f"room or room type, not per device")
        for key in entry.set:
            if key not in rule.parameters:
                declared = ", ".join(sorted(rule.parameters)) or "none"
                err(here + ("set", key), f"{entry.rule} has no parameter {key!r} "
                                         f"(it has: {declared})")
                continue
            problem = _value_problem(entry.rule, rule, key, entry.written(key))
            if problem is not None:
                err(here + ("set", key), problem)
    for path, reason in unbuildable(section, rules, loaded,
                                    ParameterOverrides.for_site(loaded, packs)):
        err(path, reason)
    return errors


def _value_problem(rule_id: str, rule: Rule, key: str, written: object) -> str | None:
    """Why a site's value for parameter `key` of `rule`, as the file has it (`5m`, not
    300.0), is not of the kind the rule's condition uses it as, or None."""
    kind = parameter_kinds(rule).get(key)
    if kind is not None:
        problem = kind.problem(written)
        return f"{rule_id}'s {key} {problem}" if problem is not None else None
    default = rule.parameters[key]  # used where no kind applies: as its default is
    if default is not None and isinstance(default, bool) != isinstance(written, bool):
        wanted = "true or false" if isinstance(default, bool) else "a number or a duration"
        return f"{rule_id}'s {key} is {wanted}, not {written!r}"
    return None


def explain_parameter_errors(errors: Iterable[ConfigError], data: object,
                             packs: Mapping[str, RulePack]) -> list[ConfigError]:
    """Schema errors of the values of a site's overrides (`rules.parameters[0].set.limit:
    '60C' is neither a number nor a duration …`, judged before the rule is known) restated
    with the kind of the rule's parameter (`fire.heat_fixed's limit is a number (a threshold
    in the point's unit); write 60, not '60C'`). `data` is the config as the file has it."""
    rules = {pack.full_id(rule): rule for pack in packs.values() for rule in pack.rules}
    out = []
    for error in errors:
        path = error.path
        if (len(path) == 5 and path[:2] == ("rules", "parameters") and isinstance(path[2], int)
                and path[3] == "set" and isinstance(path[4], str)):
            entry = _item(data, path[:3])
            values = entry.get("set") if isinstance(entry, dict) else None
            rule_id = entry.get("rule") if isinstance(entry, dict) else None
            rule = rules.get(rule_id) if isinstance(rule_id, str) else None
            if rule is not None and isinstance(values, dict) and path[4] in values \
                    and path[4] in rule.parameters and isinstance(rule_id, str):
                problem = _value_problem(rule_id, rule, path[4], values[path[4]])
                if problem is not None:
                    error = dataclasses.replace(error, reason=problem)
        out.append(error)
    return out


def _item(data: object, path: YamlPath) -> object:
    for part in path:
        if isinstance(part, str) and isinstance(data, dict):
            data = data.get(part)
        elif isinstance(part, int) and isinstance(data, list) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def load_checked_config(path: Path, *, base_dir: Path | None = None, name: str | None = None,
                        rules_dir: Path | None = None, profiles_from: Path | None = None
                        ) -> LoadedConfig:
    """Everything `roomwarden check` checks of a gateway config: schema, references, device
    profiles (from `profiles_from` only, if given), and its `rules:` section against the rule
    packs it loads (kept in `packs`). Raises ConfigErrors."""
    from gateway.config.loader import load_gateway_config

    try:
        loaded = load_gateway_config(path, base_dir=base_dir, name=name,
                                     profiles_from=profiles_from)
    except ConfigErrors as exc:
        raise ConfigErrors(_explained(exc.errors, path, rules_dir)) from None
    section = loaded.config.rules
    packs = load_rule_packs(rules_dir or default_rules_dir(),
                            list(section.packs) if section.packs is not None else None)
    errors = check_rules(section, packs, loaded)
    if errors:
        raise ConfigErrors(errors)
    return dataclasses.replace(loaded, packs=packs)


def _explained(errors: list[ConfigError], path: Path,
               rules_dir: Path | None) -> list[ConfigError]:
    """`explain_parameter_errors` for a config that failed its schema: its rule packs are
    loaded only if an error is in an override's values (and left alone if they fail)."""
    if not any(e.path[:2] == ("rules", "parameters") and len(e.path) == 5 for e in errors):
        return errors
    from gateway.config.yamlfile import read_yaml

    try:
        data = read_yaml(path)[0]
        section = _item(data, ("rules",))
        ids = section.get("packs") if isinstance(section, dict) else None
        if not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
            ids = None
        packs = load_rule_packs(rules_dir or default_rules_dir(), ids)
    except ConfigErrors:
        return errors
    return explain_parameter_errors(errors, data, packs)
