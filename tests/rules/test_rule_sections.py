"""The rule packs' classes as plain dataclasses (gateway.rules.condition_model, .model, .section;
issue 15) against their pydantic originals, kept verbatim in tests/rules/originals (only their
imports of each other changed): the same dumps (Python and JSON) of every pack, the same
errors (loc, type, msg) and `roomwarden check` messages for near misses, the same JSON schema
and keys, the same written values; and a fresh interpreter uses them without pydantic."""

from __future__ import annotations

import copy
import json
import pickle
import tempfile
import weakref
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from gateway.config.check_all import _keys
from gateway.config.errors import ConfigErrors
from gateway.config.schema import adapter_schema, model_schema
from gateway.config.section import model_message, validator
from gateway.config.yamlfile import pydantic_errors, read_yaml
from gateway.recorder.settings import RecorderSettings
from gateway.rules import model as m
from gateway.rules.section import ParameterOverride, RulesSection
from gateway.rules.warm import _plain
from tests.ops.test_lazy_imports import run_fresh
from tests.rules.originals import condition_model as original_conditions
from tests.rules.originals import model as original
from tests.rules.originals import section as original_section

REPO = Path(__file__).resolve().parents[2]
PACK_FILES = sorted([*(REPO / "edge_rules").glob("*.yaml"),
                     *(REPO / "tests/data/broken_packs").glob("*.yaml")])
SHIPPED = {p.stem: yaml.safe_load(p.read_text())
           for p in sorted((REPO / "edge_rules").glob("*.yaml"))}

_MODEL_TYPES = {"unexpected_keyword_argument": "extra_forbidden",
                "missing_keyword_argument": "missing", "dataclass_type": "model_type"}


def errors_of(exc: ValidationError, *, section: bool) -> list[tuple[Any, ...]]:
    """(loc, type, msg) of each error; a section's three dataclass-only types told as a model's
    (what `pydantic_errors` and `model_message` do for the messages a user reads)."""
    return [(e["loc"], _MODEL_TYPES.get(e["type"], e["type"]) if section else e["type"],
             model_message(e) if section else e["msg"]) for e in exc.errors()]


def outcome(old: type[BaseModel], new: type[Any], data: object) -> tuple[Any, ...]:
    """The two validations of `data` compared: their dumps, their written values or their
    errors, each asserted equal; returns what they gave."""
    try:
        before = old.model_validate(data)
    except ValidationError as exc:
        with pytest.raises(ValidationError) as after:
            validator(new).validate_python(data)
        assert errors_of(after.value, section=True) == errors_of(exc, section=False)
        return ("refused", errors_of(exc, section=False))
    adapter: TypeAdapter[Any] = validator(new)
    made = adapter.validate_python(data)
    assert adapter.dump_python(made) == before.model_dump()
    assert adapter.dump_python(made, mode="json") == before.model_dump(mode="json")
    assert adapter.dump_json(made) == before.model_dump_json().encode()
    assert written(made) == written(before)
    return ("accepted", before.model_dump(mode="json"))


def written(made: object) -> list[object]:
    """Every value as written of the sections keeping them, in order."""
    found: list[object] = []
    held: Any = getattr(made, "rules", None) or getattr(made, "parameters", ())
    for rule in held:
        names = getattr(rule, rule.WRITTEN)
        found.append([(n, rule.written(n)) for n in names])
        for chemistry in getattr(rule, "chemistry", {}).values():
            found.append([(n, chemistry.written(n)) for n in chemistry.set])
    return found


def checked(load: Any, path: Path) -> object:
    """What `roomwarden check` says of a pack file (or its dump)."""
    try:
        return validator(m.RulePack).dump_python(load(path), mode="json") \
            if load is m.load_pack else load(path).model_dump(mode="json")
    except ConfigErrors as exc:
        return [str(e) for e in exc.errors]


@pytest.mark.parametrize("path", PACK_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_pack_reads_as_it_did(path: Path) -> None:
    assert checked(m.load_pack, path) == checked(original.load_pack, path)
    try:
        data, _ = read_yaml(path)
    except ConfigErrors:
        return  # not YAML, or a key written twice: no pack to validate
    outcome(original.RulePack, m.RulePack, data)


@pytest.mark.parametrize("pack", sorted(SHIPPED))
def test_the_warm_walk_dumps_a_pack_as_pydantic(pack: str) -> None:
    made = validator(m.RulePack).validate_python(SHIPPED[pack])
    assert _plain(made) == validator(m.RulePack).dump_python(made, mode="json")


def test_the_warm_walk_writes_a_section_s_durations_as_pydantic() -> None:
    """A section's `Duration` (`Duration | None`) as its text, as a model's (Device's
    poll_interval, once Device is a section): what the warm-start fingerprints hash."""
    made = RecorderSettings(window=300.0, max_points=12)
    assert _plain(made) == validator(RecorderSettings).dump_python(made, mode="json")
    assert _plain(made)["window"] == "5m"  # type: ignore[index]


def test_the_json_schemas_and_keys_are_the_same() -> None:
    assert adapter_schema(validator(m.RulePack)) == model_schema(original.RulePack)
    assert adapter_schema(validator(RulesSection)) == model_schema(original_section.RulesSection)
    # `check`'s known keys ("did you mean"), of the sections a gateway config holds
    pairs: list[tuple[type, type[BaseModel]]] = [
        (ParameterOverride, original_section.ParameterOverride),
             (RulesSection, original_section.RulesSection)]
    assert [list(_keys(new)) for new, _ in pairs] == \
        [[info.alias or name for name, info in old.model_fields.items()] for _, old in pairs]
    assert TypeAdapter[Any](m.Condition).json_schema() == \
        TypeAdapter[Any](original_conditions.Condition).json_schema()


# --- near misses ------------------------------------------------------------------------------

KEYS = ["condition", "in", "in_", "set", "parameters", "each", "of", "count", "signal", "rate",
        "window", "select", "quantity", "rules", "id", "actions", "chemistry", "at_least", "all",
        "any", "stale", "device", "room", "room_type", "rule", "responses", "zzz", "_written"]
JUNK: list[object] = [None, True, 0, -1, 2.5, 1e309, "x", "$bad ref", "$limit", "5m", "60C", [],
                      [1], ["a", "a"], {}, {"above": 1}, {"in": 1}, {"in": [1, "on"]},
                      {"in_": [1]}, {"stale": "5s"}, {"zzz": 1}, {"all": []}, {"any": [{}]},
                      {"at_least": {"count": 2, "of": [{"above": 1}]}}, {"equals": 1, "above": 2},
                      {"signal": {"rate": {"window": "1m"}}, "above": 1},
                      {"limit": "60C"}, {"limit": 60, "delay": "5s"}, {"fire.heat_fixed": "x" * 9}]


def _dicts(data: object, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every mapping in `data`."""
    found: list[tuple[Any, ...]] = [path] if isinstance(data, dict) else []
    items = data.items() if isinstance(data, dict) else \
        enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        found += _dicts(value, (*path, key))
    return found


@st.composite
def near_miss(draw: st.DrawFn, base: object) -> Any:
    data: Any = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 2))):
        place = data
        for part in draw(st.sampled_from(_dicts(data))):
            place = place[part]
        assert isinstance(place, dict)
        known = bool(place) and draw(st.booleans())  # a key it has, half the time
        key = draw(st.sampled_from(list(place) if known else KEYS))
        if key in place and draw(st.booleans()):
            del place[key]
        else:
            place[key] = copy.deepcopy(draw(st.sampled_from(JUNK)))
    return data


def _checked_both(data: object) -> tuple[object, object]:
    with tempfile.TemporaryDirectory() as where:
        name = data.get("pack") if isinstance(data, dict) else None
        path = Path(where, f"{name if isinstance(name, str) else 'x'}.yaml")
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
        return checked(m.load_pack, path), checked(original.load_pack, path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SHIPPED)).flatmap(lambda p: near_miss(SHIPPED[p])))
def test_near_miss_packs_read_as_they_did(data: object) -> None:
    outcome(original.RulePack, m.RulePack, data)
    new, old = _checked_both(data)
    assert new == old


SECTION = {"packs": ["fire", "power"], "disabled": ["fire.smoke_single"],
           "parameters": [{"rule": "fire.heat_fixed", "set": {"limit": 60, "delay": "10s"}},
                          {"rule": "power.branch_overload", "device": "pdu-1",
                           "set": {"rating": 16.0}},
                          {"rule": "fire.heat_fixed", "room_type": "battery", "set": {"x": None}}],
           "responses": {"fire.heat_fixed": "Evacuate the room, then call 119."}}


@settings(max_examples=150, deadline=None)
@given(near_miss(SECTION))
def test_near_miss_rules_sections_read_as_they_did(data: object) -> None:
    said = outcome(original_section.RulesSection, RulesSection, data)
    if said[0] == "refused":
        with tempfile.TemporaryDirectory() as where:
            path = Path(where, "site.yaml")
            path.write_text(yaml.safe_dump({"rules": data}))
            _, lines = read_yaml(path)
        with pytest.raises(ValidationError) as old:
            original_section.RulesSection.model_validate(data)
        with pytest.raises(ValidationError) as new:
            validator(RulesSection).validate_python(data)
        assert [str(e) for e in pydantic_errors(new.value, "site.yaml", lines, ("rules",))] == \
            [str(e) for e in pydantic_errors(old.value, "site.yaml", lines, ("rules",))]


# --- a running gateway ------------------------------------------------------------------------


@pytest.mark.process
def test_a_fresh_interpreter_unpickles_packs_without_pydantic(tmp_path: Path) -> None:
    packs = [m.load_pack(REPO / "edge_rules" / f"{p}.yaml") for p in sorted(SHIPPED)]
    section = validator(RulesSection).validate_python(SECTION)
    assert section.parameters[0].written("delay") == "10s"
    (tmp_path / "packs.pickle").write_bytes(pickle.dumps((packs, section)))
    found = run_fresh("""
        import json, pickle, sys, weakref
        from pathlib import Path
        import gateway.rules.condition_model, gateway.rules.model, gateway.rules.section
        from gateway.rules.model import condition_refs, parameter_kinds
        packs, section = pickle.loads(Path(sys.argv[2], "packs.pickle").read_bytes())
        rule = packs[0].rules[0]
        weakref.ref(rule)
        found = {
            "pydantic": sorted(n for n in sys.modules if n.startswith(("pydantic", "annotated"))),
            "rules": sum(len(p.rules) for p in packs),
            "refs": sorted(condition_refs(rule.condition)),
            "kinds": sorted(parameter_kinds(rule)),
            "written": [section.parameters[0].written("delay"), section.parameters[0].set],
        }
        print(json.dumps(found))
    """, tmp_path)
    rule = packs[0].rules[0]
    assert found == {"pydantic": [], "rules": sum(len(p.rules) for p in packs),
                     "refs": sorted(m.condition_refs(rule.condition)),
                     "kinds": sorted(m.parameter_kinds(rule)),
                     "written": ["10s", {"limit": 60.0, "delay": 10.0}]}
    again = pickle.loads(pickle.dumps(packs))
    assert again == packs and written(again[0]) == written(packs[0])
    assert copy.deepcopy(section) == section and copy.copy(section).parameters[0].written(
        "delay") == "10s"
    assert weakref.ref(rule)() is rule
    assert json.loads(validator(m.RulePack).dump_json(again[0])) == \
        original.RulePack.model_validate(SHIPPED[packs[0].pack]).model_dump(mode="json")
