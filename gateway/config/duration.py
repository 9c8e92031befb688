"""The config models' `Duration` type: `5s`, `500ms`, `2m`, `1h` (or a bare number of seconds)
in YAML and JSON, seconds as a float in Python (the parser: gateway.config.duration_parse)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema

from gateway.config.duration_parse import (
    DURATION_PATTERN,
    duration_arg,
    format_duration,
    parse_duration,
)

__all__ = ["DURATION_PATTERN", "Duration", "at_most", "duration_arg", "format_duration",
           "parse_duration"]

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    # issue 14: in the JSON schema a duration is a string with a unit (or bare seconds), so an
    # editor accepts `500ms` and flags `5 seconds`
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": DURATION_PATTERN},
                              {"type": "number", "minimum": 0}],
                    "examples": ["500ms", "5s", "2m", "1h"]}),
]
"""Seconds as a float in Python; `5s`-style text in YAML and JSON."""


def at_most(limit: float) -> AfterValidator:
    """A bound for a `Duration` field whose error says it in the config's own units:
    `Annotated[Duration, at_most(10.0)]` refuses `300m` with "5h is longer than the limit of
    10s" (pydantic's `le` would say "less than or equal to 10")."""

    def check(seconds: float) -> float:
        if seconds > limit:
            raise ValueError(f"{format_duration(seconds)} is longer than the limit of "
                             f"{format_duration(limit)}")
        return seconds

    bound: Callable[[float], float] = check
    return AfterValidator(bound)
