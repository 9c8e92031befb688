"""constraints.txt pins what the gateway runs on: every runtime dependency of pyproject.toml
and every dependency of theirs (this interpreter's markers), each within the ranges that ask
for it, and nothing else — and the pins are what this test environment has installed (so
`make test` tests what install.sh installs)."""

from __future__ import annotations

import importlib.metadata as md
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def pins() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line!r}"
            out[canonicalize_name(name)] = version
    return out


def test_every_runtime_dependency_is_pinned_within_its_ranges_and_installed() -> None:
    pinned = pins()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    needed: set[str] = set()
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} (needed) is not in constraints.txt"
        assert req.specifier.contains(pinned[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pinned[name]} outside {req}")
        if name in needed:
            continue
        needed.add(name)
        todo.extend(Requirement(r) for r in md.requires(req.name) or [])
    assert needed == set(pinned), f"pinned but not needed: {sorted(set(pinned) - needed)}"
    installed = {name: md.version(name) for name in pinned}
    assert installed == pinned, "constraints.txt differs from what is installed"
