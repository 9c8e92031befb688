"""Files of the config store (gateway.flashing.store): a generation directory written whole
or not at all, and removed — without `tempfile` or `shutil`, which would keep `bz2` and `lzma`
loaded in every running gateway (~1 MiB, issue 15): the boot keeps the installed file's config
as a generation too.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterable
from pathlib import Path

from gateway.flashing.meta import ConfigMeta, StoreError
from gateway.storage import fsync_dir, write_new_private


def write_generation(configs: Path, text: str, meta: ConfigMeta) -> str:
    """A new generation `v<version>-<sha256[:12]>-<ns>` in `configs` (config.yaml and
    meta.json, fsynced, renamed into place whole); returns its name. On failure (a full
    disk) nothing of it is left."""
    data = text.encode("utf-8")
    if hashlib.sha256(data).hexdigest() != meta.sha256:
        raise StoreError("meta.sha256 does not match the config text")
    name = f"v{meta.version}-{meta.sha256[:12]}-{time.time_ns()}"
    tmp = configs / f".tmp-{os.urandom(6).hex()}"
    os.mkdir(tmp, 0o700)
    try:
        for file_name, content in (("config.yaml", data), ("meta.json", meta.to_json())):
            write_new_private(tmp / file_name, content)
        fsync_dir(tmp)
        os.rename(tmp, configs / name)
    except BaseException:
        remove_tree(tmp)
        raise
    fsync_dir(configs)
    return name


KEPT_PROFILES = "profiles"
"""A generation's subdirectory of the profiles its config was checked with (`keep_profiles`)."""


def write_kept_profiles(generation: Path, texts: dict[str, str]) -> None:
    """`generation`/profiles/<id>.yaml for each profile text, replacing what was kept there:
    written whole in a temporary directory, then renamed into place."""
    target = generation / KEPT_PROFILES
    if _kept_as(target, texts):
        return  # (every boot keeps them again: no writes to the SD card for nothing)
    tmp = generation / f".profiles-{os.urandom(6).hex()}"
    os.mkdir(tmp, 0o700)
    try:
        for profile_id, text in texts.items():
            write_new_private(tmp / f"{profile_id}.yaml", text.encode("utf-8"))
        fsync_dir(tmp)
        old = generation / f".old-profiles-{os.urandom(6).hex()}"
        if target.exists():
            os.rename(target, old)
        os.rename(tmp, target)
    except BaseException:
        remove_tree(tmp)
        raise
    remove_tree(old)
    fsync_dir(generation)


def _kept_as(directory: Path, texts: dict[str, str]) -> bool:
    """`directory` holds exactly these profile texts."""
    try:
        names = {p.name for p in directory.iterdir()}
        return names == {f"{i}.yaml" for i in texts} and all(
            (directory / f"{i}.yaml").read_text(encoding="utf-8") == t for i, t in texts.items())
    except (OSError, UnicodeDecodeError):
        return False


def kept_profiles(configs: Path, config_path: Path) -> Path | None:
    """The profiles kept beside the generation config at `config_path` in `configs` (None:
    it is not a generation's, or none were kept)."""
    directory = config_path.parent / KEPT_PROFILES
    if config_path.parent.parent != configs or not directory.is_dir():
        return None
    return directory


def remove_tree(path: Path) -> None:
    """Remove a file or a directory with everything in it; errors are ignored (what is left
    is removed by the next collection)."""
    if path.is_dir() and not path.is_symlink():
        for entry in listdir(path):
            remove_tree(entry)
        with contextlib.suppress(OSError):
            path.rmdir()
        return
    with contextlib.suppress(OSError):
        path.unlink()


def listdir(path: Path) -> Iterable[Path]:
    try:
        return list(path.iterdir())
    except OSError:
        return []
