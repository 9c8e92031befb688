"""The `config` health check: what the gateway had to work round to boot at all.

**degraded** while the gateway runs the config it booted and that boot had problems
(`gateway.flashing.meta.BootChoice.problems`, gateway.supervisor): the last-known-good config
runs on the device profiles kept with it because the profile files on disk now break it, the
config store was damaged (a slot unreadable, the newest committed config recovered), or the
installed file was edited into one that does not check. Each was only logged at boot, where a
technician reading `/healthz` or the panel never looks; the gateway keeps working either way,
so it is degraded, never failing. Applying a config (any new version) ends it: the problems
were those of the booted one.
"""

from __future__ import annotations

from typing import Protocol

MAX_SHOWN = 3
"""Problems named in the detail (the log has them all)."""


class BootSource(Protocol):
    @property
    def config_version(self) -> int: ...

    @property
    def config_sha256(self) -> str: ...

    @property
    def boot_problems(self) -> tuple[str, ...]: ...

    @property
    def booted(self) -> tuple[int, str]:
        """(version, sha256) of the config the gateway booted."""
        ...


def config_trouble(source: BootSource) -> tuple[bool, str]:
    """(degraded, detail) of the `config` check (gateway.ops.health wraps it)."""
    running = f"version {source.config_version} sha256 {source.config_sha256[:12]}"
    problems = source.boot_problems
    if not problems or (source.config_version, source.config_sha256) != source.booted:
        return False, running
    shown = "; ".join(problems[:MAX_SHOWN]) + (" …" if len(problems) > MAX_SHOWN else "")
    return True, f"{running}, booted with problems: {shown}"
