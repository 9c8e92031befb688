"""The header of a saved rate-window file (gateway.rules.warm_file) read without pydantic: a
header as the gateway writes it is vouched for here (gateway.plain_json) and read as plain
values; any other is handed to its pydantic model (gateway.rules.warm_models, imported then),
which refuses it with its own error, or reads it as it always did. Either way the same
values come out, and the same errors (tests/rules/test_warm_header.py, hypothesis against the
models kept verbatim there). A gateway restoring its own file imports no pydantic for it
(issue 15)."""

from __future__ import annotations

from typing import Any

from gateway.plain_json import is_float, is_int, is_text
from gateway.records import dataclass

_V2_KEYS = frozenset({"version", "saved_ns", "saved_mono", "boot_id", "points"})
_V2_NEEDED = frozenset({"version", "saved_ns", "points"})
_V3_KEYS = _V2_KEYS | {"synced"}
_V3_NEEDED = _V2_NEEDED | {"synced"}
_V1_KEYS = frozenset({"version", "saved_ns", "points"})
_RUNS_KEYS = frozenset({"source", "runs"})
_V1_POINT_KEYS = frozenset({"source", "age_ms", "value"})


@dataclass(frozen=True, slots=True)
class Header:
    """A version-2 or -3 header: `points` is point id → (fingerprint, run lengths);
    `synced` None in version 2 (not known)."""

    saved_ns: int
    saved_mono: float | None
    boot_id: str | None
    points: dict[str, tuple[str, list[int]]]
    synced: bool | None = None


@dataclass(frozen=True, slots=True)
class HeaderV1:
    """A version-1 file: `points` is point id → (fingerprint, ages in ms, values)."""

    saved_ns: int
    points: dict[str, tuple[str, list[int], list[float]]]


def header(found: Any, version: int = 2) -> Header:
    """The header `found` (JSON data) of a version-`version` file (2 or 3: the file's magic
    line says which), or the model's ValidationError."""
    if _is_header(found, version):
        return Header(found["saved_ns"], found.get("saved_mono"), found.get("boot_id"),
                      {point_id: (record["source"], record["runs"])
                       for point_id, record in found["points"].items()}, found.get("synced"))
    from gateway.rules.warm_models import SavedHeader, SavedHeaderV3

    model: SavedHeader | SavedHeaderV3 = (SavedHeader if version == 2 else SavedHeaderV3
                                          ).model_validate(found)
    return Header(model.saved_ns, model.saved_mono, model.boot_id,
                  {point_id: (record.source, record.runs)
                   for point_id, record in model.points.items()},
                  getattr(model, "synced", None))


def header_v1(found: Any) -> HeaderV1:
    """The version-1 file `found` (JSON data), or the model's ValidationError."""
    if _is_v1(found):
        return HeaderV1(found["saved_ns"], {
            point_id: (record["source"], record["age_ms"], record["value"])
            for point_id, record in found["points"].items()})
    from gateway.rules.warm_models import SavedWindowsV1

    model = SavedWindowsV1.model_validate(found)
    return HeaderV1(model.saved_ns, {point_id: (record.source, record.age_ms, record.value)
                                     for point_id, record in model.points.items()})


def _is_header(found: Any, version: int = 2) -> bool:
    needed, keys = (_V2_NEEDED, _V2_KEYS) if version == 2 else (_V3_NEEDED, _V3_KEYS)
    if not (type(found) is dict and needed <= found.keys() <= keys
            and is_int(found["version"], version, version) and is_int(found["saved_ns"])
            and (found.get("saved_mono") is None or is_float(found["saved_mono"]))
            and (version == 2 or type(found["synced"]) is bool)):
        return False
    boot_id = found.get("boot_id")
    points = found["points"]
    return ((boot_id is None or is_text(boot_id)) and type(points) is dict
            and all(is_text(point_id) and type(record) is dict
                    and record.keys() == _RUNS_KEYS and is_text(record["source"])
                    and type(record["runs"]) is list and all(map(is_int, record["runs"]))
                    for point_id, record in points.items()))


def _is_v1(found: Any) -> bool:
    if not (type(found) is dict and found.keys() == _V1_KEYS
            and is_int(found["version"], 1, 1) and is_int(found["saved_ns"])
            and type(found["points"]) is dict):
        return False
    return all(is_text(point_id) and type(record) is dict
               and record.keys() == _V1_POINT_KEYS and is_text(record["source"])
               and type(record["age_ms"]) is list and all(map(is_int, record["age_ms"]))
               and type(record["value"]) is list and all(map(is_float, record["value"]))
               for point_id, record in found["points"].items())
