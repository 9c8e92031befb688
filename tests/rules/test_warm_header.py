"""The saved rate windows' header read without pydantic (gateway.rules.warm_header) gives what
the pydantic models it replaced gave — the same values for every header they accepted, the
same errors for every one they refused — on headers as the gateway writes them, near misses
(a wrong type, a bool for an int, an int for a float, a huge int, a lone surrogate, a key too
many or missing) and whatever JSON random bytes hold. The models are kept here verbatim."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.rules import warm_header
from gateway.rules.warm_file import header_text
from gateway.rules.warm_models import SavedHeader, SavedHeaderV3, SavedWindowsV1
from gateway.strict import StrictModel
from tests.plain_json_strategies import ODD as _ODD
from tests.plain_json_strategies import TEXT as _TEXT
from tests.plain_json_strategies import every_one_off, json_of
from tests.plain_json_strategies import one_off as _one_off


def _errors(exc: ValidationError) -> tuple[str, list[Any]]:
    return str(exc), exc.errors(include_url=False)


def _ours(read: Any, found: object) -> tuple[str, object]:
    try:
        got = read(found)
    except ValidationError as exc:
        return "error", _errors(exc)
    return "ok", json.dumps([got.saved_ns, getattr(got, "saved_mono", None),
                             getattr(got, "boot_id", None), got.points])


def _theirs(model: type[StrictModel], found: object) -> tuple[str, object]:
    try:
        got: Any = model.model_validate(found)
    except ValidationError as exc:
        return "error", _errors(exc)
    if isinstance(got, SavedHeader):
        points: dict[str, Any] = {p: (r.source, r.runs) for p, r in got.points.items()}
        return "ok", json.dumps([got.saved_ns, got.saved_mono, got.boot_id, points])
    points = {p: (r.source, r.age_ms, r.value) for p, r in got.points.items()}
    return "ok", json.dumps([got.saved_ns, None, None, points])


_INT = st.one_of(st.integers(-2**64, 2**64), st.integers(-5, 5))
_FLOAT = st.one_of(st.floats(), st.floats(0, 1e7))
_MONO = st.one_of(_FLOAT, st.none(), st.integers(0, 10**7))
_RUNS = st.lists(st.one_of(_INT, _INT, _INT, _ODD), max_size=4)
_RECORD = st.one_of(st.fixed_dictionaries({"source": st.one_of(_TEXT, _TEXT, _ODD),
                                           "runs": st.one_of(_RUNS, _RUNS, _ODD)},
                                          optional={"extra": _ODD}), _ODD)
_V1_RECORD = st.one_of(st.fixed_dictionaries(
    {"source": st.one_of(_TEXT, _ODD), "age_ms": st.one_of(st.lists(_INT, max_size=3), _ODD),
     "value": st.one_of(st.lists(st.one_of(_FLOAT, _FLOAT, _INT), max_size=3), _ODD)}), _ODD)


def _near(version: int, record: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {"version": st.one_of(st.just(version), st.just(version), _ODD),
         "saved_ns": st.one_of(_INT, _INT, _ODD),
         "points": st.one_of(st.dictionaries(_TEXT, record, max_size=3), _ODD)},
        optional={"saved_mono": _MONO, "boot_id": st.one_of(_TEXT, st.none(), _ODD),
                  "other": _ODD})


def _written(points: dict[str, tuple[str, list[int]]], saved_ns: int, mono: float | None,
             boot_id: str | None) -> Any:
    return json.loads("".join(header_text(saved_ns, points, mono, boot_id)))


_WRITTEN = st.builds(_written, st.dictionaries(st.text(max_size=6), st.tuples(
    st.text(max_size=6), st.lists(st.integers(0, 500), max_size=3)), max_size=4),
                     st.integers(0, 2**62), st.one_of(st.none(), st.floats(0, 1e7)),
                     st.one_of(st.none(), st.text(max_size=8)))


def _written_v1(points: dict[str, tuple[str, list[int], list[float]]], saved_ns: int) -> object:
    return {"version": 1, "saved_ns": saved_ns, "points": {
        p: {"source": s, "age_ms": a, "value": v} for p, (s, a, v) in points.items()}}


_WRITTEN_V1 = st.builds(_written_v1, st.dictionaries(st.text(max_size=6), st.tuples(
    st.text(max_size=6), st.lists(st.integers(0, 10**6), max_size=3),
    st.lists(st.floats(), max_size=3)), max_size=3), st.integers(0, 2**62))


@settings(max_examples=600, deadline=None)
@given(st.one_of(_WRITTEN, _one_off(_WRITTEN), _one_off(_WRITTEN), _near(2, _RECORD), _ODD,
                 st.binary(max_size=40).map(json_of)))
@example({"version": 2, "saved_ns": True, "points": {}})
@example({"version": 2, "saved_ns": 1, "saved_mono": 2, "points": {}})
@example({"version": 2, "saved_ns": 1, "points": {"a": {"source": "\ud800", "runs": []}}})
@example({"version": 2, "saved_ns": 2**64, "points": {}})
def test_a_header_reads_as_its_model_read_it(found: object) -> None:
    assert _ours(warm_header.header, found) == _theirs(SavedHeader, found)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_WRITTEN_V1, _one_off(_WRITTEN_V1), _one_off(_WRITTEN_V1),
                 _near(1, _V1_RECORD), _ODD, st.binary(max_size=40).map(json_of)))
@example({"version": 1, "saved_ns": 1, "points": {"a": {"source": "s", "age_ms": [True],
                                                          "value": [1]}}})
def test_a_version_1_file_reads_as_its_model_read_it(found: object) -> None:
    assert _ours(warm_header.header_v1, found) == _theirs(SavedWindowsV1, found)


def test_a_written_header_is_read_without_its_model() -> None:
    """The gateway's own header takes the plain path (the models are not consulted)."""
    found = _written({"a.t": ("src", [3, 0])}, 5, 2.5, "boot")
    assert warm_header._is_header(found)
    assert not warm_header._is_header({**found, "saved_mono": 2})
    assert warm_header._is_v1({"version": 1, "saved_ns": 5, "points": {
        "a.t": {"source": "s", "age_ms": [1], "value": [2.0]}}})


_WRITTEN_V3 = st.builds(lambda found, synced: {**found, "version": 3, "synced": synced},
                        _WRITTEN, st.booleans())


def _ours_v3(found: object) -> tuple[str, object]:
    try:
        got = warm_header.header(found, 3)
    except ValidationError as exc:
        return "error", _errors(exc)
    return "ok", json.dumps([got.saved_ns, got.saved_mono, got.boot_id, got.synced,
                             got.points])


def _theirs_v3(found: object) -> tuple[str, object]:
    try:
        got = SavedHeaderV3.model_validate(found)
    except ValidationError as exc:
        return "error", _errors(exc)
    points = {p: (r.source, r.runs) for p, r in got.points.items()}
    return "ok", json.dumps([got.saved_ns, got.saved_mono, got.boot_id, got.synced, points])


@settings(max_examples=300, deadline=None)
@given(st.one_of(_WRITTEN_V3, _one_off(_WRITTEN_V3), _one_off(_WRITTEN_V3), _WRITTEN,
                 _near(3, _RECORD), _ODD))
@example({"version": 3, "saved_ns": 1, "synced": 1, "points": {}})
@example({"version": 3, "saved_ns": 1, "synced": None, "points": {}})
@example({"version": 3, "saved_ns": 1, "points": {}})
def test_a_version_3_header_reads_as_its_model_read_it(found: object) -> None:
    """Version 3 (7 Dec 2026) is version 2 and `synced`, a bool, required: a version-2
    header in a version-3 file is refused."""
    assert _ours_v3(found) == _theirs_v3(found)


def test_the_gateway_writes_version_3_with_the_clock_state() -> None:
    for synced in (True, False):
        found = json.loads("".join(header_text(5, {"a.t": ("src", [3])}, 2.5, "boot", synced)))
        assert found["version"] == 3 and found["synced"] is synced
        assert warm_header._is_header(found, 3) and not warm_header._is_header(found, 2)
        assert warm_header.header(found, 3).synced is synced


@settings(max_examples=25, deadline=None)
@given(_WRITTEN, _WRITTEN_V1)
def test_every_near_miss_of_a_header_reads_as_its_model_read_it(written: object,
                                                                 v1: object) -> None:
    """Each value of a written header replaced by each value at the edge of a check, each
    key dropped, one added."""
    for changed in every_one_off(written):
        assert _ours(warm_header.header, changed) == _theirs(SavedHeader, changed), changed
    for changed in every_one_off(v1):
        assert _ours(warm_header.header_v1, changed) == _theirs(SavedWindowsV1, changed)
