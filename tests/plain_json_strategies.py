"""Hypothesis strategies of JSON data for the readers that vouch for plain data before a
pydantic model would (gateway.plain_json): odd values and valid data with one thing changed."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

TEXT = st.one_of(st.text(max_size=8), st.sampled_from(["\ud800", "a\udfff", "é", ""]))
ODD = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), TEXT,
                 st.lists(st.integers(-3, 3), max_size=2), st.dictionaries(TEXT, st.none(),
                                                                          max_size=2))

EDGES: list[object] = [
    True, False, None, -1, 0, 1, 2, 3, 255, 256, 253, 254, 4096, 4097, 65535, 65536, 1_000_000,
    1_000_001, 2**63 - 1, 2**63, -2**63 - 1, 2**64, -0.0, 0.0, 0.5, 0.999, 1.0, 2.0, 10.0,
    10.000001, 1e300, float("inf"), float("-inf"), float("nan"), "", "a", "A", "_a", "a\n",
    "a b", "é", "\ud800", "a\udfff", "x" * 64, "x" * 65, "x" * 200, "x" * 201, "x" * 253,
    "x" * 254, "5s", "rtu", "tcp", "siren", [], {}, [1], ["a"], ["rtu", "x"],
    ["tcp", "h", 502]]
"""Values at the edge of what a reader checks: bounds and one past them, bools, ints for
floats, inf and nan, lone surrogates, names one character too long or of another pattern."""


@st.composite
def one_off(draw: st.DrawFn, valid: st.SearchStrategy[Any]) -> object:
    """A valid header or file with one thing changed: a value anywhere in it replaced by an
    odd one (a bool, an int for a float, a huge int, a lone surrogate …), a key added or
    dropped."""
    found = draw(valid)
    places: list[tuple[dict[str, Any] | list[Any], Any]] = []
    todo: list[Any] = [found]
    while todo:
        node = todo.pop()
        keys = list(node) if isinstance(node, dict) else range(len(node)) \
            if isinstance(node, list) else []
        for key in keys:
            places.append((node, key))
            todo.append(node[key])
    if not places:
        return found
    node, key = draw(st.sampled_from(places))
    change = draw(st.sampled_from(["value", "add", "drop"]))
    if change == "value":
        node[key] = draw(st.one_of(st.sampled_from(EDGES), st.sampled_from(EDGES), ODD,
                                   st.floats(), st.integers(-2**66, 2**66)))
    elif change == "add" and isinstance(node, dict):
        node[draw(TEXT)] = draw(ODD)
    elif change == "drop" and isinstance(node, dict):
        del node[key]
    return found




def every_one_off(found: object) -> Iterator[object]:
    """`found` (valid JSON data) with one thing changed, every way: each value anywhere in it
    replaced by each of EDGES, each key dropped, a key added to each mapping."""
    paths: list[tuple[Any, ...]] = []
    todo: list[tuple[tuple[Any, ...], Any]] = [((), found)]
    while todo:
        path, node = todo.pop()
        keys = list(node) if isinstance(node, dict) else range(len(node)) \
            if isinstance(node, list) else []
        for key in keys:
            paths.append((*path, key))
            todo.append(((*path, key), node[key]))
    for path in paths:
        for edge in [*EDGES, "drop", "add"]:
            changed = copy.deepcopy(found)
            at: Any = changed
            for key in path[:-1]:
                at = at[key]
            if edge == "drop" and isinstance(at, dict):
                del at[path[-1]]
            elif edge == "add" and isinstance(at, dict):
                at["other"] = 1
            else:
                at[path[-1]] = copy.deepcopy(edge)
            yield changed


def json_of(data: bytes) -> object:
    """The JSON `data` holds (None: none)."""
    try:
        return json.loads(data)
    except ValueError:
        return None
