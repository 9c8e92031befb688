"""The pydantic models of the saved rate windows' headers (gateway.rules.warm_file), as they
were: what `gateway.rules.warm_header` reads a header it cannot vouch for with, so that such a
file is refused with these models' own error. A gateway reading its own files never imports
this module (issue 15)."""

from __future__ import annotations

from typing import Literal

from gateway.strict import StrictModel


class SavedPointV1(StrictModel):
    source: str
    age_ms: list[int]
    value: list[float]


class SavedWindowsV1(StrictModel):
    version: Literal[1]
    saved_ns: int
    points: dict[str, SavedPointV1]


class SavedRuns(StrictModel):
    source: str
    runs: list[int]


class SavedHeader(StrictModel):
    version: Literal[2]
    saved_ns: int
    saved_mono: float | None = None
    boot_id: str | None = None
    points: dict[str, SavedRuns]


class SavedHeaderV3(StrictModel):
    version: Literal[3]
    saved_ns: int
    saved_mono: float | None = None
    boot_id: str | None = None
    synced: bool
    points: dict[str, SavedRuns]
