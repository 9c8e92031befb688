"""Compact JSON exactly as pydantic-core writes it (`to_json`, and the models' `model_dump_json`),
without pydantic-core (issue 15): what the gateway's uplink writes at rest — its state, point
catalog and telemetry (gateway.contract.outbound, gateway.contract.telemetry_encoder).

The standard library's C encoder, with pydantic-core's separators (none), UTF-8 left as it is
(`ensure_ascii=False`) and the same string escapes (`\\"`, `\\\\`, `\\b \\f \\n \\r \\t`, the
other control characters as `\\u00xx` in lower case, nothing else); ints as their digits,
any size; keys in insertion order; `Infinity`, `-Infinity`, `NaN` for non-finite floats (what
`to_json` writes; the wire's checks keep them out of a message). Floats are Python's `repr`
(the shortest digits that read back, as pydantic-core's), with the exponent written as
pydantic-core writes it: no leading zero (`1e-6`, not `1e-06`; `1e+16` as it is), and a
decimal exponent of -5 written out (`0.000015`, not `1.5e-05`). tests/uplink/test_jsontext.py
compares the bytes with `to_json`'s with hypothesis over every float and JSON value.

A string with a lone surrogate cannot be written: `UnicodeEncodeError` (a `ValueError`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]

_ENCODER = json.JSONEncoder(ensure_ascii=False, check_circular=False, allow_nan=True,
                            separators=(",", ":"))
_default = _ENCODER.default  # (a TypeError for what JSON does not have)
_chunks: Callable[[object, int], Iterable[str]] | None = None if c_make_encoder is None else \
    c_make_encoder(None, _default, encode_basestring, None, ":", ",", False, False, True)
"""The C encoder `JSONEncoder.encode` makes at each call, made once (issue 15: a poll's
telemetry is a few calls)."""
_join = "".join
_EXPONENT = re.compile(r'"(?:[^"\\]|\\.)*"|(-?)([0-9])(?:\.([0-9]+))?e-0([5-9])')
"""A JSON string (left as it is), or a float whose exponent `repr` writes with a zero."""


def _respell(match: re.Match[str]) -> str:
    sign, lead, fraction, exponent = match.groups()
    if exponent is None:  # a string
        return match.group()
    if exponent == "5":
        return f"{sign}0.0000{lead}{fraction or ''}"
    return f"{sign}{lead}{'.' + fraction if fraction else ''}e-{exponent}"


def json_text(value: object) -> str:
    """`value` as compact JSON text (`to_json(value).decode()`)."""
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is str:
        text: str = encode_basestring(value)
    elif _chunks is not None:
        text = _join(_chunks(value, 0))
    else:  # (an interpreter without the C encoder)
        text = _ENCODER.encode(value)
    if "e-0" in text:
        text = _EXPONENT.sub(_respell, text)
    return text


def to_json(value: object) -> bytes:
    """`value` as compact JSON in UTF-8: the bytes of pydantic-core's `to_json(value)` for the
    JSON types (dict with str keys, list, tuple, str, int, float, bool, None)."""
    return json_text(value).encode()


MAX_FLOAT_TEXTS = 2048
"""Finite non-zero floats whose text `float_texts` keeps (then it starts again)."""
_FLOAT_TEXTS: dict[float, bytes] = {}


def float_texts(values: tuple[float, ...]) -> list[bytes]:
    """Each float's JSON text (`to_json(value)`), the ones seen before from a bounded cache:
    Python's `repr` of a float — the shortest digits that read back — is most of what a
    poll's telemetry costs to write (3.5x pydantic-core's ryu; issue 15), and a site's values
    repeat. Two equal floats have the same text but for 0.0 and -0.0 (equal, written apart),
    which the cache never holds, nor a non-finite value (NaN is not equal to itself)."""
    texts: list[bytes | None] = list(map(_FLOAT_TEXTS.get, values))
    if None in texts:
        missing = [i for i, text in enumerate(texts) if text is None]
        made = to_json([values[i] for i in missing])[1:-1].split(b",")
        if len(_FLOAT_TEXTS) + len(missing) > MAX_FLOAT_TEXTS:
            _FLOAT_TEXTS.clear()
        for i, text in zip(missing, made, strict=True):
            texts[i] = text
            value = values[i]
            if value != 0.0 and value - value == 0.0:  # (finite, not ±0)
                _FLOAT_TEXTS[value] = text
    return texts  # type: ignore[return-value]
