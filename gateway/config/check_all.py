"""`roomwarden check` of a gateway config: every error of the file across all layers in one
run (schema, references and profiles, the `rules:` section), the nearest names suggested,
list items named by their id, and warnings about a config that would lock out flashing,
share one feedback point between outputs (gateway.config.crosscheck.shared_feedback) or
leave rules blind (unconfigured bindings, coincidences that can never fire, battery and data
rooms without smoke detection: gateway.rules.coverage).

The loader stops at the first layer that fails (a config that does not validate cannot be
cross-checked). Here the items a schema error is in are set aside, the rest validated and
cross-checked, and the errors of both are reported together."""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any, get_type_hints

from pydantic import BaseModel, ValidationError

from gateway.config.crosscheck import shared_feedback
from gateway.config.loader import (
    ConfigError,
    ConfigErrors,
    LineMap,
    LoadedConfig,
    YamlPath,
    cross_check,
    find_profile,
    load_profile,
    profile_search_path,
    pydantic_errors,
    read_yaml,
)
from gateway.config.section import is_section, validator
from gateway.config.site import GatewayConfig
from gateway.config.suggest import closest
from gateway.records import dataclass, field

SECTIONS = ("rooms", "buses", "devices", "outputs", "interlocks")
"""Lists whose items have an `id`: errors name the item by it (`devices[th-1]`)."""
MAX_PASSES = 4


@dataclass
class Report:
    errors: list[ConfigError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    loaded: LoadedConfig | None = None
    """The config as loaded, when it has no error."""
    packs: dict[str, Any] | None = None
    """The rule packs its `rules:` section loads (by id), when it has no error."""


def _keys(model: type) -> dict[str, Any]:
    """A config model's or section's keys (as written in YAML), each with its annotation."""
    if is_dataclass(model):  # a section (gateway.config.section)
        hints = get_type_hints(model, include_extras=True)
        return {f.name: hints[f.name] for f in fields(model)}
    if issubclass(model, BaseModel):
        return {info.alias or name: info.annotation
                for name, info in model.model_fields.items()}
    return {}


def _models(model: type, seen: set[type]) -> None:
    if model in seen:
        return
    seen.add(model)
    for annotation in _keys(model).values():
        for arg in _types(annotation):
            if isinstance(arg, type) and (issubclass(arg, BaseModel) or is_section(arg)):
                _models(arg, seen)


def _types(annotation: Any) -> Iterable[Any]:
    yield annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        yield from _types(arg)
    origin = getattr(annotation, "__origin__", None)
    if origin is not None and hasattr(annotation, "__metadata__"):
        yield from _types(origin)


@functools.cache
def known_keys() -> list[str]:
    """Every key the gateway config schema has, at any depth (for 'did you mean'); made once
    (it was made again for every unknown key: ~1.7 ms each, a file of 49,000 of them 83 s).
    Shared: do not change the list."""
    models: set[type] = set()
    _models(GatewayConfig, models)
    return sorted({key for model in models for key in _keys(model)})


MAX_SUGGESTIONS = 100
"""Errors of one check that get a 'did you mean' (difflib against the schema's keys); the
rest are reported without one, so a file of thousands of unknown keys is checked in
seconds."""


# --- setting aside what a schema error is in --------------------------------------------------


def _get(data: Any, path: YamlPath) -> Any:
    for part in path:
        data = data[part]
    return data


def _salvage(data: Any, errors: list[ConfigError]) -> tuple[Any, set[YamlPath]]:
    """A copy of `data` without what the errors are in: unknown keys deleted, list items with
    another error dropped (their paths returned), other bad keys deleted."""
    data = copy.deepcopy(data)
    dropped: set[YamlPath] = set()
    deletions: list[YamlPath] = []
    for error in errors:
        path = error.path
        items = [i for i, part in enumerate(path) if isinstance(part, int)]
        if error.reason.startswith("unknown key"):
            deletions.append(path)
        elif items:
            dropped.add(path[:items[0] + 1])
        elif path:
            deletions.append(path)
    for path in deletions:
        if any(path[:len(d)] == d for d in dropped):
            continue
        try:
            parent = _get(data, path[:-1])
            if isinstance(parent, dict):
                parent.pop(path[-1], None)
        except (KeyError, IndexError, TypeError):
            continue
    for path in dropped:
        try:
            parent = _get(data, path[:-1])
            if isinstance(parent, list) and isinstance(path[-1], int) and path[-1] < len(parent):
                parent[path[-1]] = _HOLE  # a hole keeps the other items' indexes
        except (KeyError, IndexError, TypeError):
            continue
    return data, dropped


_HOLE = object()
"""An item set aside (not None: a `null` the file has in a list stays for the schema)."""

IndexMap = dict[tuple[YamlPath, int], int]
"""(path of a list, index of an item in the list without its holes) -> the item's index in
the list with them, for every item that moved; a path is in the coordinates without holes."""


def _without_holes(data: Any) -> tuple[Any, IndexMap]:
    """Holes removed from every list, at any depth (`rules.parameters` as well as `devices`),
    and the map of the indexes that moved."""
    index_map: IndexMap = {}

    def walk(node: Any, path: YamlPath) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, (*path, k)) for k, v in node.items()}
        if isinstance(node, list):
            kept = [(i, item) for i, item in enumerate(node) if item is not _HOLE]
            out = []
            for new, (old, item) in enumerate(kept):
                if new != old:
                    index_map[(path, new)] = old
                out.append(walk(item, (*path, new)))
            return out
        return node

    return walk(data, ()), index_map


def _to_file(path: YamlPath, index_maps: list[IndexMap]) -> YamlPath:
    """A path into the salvaged config (after every pass of `_salvaged`) as a path into the
    file: each pass's map undone, the last pass's first."""
    for index_map in reversed(index_maps):
        if not index_map:
            continue
        out: list[Any] = []
        for at, part in enumerate(path):
            if isinstance(part, int):
                part = index_map.get((path[:at], part), part)
            out.append(part)
        path = tuple(out)
    return path


# --- the whole check --------------------------------------------------------------------------


def check_config(path: Path, rules_dir: Path | None = None) -> Report:
    """Every error of a gateway config file, and warnings; see the module docstring."""
    from gateway.rules.config import (
        check_rules,
        default_rules_dir,
        explain_parameter_errors,
        load_rule_packs,
    )

    name = str(path)
    report = Report()
    try:
        data, lines = read_yaml(path, name=name)
    except ConfigErrors as exc:
        report.errors = exc.errors
        return report
    ids = _ids(data)
    config: GatewayConfig | None
    index_maps: list[IndexMap] = []
    schema_errors: list[ConfigError] = []
    set_aside: set[str] = set()
    try:
        config = validator(GatewayConfig).validate_python(data)
    except ValidationError as exc:
        schema_errors = pydantic_errors(exc, name, lines)
        set_aside = {ids.get(e.path[:2], "") for e in schema_errors if len(e.path) > 2}
        config, index_maps = _salvaged(data, name, lines, schema_errors)
    errors = list(schema_errors)
    if config is not None:
        later, profiles, packs = _deeper_layers(config, path, name, lines, rules_dir,
                                                check_rules, default_rules_dir, load_rule_packs)
        if packs is not None:  # an override's value restated with its parameter's kind
            errors = explain_parameter_errors(errors, data, packs)
        for error in later:
            error = _remap(error, name, index_maps, lines)
            if any(f"{name_!r}" in error.reason for name_ in set_aside if name_):
                continue  # about an item set aside for its own schema error
            errors.append(error)
        report.warnings = lockout_warnings(config)
        report.warnings += [str(_named(_remap(w, name, index_maps, lines), ids))
                            for w in shared_feedback(config, name, lines)]
        if not errors:  # what the layers loaded, not loaded again
            report.loaded = LoadedConfig(path=path, config=config, profiles=profiles)
            report.packs = packs
            if packs is not None:  # what the rules cannot see (gateway.rules.coverage)
                from gateway.rules.coverage import check_warnings

                report.warnings += check_warnings(report.loaded, packs)
    report.errors = _dedupe(_suggest(_named(e, ids), config) if n < MAX_SUGGESTIONS
                            else _named(e, ids) for n, e in enumerate(errors))
    return report


def _salvaged(data: Any, name: str, lines: LineMap, errors: list[ConfigError]
              ) -> tuple[GatewayConfig | None, list[IndexMap]]:
    """The config without what the errors are in, and the index maps of each pass (a later
    pass's errors and maps are in the coordinates the pass before left)."""
    data = copy.deepcopy(data)
    index_maps: list[IndexMap] = []
    for _ in range(MAX_PASSES):
        data, _dropped = _salvage(data, errors)
        data, index_map = _without_holes(data)
        index_maps.append(index_map)
        try:
            return validator(GatewayConfig).validate_python(data), index_maps
        except ValidationError as exc:
            errors = pydantic_errors(exc, name, lines)
    return None, []


def _deeper_layers(config: GatewayConfig, path: Path, name: str, lines: LineMap,
                   rules_dir: Path | None, check_rules: Any, default_rules_dir: Any,
                   load_rule_packs: Any,
                   ) -> tuple[list[ConfigError], dict[str, Any], dict[str, Any] | None]:
    """The errors of the layers under the schema (profiles, cross-references, rule packs and
    the `rules:` section), with the profiles and packs loaded (None: the packs failed)."""
    search = profile_search_path(config.profiles_dir, path.parent)
    errors: list[ConfigError] = []
    profiles = {}
    for profile_id in sorted({d.profile for d in config.devices}):
        found = find_profile(profile_id, search)
        if found is None:
            continue
        try:
            profiles[profile_id] = load_profile(found)
        except ConfigErrors as exc:
            errors.extend(exc.errors)
    errors.extend(cross_check(config, profiles, name, lines, search))
    section = config.rules
    try:
        packs = load_rule_packs(rules_dir or default_rules_dir(),
                                list(section.packs) if section.packs is not None else None)
    except ConfigErrors as exc:
        return [*errors, *exc.errors], profiles, None
    loaded = LoadedConfig(path=path, config=config, profiles=profiles)
    errors.extend(check_rules(section, packs, loaded))
    return errors, profiles, packs


def _remap(error: ConfigError, name: str, index_maps: list[IndexMap],
           lines: LineMap) -> ConfigError:
    """An error about the salvaged config with the file's indexes, at any depth (and its
    line), and the `devices[2]`-style references in its reason likewise. Errors of other
    files (profiles, rule packs) are left alone."""
    if error.file != name or not index_maps:
        return error
    path = _to_file(error.path, index_maps)

    def reindexed(m: re.Match[str]) -> str:
        index = _to_file((m.group(1), int(m.group(2))), index_maps)[1]
        return f"{m.group(1)}[{index}]"

    reason = _INDEXED.sub(reindexed, error.reason)
    if path == error.path:
        return replace(error, reason=reason) if reason != error.reason else error
    return replace(error, path=path, reason=reason, line=lines.line_of(path) or error.line)


# --- naming, suggestions, warnings ------------------------------------------------------------


def _ids(data: Any) -> dict[YamlPath, str]:
    """(section, index) -> the item's id, from the file as written."""
    out: dict[YamlPath, str] = {}
    if not isinstance(data, dict):
        return out
    for section in SECTIONS:
        items = data.get(section)
        if isinstance(items, list):
            for index, item in enumerate(items):
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    out[(section, index)] = item["id"]
    return out


_INDEXED = re.compile(r"\b(" + "|".join(SECTIONS) + r")\[(\d+)\]")


def _named(error: ConfigError, ids: dict[YamlPath, str]) -> ConfigError:
    """`devices[1].bus` -> `devices[th-1].bus`, in the path and in the reason."""
    path = error.path
    if len(path) >= 2 and (path[0], path[1]) in ids:
        path = (path[0], f"[{ids[(path[0], path[1])]}]", *path[2:])

    def by_id(m: re.Match[str]) -> str:
        item = ids.get((m.group(1), int(m.group(2))))
        return f"{m.group(1)}[{item}]" if item else m.group(0)

    return replace(error, path=path, reason=_INDEXED.sub(by_id, error.reason))


_UNDEFINED = re.compile(r"^(bus|room|device) '([^']+)' is not defined")


def _suggest(error: ConfigError, config: GatewayConfig | None) -> ConfigError:
    if "did you mean" in error.reason:
        return error
    hint = None
    if error.reason.startswith("unknown key") and error.path:
        key = error.path[-1]
        if isinstance(key, str):
            hint = closest(key, known_keys())
    elif config is not None:
        m = _UNDEFINED.match(error.reason)
        if m:
            pool = {"bus": [b.id for b in config.buses], "room": [r.id for r in config.rooms],
                    "device": [d.id for d in config.devices]}[m.group(1)]
            hint = closest(m.group(2), pool)
    return replace(error, reason=f"{error.reason}; did you mean {hint!r}?") if hint else error


def _dedupe(errors: Iterable[ConfigError]) -> list[ConfigError]:
    seen: set[tuple[YamlPath, str]] = set()
    out = []
    for error in errors:
        if (error.path, error.reason) not in seen:
            seen.add((error.path, error.reason))
            out.append(error)
    return out


def lockout_warnings(config: GatewayConfig) -> list[str]:
    """A config that, once running, refuses every remote flash (no trusted signing key)."""
    if config.uplink is not None and not (config.flashing and config.flashing.trusted_keys):
        return ["flashing: the config trusts no signing key: once it runs, every remote "
                "`roomwarden flash` is refused (lockout); add flashing.trusted_keys, or change "
                "configs only on the gateway (`roomwarden config apply`)"]
    return []
