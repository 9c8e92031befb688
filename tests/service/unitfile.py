"""Reading systemd/*.service as systemd does, for the tests and the process benchmark: its
directives, and the environment `Environment=` gives the gateway."""

from __future__ import annotations

import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"


def unit_text(name: str) -> str:
    return (UNITS / name).read_text()


def directives(name: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit_text(name).splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def unit_environment(name: str = "roomwarden.service", *,
                     pycache: Path | None = None) -> dict[str, str]:
    """The variables the unit's `Environment=` lines set (space-separated assignments, quoted
    as a shell quotes them: systemd's own rules for these values). `pycache`: a directory to
    use instead of the unit's `PYTHONPYCACHEPREFIX` (its cache directory exists only under
    systemd)."""
    out: dict[str, str] = {}
    for line in directives(name).get("Environment", []):
        for word in shlex.split(line):
            key, _, value = word.partition("=")
            out[key] = value
    if pycache is not None and "PYTHONPYCACHEPREFIX" in out:
        out["PYTHONPYCACHEPREFIX"] = str(pycache)
    return out


def as_the_unit_runs(base: dict[str, str], *, pycache: Path,
                     name: str = "roomwarden.service") -> dict[str, str]:
    """`base` (e.g. os.environ) with the unit's variables, less the Python settings the unit
    does not set (a developer's PYTHONDONTWRITEBYTECODE would keep the byte-code cache
    empty)."""
    unit = unit_environment(name, pycache=pycache)
    kept = {key: value for key, value in base.items()
            if not key.startswith("PYTHON") or key in ("PYTHONPATH", "PYTHONHASHSEED")}
    return {**kept, **unit}
