"""The config models' `Duration` type: `5s`, `500ms`, `2m`, `1h` (or a bare number of seconds)
in YAML and JSON, seconds as a float in Python (the parser: gateway.config.duration_parse)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

from gateway.config.duration_parse import (
    DURATION_PATTERN,
    duration_arg,
    format_duration,
    parse_duration,
)

__all__ = ["DURATION_PATTERN", "Duration", "duration_arg", "format_duration", "parse_duration"]

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
