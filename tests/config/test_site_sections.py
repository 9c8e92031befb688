"""The buses, Device and GatewayConfig as plain dataclasses (gateway.config.section, issue 15)
validate, refuse, dump and describe themselves as the pydantic models they replaced
(tests/config/site_models_before.py, verbatim): every config in the repository, near-miss
configs made by hypothesis from the shipped ones, the JSON schema and the reference; and a
running gateway's process unpickles a checked config without a pydantic class of theirs."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.config import reference
from gateway.config.loader import ConfigErrors, LineMap, load_gateway_config, pydantic_errors
from gateway.config.schema import model_schema
from gateway.config.section import model_message, validator
from gateway.config.site import GatewayConfig
from gateway.config.yamlfile import read_yaml
from tests.config import site_models_before as before
from tests.ops.test_lazy_imports import run_fresh

ROOT = Path(__file__).resolve().parents[2]
AS_MODEL = {"unexpected_keyword_argument": "extra_forbidden",
            "missing_keyword_argument": "missing", "dataclass_type": "model_type"}
"""A dataclass's error types for what a model's are (gateway.config.yamlfile words both)."""


def _configs() -> list[tuple[str, Any]]:
    found = []
    for path in sorted({*ROOT.glob("firmware_configs/**/*.yaml"), *ROOT.glob("tests/**/*.yaml")}):
        try:
            data, _ = read_yaml(path)
        except ConfigErrors:
            continue
        if isinstance(data, dict) and "gateway" in data:
            found.append((str(path.relative_to(ROOT)), data))
    return found


CONFIGS = _configs()


def _errors(exc: ValidationError) -> list[tuple[Any, ...]]:
    """(loc, type, msg) of each error, a dataclass's three own types as a model's."""
    return [(e["loc"], AS_MODEL.get(e["type"], e["type"]),
             model_message(e) if e["type"] in AS_MODEL else e["msg"])
            for e in exc.errors(include_url=False)]


def _new(data: Any) -> tuple[Any, ...]:
    adapter = validator(GatewayConfig)
    try:
        config = adapter.validate_python(data)
    except ValidationError as exc:
        return ("refused", _errors(exc), [str(e) for e in pydantic_errors(exc, "f", LineMap())])
    return ("read", adapter.dump_python(config, mode="json"), adapter.dump_python(config))


def _old(data: Any) -> tuple[Any, ...]:
    try:
        config = before.GatewayConfig.model_validate(data)
    except ValidationError as exc:
        return ("refused", _errors(exc), [str(e) for e in pydantic_errors(exc, "f", LineMap())])
    return ("read", config.model_dump(mode="json"), config.model_dump())


VALID = [data for _, data in CONFIGS if _old(data)[0] == "read"]


def test_the_configs_in_the_repository_are_read_or_refused_as_before() -> None:
    assert len(CONFIGS) >= 20 and len(VALID) >= 15
    for name, data in CONFIGS:
        assert _new(data) == _old(data), name


def test_a_loaded_config_is_the_dataclass_and_dumps_as_the_model_did() -> None:
    path = ROOT / "firmware_configs" / "datacenter_lithium_room.yaml"
    config = load_gateway_config(path).config
    assert type(config) is GatewayConfig
    dump = validator(GatewayConfig).dump_python(config, mode="json")
    assert dump == before.GatewayConfig.model_validate(read_yaml(path)[0]).model_dump(mode="json")
    assert list(dump["buses"][0])[:4] == ["id", "timeout", "max_gap", "failure"]  # BusCommon's


BUS_VALUES: dict[str, list[Any]] = {
    "type": ["modbus_rtu", "modbus_tcp", "serial_text", "modbus", "", 3, None],
    "timeout": ["11s", "300m", "10s", "0", "-1", -1, "soon", None, 0.5, "500ms"],
    "max_gap": [-1, 0, 124, 125, "8", 8.5, True],
    "port": [0, 1, 502, 65535, 65536, "/dev/ttyUSB0", None],
    "baudrate": [9600, 1234, "9600", 2400], "parity": ["N", "X", "", "E"],
    "stopbits": [1, 2, 3], "bytesize": [7, 8, 9], "host": [None, 3, "h"],
    "inter_frame_delay": ["1ms", "2s", None, "x", 0.5],
    "failure": [{}, {"offline_after": 0}, {"backoff_max": "2h"}, "x", {"extra": 1}],
    "id": ["ok", "bad id!", "", "x" * 65]}
DEVICE_VALUES: dict[str, list[Any]] = {
    "poll_interval": ["10ms", "50ms", "49ms", "soon", -1, 0, None, "1s"],
    "unit": [-1, 0, 247, 248, "1", 1.5],
    "points": [{"temp": {"offset": "a"}}, {"Bad": {}}, {"t": {"nope": 1}}, [], None,
               {"t": {"enabled": False}}],
    "room": [None, "", "Bad Name", 5], "bus": [None, "b-9"], "profile": ["Bad", "ok_one"],
    "enabled": ["yes", 2, True], "chemistry": ["lfp", "nicd"],
    "location": ["x", {"row": 5}, {"rack": "A", "zz": 1}], "id": ["", "th-99"]}
TOP_VALUES: dict[str, list[Any]] = {
    "rooms": [[], None, "x", [1]], "buses": [[], None, "x", [1], [{}]],
    "devices": [[], None, [1], [{}]], "version": [1, 2, "1"], "profiles_dir": [3, None],
    "gateway": [None, {"id": "g"}, {"id": "g", "site": "s", "x": 1}]}
UNKNOWN = ["tyoe", "prot", "timout", "poll", "foo", "points_", "Type"]


def test_each_listed_value_of_a_bus_s_or_a_device_s_key_reads_as_before() -> None:
    """Every value of the tables above in place of each bus's (each kind) and the first
    device's key, or that key deleted, or an unknown key beside it, in every valid config."""
    for data in VALID:
        for where, values in (("buses", BUS_VALUES), ("devices", DEVICE_VALUES)):
            for index in range(len(data[where]) if where == "buses" else 1):
                for key, choices in values.items():
                    for value in [*choices, DELETED, EXTRA]:
                        changed = copy.deepcopy(data)
                        item = changed[where][index]
                        if value is DELETED:
                            item.pop(key, None)
                        elif value is EXTRA:
                            item["tyoe"] = 1
                        else:
                            item[key] = copy.deepcopy(value)
                        assert _new(changed) == _old(changed), (where, index, key, value)


DELETED, EXTRA = object(), object()


@st.composite
def near_misses(draw: st.DrawFn) -> Any:
    """A shipped or test config with one to three things made wrong (or right again)."""
    data = copy.deepcopy(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["bus", "device", "top"]))
        if where == "top":
            target, values = data, TOP_VALUES
        else:
            items = data.get(where + "es" if where == "bus" else where + "s")
            if not isinstance(items, list) or not items or not isinstance(items[0], dict):
                continue
            index = draw(st.integers(0, len(items) - 1))
            if not isinstance(items[index], dict):
                continue
            if draw(st.integers(0, 9)) == 0:  # not a mapping at all
                items[index] = draw(st.sampled_from([5, "x", [], None]))
                continue
            target, values = items[index], BUS_VALUES if where == "bus" else DEVICE_VALUES
        action = draw(st.sampled_from(["set", "set", "set", "delete", "unknown"]))
        if action == "unknown":
            target[draw(st.sampled_from(UNKNOWN))] = 1
        elif action == "delete" and target:
            del target[draw(st.sampled_from(sorted(target)))]
        else:
            key = draw(st.sampled_from(sorted(values)))
            target[key] = copy.deepcopy(draw(st.sampled_from(values[key])))
    return data


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_misses())
def test_near_miss_configs_are_refused_with_the_same_errors(data: Any) -> None:
    assert _new(data) == _old(data)


@pytest.mark.parametrize("data", [None, [], "x", {}, {"gateway": {"id": "g", "site": "s"}}])
def test_what_is_no_config_is_refused_as_before(data: Any) -> None:
    assert _new(data) == _old(data)


def test_the_schema_and_the_reference_are_the_model_s() -> None:
    assert model_schema(GatewayConfig) == model_schema(before.GatewayConfig)
    assert reference.render() == (ROOT / "docs" / "config-reference.md").read_text()


def test_a_running_gateway_unpickles_a_checked_config_without_a_pydantic_class_of_its_own(
        tmp_path: Path) -> None:
    """The config check's answer, unpickled in a fresh interpreter: no object of it is a
    pydantic model, no validator is built, and importing the site config imports no pydantic
    (the test imports it afterwards, to look for models)."""
    config = load_gateway_config(ROOT / "firmware_configs" / "datacenter_lithium_room.yaml").config
    (tmp_path / "config.pickle").write_bytes(pickle.dumps(config))
    found = run_fresh("""
        import builtins, dataclasses, json, pickle, sys
        from pathlib import Path
        importers, real = set(), builtins.__import__
        def spy(name, globals=None, *args, **kwargs):
            who = (globals or {}).get("__name__") or ""
            if name.split(".")[0] in ("pydantic", "pydantic_core") and who.startswith("gateway"):
                importers.add(who.rsplit(".", 1)[0] if who.startswith("gateway.contract")
                              else who)
            return real(name, globals, *args, **kwargs)
        builtins.__import__ = spy
        import gateway.config.site
        builtins.__import__ = real
        config = pickle.loads(Path(sys.argv[2], "config.pickle").read_bytes())
        loaded = sorted(m for m in ("pydantic", "pydantic_core") if m in sys.modules)
        from pydantic import BaseModel
        from gateway.config.section import _VALIDATORS
        models, todo, seen = set(), [config], set()
        while todo:
            item = todo.pop()
            if id(item) in seen:
                continue
            seen.add(id(item))
            if isinstance(item, BaseModel):
                models.add(type(item).__name__)
                todo += list(item.__dict__.values())
            elif dataclasses.is_dataclass(item):
                todo += [getattr(item, f.name) for f in dataclasses.fields(item)]
            elif isinstance(item, (tuple, list)):
                todo += list(item)
            elif isinstance(item, dict):
                todo += list(item.values())
        own = [cls.__name__ for cls in (gateway.config.site.GatewayConfig,
                                        gateway.config.site.Device,
                                        gateway.config.site.ModbusRtuBus)
               if any(n.startswith("__pydantic") and n != "__pydantic_config__"
                      for n in dir(cls))]
        print(json.dumps({"same": type(config) is gateway.config.site.GatewayConfig,
                          "devices": len(config.devices), "models": sorted(models),
                          "own": own, "built": [c.__name__ for c in _VALIDATORS],
                          "importers": sorted(importers), "loaded": loaded}))
    """, tmp_path)
    assert found == {"same": True, "devices": len(config.devices), "models": [],
                     "own": [], "built": [], "importers": [], "loaded": []}


def test_did_you_mean_knows_the_keys_it_knew() -> None:
    from gateway.config import check_all

    models: set[type] = set()
    check_all._models(before.GatewayConfig, models)
    assert check_all.known_keys() == sorted({k for m in models for k in check_all._keys(m)})
