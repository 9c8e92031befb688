"""The numbers a reading is computed with (a profile point's and a site override's scale,
offset and valid range): finite, and a scale other than 0. `.nan`, `.inf` and `0` are YAML
floats, and the model took them: a hydrogen detector flashed with `scale: 0` read 0 %LEL at
60 %LEL (no alarm, quality good), a NaN bound made every comparison false (the config audit
of 7 Dec 2026)."""

from __future__ import annotations

import math
from typing import Annotated

from gateway.config.section import Check


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number (not .nan or .inf)")
    return value


def _scale(value: float) -> float:
    if not math.isfinite(value) or value == 0:
        raise ValueError("a scale is a finite number other than 0 (0 would read every value as "
                         "0: an alarm that never comes)")
    return value


FiniteFloat = Annotated[float, Check(_finite)]
Scale = Annotated[float, Check(_scale)]


def check_range(low: float | None, high: float | None, *, names: tuple[str, str]) -> None:
    """ValueError if both bounds are given and `low` is above `high` (every reading invalid)."""
    if low is not None and high is not None and low > high:
        raise ValueError(f"{names[0]} {low} is above {names[1]} {high}: every reading would "
                         "be invalid")
