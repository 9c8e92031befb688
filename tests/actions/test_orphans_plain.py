"""A pending coil release read without pydantic (gateway.actions.orphans `_read`) is what the
pydantic model it replaced read — the same release, field for field and type for type, for
every one the model took; the same refusal (where, reason, how many) for every one it refused
— on releases as the gateway writes them, near misses (one value anywhere changed, a key added
or dropped) and whatever JSON random bytes hold. The model is the original, moved verbatim to
gateway.actions.orphan_models (the reader's fallback); `_original` is the loop's body it was
read with."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.actions import orphans
from gateway.actions.orphan_models import _Saved
from gateway.actions.orphans import Coil, Driven, Orphan, encode
from gateway.config.outputs import Output
from gateway.config.section import model_message, validator
from tests.plain_json_strategies import ODD, every_one_off, json_of, one_off


def _original(item: object) -> Orphan | str:
    """What `decode` made of one release before (its loop's body, verbatim but for the
    returns)."""
    try:
        saved = _Saved.model_validate(item)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the release"
        reason = model_message(first)
        return f"{where}: {reason} ({exc.error_count()} errors)"
    coil = Coil(saved.line, saved.unit, saved.address)
    return Orphan(Driven(saved.output, coil, saved.bus, saved.rooms), saved.version,
                  saved.tries, saved.error)


def _seen(read: Orphan | str) -> str:
    """Everything a release holds, types included (`repr`: 1 is not True, nor 1.0)."""
    if isinstance(read, str):
        return read
    return repr((read.driven, read.version, read.tries, read.error))


_ID = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,5}\Z")
_NAME = st.from_regex(r"\A[a-z][a-z0-9_]{0,5}\Z")
_DURATION = st.one_of(st.floats(0, 3600), st.integers(0, 3600), st.sampled_from(["5s", "2m"]))


def _written(address: int, output: dict[str, Any], line: tuple[object, ...], unit: int,
             rooms: tuple[str, ...], version: int, tries: int, error: str | None) -> Any:
    made = validator(Output).validate_python(output)
    orphan = Orphan(Driven(made, Coil(line, unit, address), "rs485", rooms), version, tries,
                    error)
    return json.loads(encode([orphan]))["releases"][0]


_OUTPUT = st.fixed_dictionaries(
    {"id": _ID, "role": st.sampled_from(["siren", "exhaust_fan", "other"]), "device": _ID,
     "point": _NAME},
    optional={"rooms": st.lists(_ID, max_size=3), "on_value": st.booleans(),
              "verify": st.booleans(), "backoff": st.fixed_dictionaries(
                  {}, optional={"initial": _DURATION, "max": _DURATION,
                                "multiplier": st.one_of(st.floats(1, 10), st.integers(1, 10))})})
_LINE = st.one_of(st.tuples(st.just("rtu"), st.text(min_size=1, max_size=12)),
                  st.tuples(st.just("tcp"), st.text(min_size=1, max_size=12),
                            st.integers(1, 65535)))
_WRITTEN = st.builds(_written, st.integers(0, 65535), _OUTPUT, _LINE, st.integers(0, 255),
                     st.lists(_ID, max_size=3).map(tuple), st.integers(0, 2**40),
                     st.integers(0, 1_000_000), st.one_of(st.none(), st.text(max_size=250)))


@settings(max_examples=500, deadline=None)
@given(st.one_of(_WRITTEN, one_off(_WRITTEN), one_off(_WRITTEN), one_off(_WRITTEN), ODD,
                 st.binary(max_size=40).map(json_of)))
@example({"output": {"id": "f", "role": "siren", "device": "d", "point": "p", "rooms": [],
                     "on_value": True, "verify": 1, "backoff": {
                         "initial": 1.0, "multiplier": 2.0, "max": 5.0}},
          "bus": "b", "line": ["rtu", "/dev/x"], "unit": True, "address": 1, "rooms": [],
          "version": 1, "tries": 0, "error": None})
def test_a_release_reads_as_its_model_read_it(item: object) -> None:
    assert _seen(orphans._read(item)) == _seen(_original(item))


def test_a_written_release_is_read_without_its_model() -> None:
    item = _written(3, {"id": "fan-1", "role": "exhaust_fan", "device": "do-1",
                        "point": "do4"}, ("tcp", "10.0.0.5", 502), 1, ("batt",), 4, 2, "x")
    assert orphans._plain(item) is not None
    assert orphans._plain({**item, "unit": True}) is None


@settings(max_examples=25, deadline=None)
@given(_WRITTEN)
def test_every_near_miss_of_a_release_reads_as_its_model_read_it(item: object) -> None:
    """Each value of a written release replaced by each value at the edge of a check, each
    key dropped, one added."""
    for changed in every_one_off(item):
        assert _seen(orphans._read(changed)) == _seen(_original(changed)), changed
