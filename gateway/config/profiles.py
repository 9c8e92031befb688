"""Device profiles from their files: loading one, and where a site's profiles are looked for.

A site's own `profiles_dir` comes before the shipped library (issue 11); a profile's id must
match its file name; errors are ConfigErrors (gateway.config.yamlfile).
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config.errors import ConfigError, ConfigErrors
from gateway.config.profile import MAX_PROFILE_POINTS, ModbusProfile, Profile, SerialTextProfile
from gateway.config.yamllimits import YamlLimits

if TYPE_CHECKING:
    from pydantic import TypeAdapter


@functools.cache
def profile_adapter() -> TypeAdapter[ModbusProfile | SerialTextProfile]:
    """The profile union's validator (and serializer), built when the first profile is loaded
    or dumped: pydantic is imported by a process that validates profiles only (a running
    gateway unpickles its own, gateway.isolated_check)."""
    from pydantic import TypeAdapter

    import gateway.strict  # noqa: F401  (pydantic without its plugin search: gateway.strict)

    return TypeAdapter(Profile)


PROFILE_LIMITS = YamlLimits(top_level_items={"points": MAX_PROFILE_POINTS,
                                             "fields": MAX_PROFILE_POINTS},
                            top_level_what="points")
"""A profile's points are counted while it is read: a longer list is refused at once."""


MAX_CACHED_PROFILES = 256
"""Profiles kept by `load_profile` (oldest dropped first): more than a site's library."""
_cache: dict[tuple[str, bytes], ModbusProfile | SerialTextProfile] = {}
_cache_lock = threading.Lock()


def load_profile(path: Path) -> ModbusProfile | SerialTextProfile:
    """A profile file, validated; ConfigErrors if it is not a valid profile. The same text at
    the same path gives the same (immutable) profile, parsed and validated once per process (a
    test run, `check` of several configs and each config apply read the same profiles again);
    a changed file is read anew (the key is the sha256 of its text)."""
    return load_profile_text(path)[0]


def load_profile_text(path: Path) -> tuple[ModbusProfile | SerialTextProfile, str]:
    """`load_profile`, and the text it was read from (what a last-known-good keeps)."""
    from gateway.config.yamlfile import read_text  # with pydantic: a process that validates

    name = str(path)
    text = read_text(path, name, PROFILE_LIMITS)
    key = (name, hashlib.sha256(text.encode()).digest())
    with _cache_lock:
        profile = _cache.get(key)
    if profile is None:
        profile = _validated_profile(text, name, path.stem)
        with _cache_lock:
            while len(_cache) >= MAX_CACHED_PROFILES:
                del _cache[next(iter(_cache))]
            _cache[key] = profile
    return profile, text


def _validated_profile(text: str, name: str, stem: str) -> ModbusProfile | SerialTextProfile:
    from pydantic import ValidationError

    from gateway.config.yamlfile import parse_yaml, pydantic_errors

    data, lines = parse_yaml(text, name, PROFILE_LIMITS)
    try:
        profile = profile_adapter().validate_python(data)
    except ValidationError as exc:
        raise ConfigErrors(pydantic_errors(exc, name, lines)) from exc
    if profile.id != stem:
        raise ConfigErrors([ConfigError(name, ("id",), f"profile id {profile.id!r} must "
                            f"match its file name {stem!r}", lines.line_of(("id",)))])
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
    import difflib  # only for this message: 0.2 MiB a running gateway need not hold

    names = sorted({p.stem for d in search if d.is_dir() for p in profile_files(d)})
    near = difflib.get_close_matches(profile_id, names, n=3, cutoff=0.5)
    where = ", ".join(str(d) for d in search)
    hint = f"; nearest: {', '.join(near)}" if near else ""
    return f"profile {profile_id!r} not found: looked for {profile_id}.yaml in {where}{hint}"
# --- end issue 11 -----------------------------------------------------------------------------


def profile_files(directory: Path) -> Iterator[Path]:
    yield from sorted(p for p in directory.glob("*.yaml") if p.is_file())
