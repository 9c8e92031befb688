"""Whatever a technician's file holds, loading it gives a config or ConfigErrors: no crash."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.loader import ConfigErrors, load_gateway_config, parse_yaml

VALID = Path(__file__).resolve().parents[1] / "data" / "configs" / "valid.yaml"

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=True), st.text(max_size=12))
documents = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=20)


@given(st.text(max_size=300))
def test_any_text_parses_or_is_a_config_error(text: str) -> None:
    try:
        parse_yaml(text, "fuzz.yaml")
    except ConfigErrors as exc:
        assert exc.errors and all(e.file == "fuzz.yaml" for e in exc.errors)


def mutations() -> st.SearchStrategy[tuple[list[str | int], object]]:
    keys = st.sampled_from(["gateway", "rooms", "buses", "devices", "profiles_dir", "version"])
    inner = st.sampled_from(["id", "type", "port", "unit", "bus", "profile", "room",
                             "timeout", "baudrate", "poll_interval", "points", "host"])
    return st.tuples(st.lists(st.one_of(keys, inner, st.integers(0, 3)), min_size=1,
                              max_size=3), documents)


@pytest.mark.slow
@settings(max_examples=200)
@given(mutation=mutations())
def test_mutated_configs_load_or_fail_with_errors_naming_the_file(
        mutation: tuple[list[str | int], object]) -> None:
    data = yaml.safe_load(VALID.read_text())
    path, value = mutation
    target: object = data
    for part in path[:-1]:
        try:
            target = target[part]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            break
    with contextlib.suppress(KeyError, IndexError, TypeError):
        target[path[-1]] = value  # type: ignore[index]
    data["profiles_dir"] = str(VALID.parent.parent / "profiles")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "site.yaml"
        try:
            out.write_text(yaml.safe_dump(data))
        except yaml.YAMLError:
            return
        try:
            load_gateway_config(out)
        except ConfigErrors as exc:
            assert exc.errors
            assert all(e.file == str(out) or e.file.endswith(".yaml") for e in exc.errors)
            assert all(e.reason for e in exc.errors)
