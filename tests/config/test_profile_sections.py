"""Device profiles as config sections (gateway.config.profile, issue 15): they validate, refuse,
dump and describe themselves as their pydantic originals did (tests/config/profile_originals.py,
verbatim from 9d61447), and a running gateway holds them without pydantic.

Compared: every shipped and test profile's dumps (Python and JSON); the errors of near misses
made from them by hypothesis (unknown keys, wrong register types and values, bad counts,
addresses, bits and scales, duplicate names, a wrong or missing `kind` …) as pydantic gives
them (place, type, words: a dataclass's own error types read as a model's, as
gateway.config.yamlfile reads them), as the loader tells them (file, line, path, reason) and as
`roomwarden check` prints them; the JSON schema (`roomwarden schema --profile`)."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from gateway.cli import main
from gateway.config.profile import ModbusPoint, ModbusProfile, SerialTextProfile
from gateway.config.profiles import PROFILE_LIMITS, load_profile, profile_adapter
from gateway.config.schema import adapter_schema
from gateway.config.section import model_message
from gateway.config.yamlfile import ConfigErrors, parse_yaml, pydantic_errors
from gateway.flashing.precheck import failure_lines
from tests.config import profile_originals
from tests.ops.test_lazy_imports import run_fresh

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted([*(ROOT / "hardware" / "profiles").glob("*.yaml"),
                *(ROOT / "tests" / "data" / "profiles").glob("*.yaml")])
ORIGINAL: TypeAdapter[Any] = TypeAdapter(profile_originals.Profile)
AS_A_MODEL = {"unexpected_keyword_argument": "extra_forbidden",
              "missing_keyword_argument": "missing", "dataclass_type": "model_type"}
"""A section's error types that a model has under another name (same place, same words
through `model_message`)."""


def _outcome(adapter: TypeAdapter[Any], data: object) -> str:
    """The dumps of what `data` validates to, or its errors as a model words them (as text:
    a NaN equals a NaN)."""
    try:
        made = adapter.validate_python(data)
    except ValidationError as exc:
        return repr([(e["loc"], AS_A_MODEL.get(e["type"], e["type"]), model_message(e))
                     for e in exc.errors(include_url=False)])
    return repr((adapter.dump_python(made), adapter.dump_python(made, mode="json")))


def _told(adapter: TypeAdapter[Any], text: str) -> list[str]:
    """What the loader says of a profile file's text (file, line, path, reason)."""
    data, lines = parse_yaml(text, "p.yaml", PROFILE_LIMITS)
    try:
        adapter.validate_python(data)
    except ValidationError as exc:
        return [str(e) for e in pydantic_errors(exc, "p.yaml", lines)]
    return []


def test_the_profile_classes_are_sections_and_import_without_pydantic() -> None:
    for cls in (ModbusProfile, SerialTextProfile, ModbusPoint):
        assert dataclasses.is_dataclass(cls) and not hasattr(cls, "model_fields")


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_profile_reads_as_before(path: Path) -> None:
    data, _ = parse_yaml(path.read_text(), str(path), PROFILE_LIMITS)
    found, before = _outcome(profile_adapter(), data), _outcome(ORIGINAL, data)
    assert found == before
    assert _told(profile_adapter(), path.read_text()) == _told(ORIGINAL, path.read_text())
    if path.parent.name == "profiles" and path.parent.parent.name == "hardware":
        assert found.startswith("({")  # the shipped ones are valid


def test_the_json_schema_is_the_same() -> None:
    assert profile_adapter() is profile_adapter()  # built once, at its first use
    assert json.dumps(adapter_schema(profile_adapter())) == json.dumps(adapter_schema(ORIGINAL))


SHIPPED = {path.stem: parse_yaml(path.read_text(), str(path), PROFILE_LIMITS)[0]
           for path in FILES if path.parent.parent.name == "hardware"}
VALUES: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([None, True, 0, -1, 1.5, 1e300, "", "x", "5s", [], [1], {}, "Bad Name"]),
    st.integers(-3, 70_000), st.text(max_size=6))
FLAGS = [[{"bit": 1, "name": "a"}, {"bit": 1, "name": "b"}], [{"bit": 0, "name": "a"},
         {"bit": 2, "name": "a"}], [{"bit": 40, "name": "hi"}], [{"bit": 64, "name": "hi"}],
         [{"bit": 0, "nme": "a"}], [5], [{"bit": 3, "name": "ok", "field_device": True}]]
POINT_VALUES: dict[str, list[Any]] = {
    "name": ["temperature", "t.x", "T", "a" * 65], "quantity": ["smoke", "Smoke"],
    "register": ["coil", "discrete_input", "input", "holding", "register"],
    "address": [0, 65535, 65534, 65533, 65536, -1, "1"],
    "type": ["bool", "int16", "uint32", "int64", "float32", "float64", "string", "bitstring",
             "int", "float", "uint8"],
    "order": ["ABCD", "CDAB", "BADC", "DCBA", "abcd"], "bit": [0, 15, 16, 63, 64, -1],
    "length": [1, 123, 124, 0], "invert": [True, "yes"], "scale": [0.1, "x", "1e3", None],
    "offset": [-40, "nan"], "valid": [{"min": 5, "max": 1}, {"min": 0}, {"mn": 0}, 3],
    "enum": [{"1": "on", "x": "off"}, {1: "on"}, ["on"]], "flags": FLAGS,
    "writable": [True, 1], "group": ["t", "missing_group", "Bad"], "regster": ["coil"],
    "field_device": [True, "no"]}
TOP_VALUES: dict[str, list[Any]] = {
    "kind": ["modbus", "serial_text", "bacnet", None], "id": ["Bad Id", "x" * 65],
    "generic": [False, "maybe"], "source": [None, ""],
    "default_poll_interval": ["10ms", "50ms", "5 seconds", -1],
    "max_registers_per_request": [0, 125, 126], "max_bits_per_request": [0, 2000, 2001],
    "points": [[], None, {}], "fields": [[], None], "request": ["Q1\\r", "\\xff", "é"],
    "reply_terminator": ["", "\\n", "\\x"], "reply_pattern": [
        "(?P<t>\\d+)+", "(?P<t>[", "^x$", "(?P<t>\\d{1,8})+"],
    "reply_timeout": ["0s", "2s", "x"], "encoding": ["utf-8", "klingon", "utf-16"],
    "pointz": [[]], "manufactuer": ["x"], "reply_format": [None, 5]}
POINT_KEYS = sorted(POINT_VALUES)
TOP_KEYS = sorted({*TOP_VALUES, "manufacturer", "model", "description"})


def _value(draw: st.DrawFn, known: dict[str, list[Any]], key: str) -> Any:
    """A value for `key`: one of those that mean something there, or anything."""
    return draw(st.one_of(st.sampled_from(known.get(key) or [None]), VALUES))


@st.composite
def near_misses(draw: st.DrawFn) -> dict[str, Any]:
    """A shipped profile with one to four things changed."""
    data: dict[str, Any] = copy.deepcopy(SHIPPED[draw(st.sampled_from(sorted(SHIPPED)))])
    items = "points" if "points" in data else "fields"
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["top", "drop_top", "point", "point", "point", "point",
                                    "drop_point_key", "twin", "not_a_point", "no_points"]))
        points = data.get(items)
        if how == "top":
            key = draw(st.sampled_from(TOP_KEYS))
            data[key] = _value(draw, TOP_VALUES, key)
        elif how == "drop_top":
            data.pop(draw(st.sampled_from(TOP_KEYS)), None)
        elif not isinstance(points, list) or not points:
            continue
        elif how == "no_points":
            data[items] = []
        elif how == "twin":
            points.append(copy.deepcopy(draw(st.sampled_from(points))))
        elif how == "not_a_point":
            points[draw(st.integers(0, len(points) - 1))] = draw(st.sampled_from([5, "x", []]))
        else:
            point = points[draw(st.integers(0, len(points) - 1))]
            if not isinstance(point, dict):
                continue
            if how == "point":
                key = draw(st.sampled_from(POINT_KEYS))
                point[key] = _value(draw, POINT_VALUES, key)
            else:
                point.pop(draw(st.sampled_from(POINT_KEYS)), None)
    return data


TOLD = ("generic_th_sensor", "megatec_q1_ups", "eastron_sdm630")


def test_each_meaningful_change_of_each_shipped_profile_reads_as_before() -> None:
    """Every value of POINT_VALUES and TOP_VALUES in place of its key, one at a time, in each
    shipped profile (its first point; then that key dropped): hypothesis below combines them."""
    tried = 0
    for shipped in SHIPPED.values():
        items = "points" if "points" in shipped else "fields"
        changes: list[tuple[str, Any, int | None]] = [
            (key, value, None) for key, values in TOP_VALUES.items() for value in values]
        changes += [(key, value, 0) for key, values in POINT_VALUES.items() for value in values]
        changes += [(key, ..., where) for key in (*TOP_KEYS, *POINT_KEYS) for where in (None, 0)]
        for key, value, where in changes:
            data = copy.deepcopy(shipped)
            target = data if where is None else data[items][where]
            if value is ...:
                target.pop(key, None)
            else:
                target[key] = value
            assert _outcome(profile_adapter(), data) == _outcome(ORIGINAL, data), (key, value)
            if shipped["id"] in TOLD:  # the loader's words too (a YAML file's lines: slower)
                text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
                assert _told(profile_adapter(), text) == _told(ORIGINAL, text), (key, value)
            tried += 1
    assert tried > 1000


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_misses())
def test_a_near_miss_is_refused_or_read_as_before(data: dict[str, Any]) -> None:
    assert _outcome(profile_adapter(), data) == _outcome(ORIGINAL, data)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    assert _told(profile_adapter(), text) == _told(ORIGINAL, text)


@settings(max_examples=25, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(near_misses())
def test_roomwarden_check_prints_a_near_miss_s_errors_as_before(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], data: dict[str, Any]) -> None:
    stem = data["id"] if data.get("id") in SHIPPED else "p"
    path = tmp_path / "profiles" / f"{stem}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    capsys.readouterr()
    failed = main(["check", str(path)])
    printed = capsys.readouterr().out.splitlines()
    text = path.read_text()
    found, lines = parse_yaml(text, str(path), PROFILE_LIMITS)
    try:
        ORIGINAL.validate_python(found)
    except ValidationError as exc:
        assert failed == 1
        assert printed == failure_lines(path, pydantic_errors(exc, str(path), lines))
        return
    assert (failed, printed[0].startswith(f"ok   {path}: profile ")) == (
        (0, True) if data.get("id") == stem else (1, False))


def test_a_profile_made_in_python_is_validated_as_yaml_is() -> None:
    point = ModbusPoint(name="alarm", register="coil", address=3)  # type: ignore[arg-type]
    assert point.type == "bool" and point.width == 1
    with pytest.raises(ValidationError, match="a coil holds one bit"):
        ModbusPoint(name="alarm", register="coil", address=3, type="uint16")  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.address = 4  # type: ignore[misc]


def test_a_running_gateway_unpickles_its_profiles_without_pydantic(tmp_path: Path) -> None:
    """What `roomwarden run` does with the profiles the config check sends it: imports the
    module and unpickles them — no pydantic; and they are the loaded ones."""
    loaded = [load_profile(path) for path in FILES if path.parent.parent.name == "hardware"]
    (tmp_path / "profiles.pickle").write_bytes(pickle.dumps(loaded))
    found = run_fresh("""
        import json, pickle, sys
        from pathlib import Path
        import gateway.config.profile, gateway.config.profiles
        profiles = pickle.loads(Path(sys.argv[2], "profiles.pickle").read_bytes())
        widths = [p.width for f in profiles if f.kind == "modbus" for p in f.points]
        print(json.dumps({
            "pydantic": sorted(m for m in sys.modules if m.startswith(("pydantic", "annotated"))),
            "ids": [f.id for f in profiles], "widths": sum(widths)}))
    """, tmp_path)
    assert found == {"pydantic": [], "ids": [p.id for p in loaded],
                     "widths": sum(p.width for f in loaded if isinstance(f, ModbusProfile)
                                   for p in f.points)}
    assert pickle.loads(pickle.dumps(loaded)) == loaded


def test_a_broken_profile_is_told_as_before(tmp_path: Path) -> None:
    path = ROOT / "tests" / "data" / "profiles" / "bad_profile.yaml"
    with pytest.raises(ConfigErrors) as caught:
        load_profile(path)
    assert [str(e) for e in caught.value.errors] == [
        line.replace("p.yaml", str(path)) for line in _told(ORIGINAL, path.read_text())]

