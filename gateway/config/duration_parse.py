"""Durations written as `5s`, `500ms`, `2m`, `1h` (or a bare number of seconds): the parser,
its inverse and the command line's argparse type, without pydantic (the config models'
`Duration` type is in gateway.config.duration), so a command's `--help` stays cheap."""

from __future__ import annotations

import math
import re

MAX_DURATION_S = 31 * 24 * 3600.0
"""No duration a gateway waits is longer (744h): past it a value is a typo (`300m` for `300ms`
is 5 h, which a field's own bound catches) or a number that was never meant."""

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h)\s*$")


def parse_duration(value: object) -> float:
    """Return seconds for `value`; raise ValueError with a readable reason."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number with a unit, e.g. 5s, 500ms, 2m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if match is None:
            raise ValueError(
                f"{value!r} is not a duration; write a number with a unit: 500ms, 5s, 2m, 1h"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError("a duration is a number with a unit, e.g. 5s, 500ms, 2m")
    if not math.isfinite(seconds):
        raise ValueError("a duration must be a finite number of seconds")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"a duration of {seconds / 3600:.6g} h is longer than any a gateway "
                         f"waits (at most {MAX_DURATION_S / 3600:g} h)")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact text for `seconds` (the inverse of parse_duration)."""
    if seconds and seconds < 1:
        return f"{round(seconds * 1000, 3):g}ms"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(ms|s|min|m|h)\s*$"
"""What an editor's JSON schema accepts as a duration string (the parser's own grammar)."""


def duration_value(text: str) -> float:
    """A command-line duration: the same units as the config files (`--duration 3s`, `--print
    500ms`, `--duration 2m`; a bare number is seconds); ValueError with the reason."""
    try:
        value: object = float(text)
    except ValueError:
        value = text
    return parse_duration(value)


def duration_arg(text: str) -> float:
    """`duration_value` as an argparse `type=` (its error is argparse's)."""
    try:
        return duration_value(text)
    except ValueError as exc:
        import argparse

        raise argparse.ArgumentTypeError(str(exc)) from None
