"""Load a gateway's site config: read, validate, load the profiles it uses, cross-check.

Every error names the file, the line, the YAML path and the reason; loading collects all the
errors of a file (and of the profiles it uses) rather than stopping at the first. The pieces
live apart and are re-exported here for the gateway's callers: gateway.config.yamlfile (YAML
with lines, validate: no schema, so the central ingest uses it alone), gateway.config.errors
(ConfigError), gateway.config.loaded (LoadedConfig: what a running gateway imports, without
this module), gateway.config.profiles (profile files and the search path),
gateway.config.crosscheck.
"""

from __future__ import annotations

from pathlib import Path

from gateway.config.crosscheck import cross_check
from gateway.config.errors import ConfigError, ConfigErrors, PathPart, YamlPath, format_path
from gateway.config.loaded import LoadedConfig
from gateway.config.profile import ModbusProfile, SerialTextProfile
from gateway.config.profiles import (
    PROFILE_LIMITS,
    default_profiles_dir,
    find_profile,
    load_profile,
    load_profile_text,
    profile_files,
    profile_not_found,
    profile_search_path,
)
from gateway.config.section import validator
from gateway.config.site import GatewayConfig
from gateway.config.yamlfile import LineMap, parse_yaml, pydantic_errors, read_yaml, validate

__all__ = ["PROFILE_LIMITS", "ConfigError", "ConfigErrors", "LineMap", "LoadedConfig", "PathPart",
           "YamlPath", "checked_config", "cross_check", "default_profiles_dir", "find_profile",
           "format_path", "load_gateway_config", "load_profile", "parse_yaml", "profile_files",
           "profile_not_found", "profile_search_path", "pydantic_errors", "read_yaml", "validate"]


def checked_config(data: object, name: str, lines: LineMap) -> GatewayConfig:
    """`data` validated as a GatewayConfig (its validator built at the first call in the
    process: gateway.config.section.validator); ConfigErrors for what is wrong in it."""
    from pydantic import ValidationError

    try:
        return validator(GatewayConfig).validate_python(data)
    except ValidationError as exc:
        raise ConfigErrors(pydantic_errors(exc, name, lines)) from exc


def load_gateway_config(path: Path, *, base_dir: Path | None = None,
                        name: str | None = None, profiles_from: Path | None = None
                        ) -> LoadedConfig:
    """Load, validate and cross-check a gateway config; raise ConfigErrors listing every problem.

    `base_dir` resolves a relative `profiles_dir` (default: the file's own directory; a config
    staged in the state directory resolves against the installed config's directory). `name`
    is what errors call the file (default: its path). `profiles_from`: the only directory
    profiles are taken from (a last-known-good's kept profiles) instead of the search path."""
    name = name or str(path)
    data, lines = read_yaml(path, name=name)
    config = checked_config(data, name, lines)
    base = base_dir if base_dir is not None else path.parent
    profiles_dir = ((profiles_from,) if profiles_from is not None
                    else profile_search_path(config.profiles_dir, base))
    errors: list[ConfigError] = []
    profiles: dict[str, ModbusProfile | SerialTextProfile] = {}
    texts: dict[str, str] = {}
    for profile_id in sorted({d.profile for d in config.devices}):
        profile_path = find_profile(profile_id, profiles_dir)
        if profile_path is None:
            continue  # reported per device below
        try:
            profiles[profile_id], texts[profile_id] = load_profile_text(profile_path)
        except ConfigErrors as exc:
            errors.extend(exc.errors)
    errors.extend(cross_check(config, profiles, name, lines, profiles_dir))
    if errors:
        raise ConfigErrors(errors)
    return LoadedConfig(path=path, config=config, profiles=profiles, profile_texts=texts)
