"""The config models' `Duration` type: `5s`, `500ms`, `2m`, `1h` (or a bare number of seconds)
in YAML and JSON, seconds as a float in Python (the parser: gateway.config.duration_parse).

No pydantic at import (issue 15): `Duration` and `at_most` are `Annotated` metadata whose
`__get_pydantic_core_schema__` builds, when pydantic builds a validator or a schema, exactly
what pydantic's `BeforeValidator(parse_duration)`, `PlainSerializer(format_duration,
when_used="json")`, `WithJsonSchema(...)` and `AfterValidator(check)` built — so a config
section written as a plain dataclass (gateway.config.section) can use them in a module that
a running gateway imports without pydantic. pydantic_core is imported by those methods only,
i.e. only by a process that validates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from gateway.config.duration_parse import (
    DURATION_PATTERN,
    duration_arg,
    format_duration,
    parse_duration,
)
from gateway.records import dataclass

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic_core import CoreSchema

__all__ = ["DURATION_PATTERN", "Duration", "at_most", "duration_arg", "format_duration",
           "parse_duration"]


def duration_json_schema() -> dict[str, Any]:
    """issue 14: in the JSON schema a duration is a string with a unit (or bare seconds), so an
    editor accepts `500ms` and flags `5 seconds` (a new dict each time: schemas are edited)."""
    return {"anyOf": [{"type": "string", "pattern": DURATION_PATTERN},
                      {"type": "number", "minimum": 0}],
            "examples": ["500ms", "5s", "2m", "1h"]}


@dataclass(frozen=True, slots=True)
class DurationText:
    """A float field read with `parse_duration`, written to JSON with `format_duration`."""

    def to_json(self, seconds: float) -> str:
        """What pydantic writes for the field in JSON (gateway.rules.warm writes it so too)."""
        return format_duration(seconds)

    def __get_pydantic_core_schema__(self, source: Any,
                                     handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic_core import core_schema

        text = core_schema.plain_serializer_function_ser_schema(
            self.to_json, return_schema=core_schema.str_schema(), when_used="json")
        return core_schema.no_info_before_validator_function(parse_duration, handler(source),
                                                             serialization=text)

    def __get_pydantic_json_schema__(self, schema: CoreSchema,
                                     handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return duration_json_schema()


Duration = Annotated[float, DurationText()]
"""Seconds as a float in Python; `5s`-style text in YAML and JSON."""


@dataclass(frozen=True, slots=True)
class AtMost:
    """A `Duration`'s upper bound, refused in the config's own units (see `at_most`)."""

    limit: float

    def check(self, seconds: float) -> float:
        if seconds > self.limit:
            raise ValueError(f"{format_duration(seconds)} is longer than the limit of "
                             f"{format_duration(self.limit)}")
        return seconds

    def __get_pydantic_core_schema__(self, source: Any,
                                     handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(self.check, handler(source))


def at_most(limit: float) -> AtMost:
    """A bound for a `Duration` field whose error says it in the config's own units:
    `Annotated[Duration, at_most(10.0)]` refuses `300m` with "5h is longer than the limit of
    10s" (pydantic's `le` would say "less than or equal to 10")."""
    return AtMost(limit)
