"""Checks of JSON data (what `json.loads` gives) that a pydantic model would accept unchanged:
a reader of the gateway's own files vouches with them for the data it wrote, and hands
anything else to the file's pydantic model, which then refuses it with its own error or reads
it as it always did (gateway.rules.warm_header, gateway.actions.orphans; issue 15). Each check
says yes only where the model's validator returns the very value it was given: an exact type
(no bool for an int, no int for a float), an int within 64 bits, a string that is text (no
lone surrogate, which pydantic-core refuses)."""

from __future__ import annotations

import re

INT64 = 2**63


def is_int(value: object, low: int = -INT64, high: int = INT64 - 1) -> bool:
    """An int (not a bool) within [low, high]."""
    return type(value) is int and low <= value <= high


def is_float(value: object) -> bool:
    """A float (pydantic's `float` takes it as it is, inf and nan too)."""
    return type(value) is float


def is_text(value: object, min_length: int = 0, max_length: int | None = None) -> bool:
    """A str of min_length..max_length characters, all of them text."""
    if type(value) is not str or len(value) < min_length \
            or (max_length is not None and len(value) > max_length):
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def matches(value: object, pattern: re.Pattern[str], max_length: int) -> bool:
    """A str of at most max_length characters that `pattern` matches whole (a pydantic
    `pattern` without its `^…$`: Python's `$` would also match before a final newline)."""
    return (type(value) is str and len(value) <= max_length
            and pattern.fullmatch(value) is not None)
