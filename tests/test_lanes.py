"""The lane table of tests/conftest.py names modules that exist and markers that are declared
(a renamed test module would otherwise leave its lane silently)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import LONGEST_FIRST, MODULES

ROOT = Path(__file__).resolve().parents[1]
LANES = {"slow", "services", "process", "browser"}


@pytest.mark.parametrize("path", sorted(MODULES))
def test_a_module_in_the_lane_table_exists(path: str) -> None:
    assert (ROOT / path).is_file(), f"tests/conftest.py MODULES names a missing file: {path}"
    assert set(MODULES[path]) <= LANES


def test_the_lanes_are_declared(pytestconfig: pytest.Config) -> None:
    declared = {line.split(":")[0] for line in pytestconfig.getini("markers")}
    assert declared >= LANES
    for unit in LONGEST_FIRST:  # a path prefix, or a test id (with its parameters) in a module
        path, _, test = unit.partition("::")
        assert (ROOT / path).exists(), unit
        if test:
            assert f"def {test.split('[')[0]}(" in (ROOT / path).read_text(encoding="utf-8"), unit
