"""Config sections as plain dataclasses (gateway.config.section, issue 15): a running gateway
uses them without pydantic — importing their module, unpickling the config check's answer —,
while pydantic validates them as it validated the models they replace (the messages:
tests/recorder/test_settings_refused.py)."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import AfterValidator, BaseModel, Field, TypeAdapter, ValidationError

import gateway.config.site  # noqa: F401  (every config model, with its sections)
from gateway.actions import orphans
from gateway.config.duration import Duration, at_most
from gateway.config.loader import LineMap, pydantic_errors
from gateway.config.section import (
    _UNCHECKED,
    _VALIDATORS,
    Between,
    Check,
    Limits,
    default_factory,
    defaults,
    is_section,
    replaced,
    section,
    validator,
)
from gateway.config.site import Panel
from gateway.operator.settings import OperatorKey, OperatorSettings
from gateway.recorder.settings import IncidentSettings, RecorderSettings
from tests.ops.test_lazy_imports import run_fresh


@pytest.mark.process
def test_the_sections_import_and_unpickle_without_pydantic(tmp_path: Path) -> None:
    """What `roomwarden run` does with them: import their module (every run-time user does)
    and unpickle them from the config check's answer — pydantic stays out of the process;
    and loading the site config's models then builds no section's validator (its defaults
    are `defaults(...)`, unvalidated)."""
    key = OperatorKey(key=f"ed25519:{'A' * 43}= noc", may=("drill",))
    sections = (RecorderSettings(window=300.0, max_points=12),
                IncidentSettings(severity="critical", post=60.0, max_duration=7200.0),
                OperatorSettings(keys=(key,)))
    (tmp_path / "sections.pickle").write_bytes(pickle.dumps(sections))
    found = run_fresh("""
        import json, pickle, sys
        from pathlib import Path
        import gateway.config.outputs, gateway.operator.settings, gateway.recorder.settings
        pickled = Path(sys.argv[2], "sections.pickle").read_bytes()
        recorder, incidents, operators = pickle.loads(pickled)
        found = {
            "pydantic": sorted(m for m in sys.modules if m.startswith(("pydantic", "annotated"))),
            "recorder": [recorder.enabled, recorder.window, recorder.max_points],
            "incidents": [incidents.severity, incidents.post, incidents.max_duration],
            "operators": [operators.keys[0].owner, operators.keys[0].may],
            "same": type(recorder) is gateway.recorder.settings.RecorderSettings}
        import gateway.config.site
        from gateway.config.section import _VALIDATORS
        print(json.dumps({**found, "built": [cls.__name__ for cls in _VALIDATORS]}))
    """, tmp_path)
    assert found == {"pydantic": [], "recorder": [True, 300.0, 12],
                     "incidents": ["critical", 60.0, 7200.0], "operators": ["noc", ["drill"]],
                     "same": True, "built": []}


def test_a_section_is_a_frozen_dataclass_that_validates_when_constructed() -> None:
    text: dict[str, object] = {"pre": "30s", "max_bytes": "65536"}  # as YAML would give them
    made = IncidentSettings(**text)  # type: ignore[arg-type]
    assert (made.pre, made.max_bytes) == (30.0, 65_536) and is_section(IncidentSettings)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.pre = 1.0  # type: ignore[misc]
    with pytest.raises(ValidationError, match="a duration cannot be negative"):
        IncidentSettings(pre=-1.0)  # the field's own check, before the cross-field ones
    with pytest.raises(ValidationError, match="Unexpected keyword argument"):
        RecorderSettings(windw=60.0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="window must be between"):
        dataclasses.replace(RecorderSettings(), window=1.0)
    assert copy.deepcopy(made) == made == pickle.loads(pickle.dumps(made))
    assert hash(made) == hash(IncidentSettings(pre=30.0, max_bytes=65_536))
    assert not hasattr(made, "__dict__")  # slots: a run-time instance is its fields only


def test_each_default_section_is_what_validating_nothing_gives() -> None:
    """`defaults(Section)` (made at import, no validator built) equals `Section()`; every
    default of a config field that is a section is made so (tests/config/test_lean_imports.py
    checks the pydantic models' defaults)."""
    found = []
    seen: set[type[BaseModel]] = set()
    todo: list[type[BaseModel]] = [BaseModel]
    while todo:
        for model in todo.pop().__subclasses__():
            if model in seen or not model.__module__.startswith("gateway."):
                continue
            seen.add(model)
            todo.append(model)
            for name, info in model.model_fields.items():
                if is_section(type(info.default)):
                    found.append(f"{model.__qualname__}.{name}")
                    assert info.default == type(info.default)(), name
    for cls in list(_UNCHECKED):  # the sections' own fields
        for f in dataclasses.fields(cls):
            default: object = f.default
            if cls.__module__.startswith("gateway.") and is_section(type(default)):
                found.append(f"{cls.__qualname__}.{f.name}")
                assert default == type(default)(), f.name
    assert sorted(found) == [
        "BusCommon.failure", "Device.location", "GatewayConfig.alarms", "GatewayConfig.incidents",
        "GatewayConfig.operators", "GatewayConfig.panel", "GatewayConfig.recorder",
        "GatewayConfig.rules",
        "ModbusRtuBus.failure", "ModbusTcpBus.failure", "Output.backoff", "SerialTextBus.failure",
        "UplinkSettings.exception", "UplinkSettings.outbox", "UplinkSettings.replay"]
    assert defaults(RecorderSettings) == RecorderSettings() == RecorderSettings(window=900)


@section
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _Probe:
    """A section as the rest of the migration will write them: a required key, bounds."""

    name: str
    """Required."""
    timeout: Annotated[Duration, at_most(10.0)] = 1.0
    """Bounded in the config's own units."""
    retries: Annotated[int, Between(ge=0, le=5)] = 3


class _Holder(BaseModel):
    model_config = {"extra": "forbid", "frozen": True}
    probe: _Probe


def test_a_section_s_errors_read_as_a_model_s() -> None:
    lines = LineMap({})
    for data, reason in [({}, "probe: required key is missing"),
                         ({"probe": {}}, "probe.name: required key is missing"),
                         ({"probe": {"name": "a", "nme": 1}},
                          "probe.nme: unknown key (not part of the schema; check its spelling)"),
                         ({"probe": {"name": "a", "timeout": "300m"}},
                          "probe.timeout: 5h is longer than the limit of 10s"),
                         ({"probe": {"name": "a", "retries": 6}},
                          "probe.retries: Input should be less than or equal to 5"),
                         ({"probe": "a"},
                          "probe: Input should be a valid dictionary or instance of _Probe")]:
        with pytest.raises(ValidationError) as caught:
            _Holder.model_validate(data)
        assert [str(e) for e in pydantic_errors(caught.value, "f.yaml", lines)] == [
            f"f.yaml: {reason}"], data
    assert _Holder.model_validate({"probe": {"name": "a", "timeout": "2s"}}).model_dump(
        mode="json") == {"probe": {"name": "a", "timeout": "2s", "retries": 3}}


def test_only_a_frozen_slotted_keyword_dataclass_becomes_a_section() -> None:
    for made in (dataclasses.dataclass(frozen=True, kw_only=True),
                 dataclasses.dataclass(slots=True, kw_only=True),
                 dataclasses.dataclass(frozen=True, slots=True)):
        with pytest.raises(TypeError, match="a config section is a"):
            section(made(type("Loose", (), {"__annotations__": {"x": "int"}})))
    with pytest.raises(TypeError, match="a config section is a"):
        section(type("Plain", (), {}))
    assert validator(RecorderSettings) is validator(RecorderSettings)


def test_only_the_section_module_sets_a_dataclass_s_pydantic_config() -> None:
    """The sections' strict config (unknown keys are errors) is set in one place, as the
    models' is (tests/test_layering.py: only gateway.strict calls `ConfigDict(extra=...)`)."""
    gateway = Path(__file__).resolve().parents[2] / "gateway"
    setters = sorted(str(path.relative_to(gateway)) for path in gateway.rglob("*.py")
                     if "__pydantic_config__" in path.read_text(encoding="utf-8"))
    assert setters == ["config/section.py"]


def _lower(word: str) -> str:
    if word != word.lower():
        raise ValueError("lower case only")
    return word


@section
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _Limited:  # `Limits` and `default_factory` against the `Field` they stand for
    ratio: Annotated[float, Limits(gt=0, le=10, allow_inf_nan=False)] = 1.0
    code: Annotated[str, Limits(pattern=r"^[a-z]+$", min_length=2, max_length=5)] | None = None
    bands: dict[str, Annotated[float, Limits(ge=0)]] = default_factory(dict)
    roles: Annotated[tuple[str, ...], Limits(min_length=1)] = ("x",)
    word: Annotated[str, Check(_lower)] = "a"


class _Fielded(BaseModel):
    model_config = {"extra": "forbid", "frozen": True}
    ratio: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)] = 1.0
    code: Annotated[str, Field(pattern=r"^[a-z]+$", min_length=2, max_length=5)] | None = None
    bands: dict[str, Annotated[float, Field(ge=0)]] = {}
    roles: Annotated[tuple[str, ...], Field(min_length=1)] = ("x",)
    word: Annotated[str, AfterValidator(_lower)] = "a"


@pytest.mark.parametrize("data", [
    {"ratio": 0}, {"ratio": 10.5}, {"ratio": float("inf")}, {"ratio": "nan"}, {"code": "A"},
    {"code": "abcdef"}, {"code": "a"}, {"bands": {"x": -1}}, {"bands": []}, {"roles": []},
    {"word": "A"}, {"word": 5},
    {"ratio": 10, "code": "ab", "bands": {"x": 0.5}, "roles": ["a", "b"]}])
def test_limits_validate_and_describe_as_pydantic_s_field(data: dict[str, object]) -> None:
    def outcome(adapter: TypeAdapter[Any]) -> object:
        try:
            return adapter.dump_python(adapter.validate_python(data), mode="json")
        except ValidationError as exc:
            return [(e["type"], e["loc"], e["msg"]) for e in exc.errors()]

    assert outcome(TypeAdapter(_Limited)) == outcome(TypeAdapter(_Fielded))
    schemas = [TypeAdapter(cls).json_schema() for cls in (_Limited, _Fielded)]
    assert json.dumps(schemas[0]) == json.dumps({**schemas[1], "title": "_Limited"})


def test_a_factory_default_is_made_for_each_instance() -> None:
    first, second = defaults(_Limited), _Limited()
    assert first.bands == second.bands == {} and first.bands is not second.bands


def test_a_section_s_errors_are_worded_as_a_model_s_in_the_orphans_journal() -> None:
    """gateway.actions.orphans logs why a saved release (its `Output`, a section) is refused
    in pydantic's words: a model's, as on 1ccba84 (`model_message`)."""
    output: dict[str, object] = {"id": "o1", "role": "siren", "device": "d", "point": "do1",
                                 "backoff": {"initial": 5.0}}
    release = {"output": output, "bus": "b", "line": ["tcp", "h", 502], "unit": 1, "address": 0,
               "version": 1}
    told = []
    for bad in ({**output, "x": 1}, {"id": "o1"}, 5, {**output, "backoff": {"y": 1}}):
        text = json.dumps({"version": 1, "releases": [{**release, "output": bad}]})
        told += orphans.decode(text)[1]
    assert told == [
        "release 0 (output 'o1'): output.x: Extra inputs are not permitted (1 errors): refused",
        "release 0 (output 'o1'): output.role: Field required (3 errors): refused",
        "release 0: output: Input should be a valid dictionary or instance of Output (1 errors):"
        " refused",
        "release 0 (output 'o1'): output.backoff.y: Extra inputs are not permitted (1 errors): "
        "refused"]
    assert len(orphans.decode(json.dumps({"version": 1, "releases": [release]}))[0]) == 1


def test_replaced_is_model_copy_s_unvalidated_update() -> None:
    """A running gateway's own adjustment (the daemon's `--panel-port`) builds no validator:
    `replaced` takes what it is given (port 0, which a config may not say), runs
    `__post_init__`, and leaves the original as it was."""
    _VALIDATORS.pop(Panel, None)
    panel = defaults(Panel)
    moved = replaced(panel, port=0, enabled=False)
    assert Panel not in _VALIDATORS  # nothing was validated
    assert (moved.port, moved.enabled, moved.bind) == (0, False, "127.0.0.1")
    assert (panel.port, panel.enabled) == (8080, True)
    with pytest.raises(ValueError, match="window must be between"):
        replaced(RecorderSettings(), window=1.0)
    with pytest.raises(TypeError):
        replaced(panel, prot=1)
