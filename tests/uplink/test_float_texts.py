"""The telemetry encoder's cache of float texts (gateway.contract.jsontext.float_texts): every
float's text is what `to_json` writes for it, whatever the cache held before — 0.0 and -0.0
(equal, written apart), NaN and the infinities (never cached), values seen before, and past the
cache's bound."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import to_json as pydantic_to_json

from gateway.contract import jsontext
from gateway.contract.jsontext import MAX_FLOAT_TEXTS, float_texts, to_json

FLOATS = st.floats(allow_nan=True, allow_infinity=True)
"""Every float, non-finite ones included (what `to_json` writes for them, the cache writes)."""


def _expected(values: tuple[float, ...]) -> list[bytes]:
    return [to_json(v) for v in values]


@settings(max_examples=300)
@given(st.lists(st.lists(st.one_of(FLOATS, st.sampled_from([0.0, -0.0, 23.45, 1e-5, 1e16])),
                         max_size=60), max_size=8))
def test_each_float_reads_as_to_json_writes_it_whatever_was_cached(
        calls: list[list[float]]) -> None:
    for values in calls:
        got = float_texts(tuple(values))
        assert got == _expected(tuple(values))
        assert got == [pydantic_to_json(v) for v in values]


def test_zero_and_minus_zero_stay_apart_and_non_finite_values_are_not_kept() -> None:
    jsontext._FLOAT_TEXTS.clear()
    assert float_texts((0.0, -0.0, 0.0)) == [b"0.0", b"-0.0", b"0.0"]
    assert float_texts((-0.0, 0.0)) == [b"-0.0", b"0.0"]
    nan, inf = math.nan, math.inf
    assert float_texts((nan, inf, -inf, nan)) == [b"NaN", b"Infinity", b"-Infinity", b"NaN"]
    assert not jsontext._FLOAT_TEXTS  # nothing of these kept


def test_the_cache_is_bounded_and_starts_again_when_full() -> None:
    jsontext._FLOAT_TEXTS.clear()
    values = tuple(i / 100 + 0.001 for i in range(MAX_FLOAT_TEXTS + 500))
    assert float_texts(values[:MAX_FLOAT_TEXTS]) == _expected(values[:MAX_FLOAT_TEXTS])
    assert len(jsontext._FLOAT_TEXTS) == MAX_FLOAT_TEXTS
    assert float_texts(values[MAX_FLOAT_TEXTS:]) == _expected(values[MAX_FLOAT_TEXTS:])
    assert len(jsontext._FLOAT_TEXTS) == 500
    assert float_texts(values[:10]) == _expected(values[:10])  # again, from to_json
