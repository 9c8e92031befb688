"""The message a gateway receives at rest, without pydantic (issue 15): the ingest's delivery
acknowledgement (`DeliveryAck`, on `<root>/<site>/<gateway>/ack`, several a second with
`delivery: ingest`) read into a plain frozen `Watermark` by `read_ack`.

`DeliveryAck` stays the wire's single source of truth — the ingest builds it, the docs and the
tests validate with it — but decoding it through `decode` built its validator, and the first
validator a process builds costs ~1.35 MiB of pydantic's schema machinery: the last one a
gateway publishing to an acknowledging ingest still built (gateway.contract.outbound has what
it produces). `read_ack` refuses exactly what `decode` refuses and reads what it accepts as the
same values, with `ContractError` naming why:

- the same bounds: the topic parsed as `Topic.parse` does (and it must be an `ack` topic), the
  payload bytes at most MAX_PAYLOAD_BYTES, strict UTF-8;
- the same JSON as pydantic-core's parser (jiter, what `validate_json` runs) reads: through
  `json.loads` (its first `from_json` would cost a gateway 384 KiB of pydantic-core's code paged
  in), with what jiter refuses and json.loads takes refused too — a number whose integer part
  has more than 4,300 digits (json.loads refuses such ints only), and, in a value a
  repeated key overwrote (the last one wins, as in jiter; the values that are read are flat
  ints and ids), a lone surrogate escaped in any string or key, or a value inside more than
  200 arrays and objects; NaN and infinities are parsed, then refused as the fields' values;
- the model's fields checked by hand (gateway.contract.base `ID`, `check_int`): a JSON object
  with no other key; `v`, when present, equal to 1 (the Literal's lookup takes `true` and
  `1.0` too); `site`, `gateway` ids; `ts` ns; `stream` in [1, 2**63); `upto`, `highest` in
  [0, 2**63), exactly ints (not bools, not floats); `highest` not below `upto`; the payload's
  site and gateway the topic's.

tests/uplink/test_inbound.py shows it with hypothesis against `decode`, on acknowledgements and
near misses of them; tests/ops/test_producer_builds_no_validator.py that a gateway receiving
them builds no validator.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.contract.channels import Channel, Topic
from gateway.contract.vocab import (
    DEFAULT_ROOT,
    ID,
    MAX_PAYLOAD_BYTES,
    NS_END,
    ContractError,
    check_int,
)
from gateway.records import dataclass

ACK_FIELDS = ("v", "site", "gateway", "ts", "stream", "upto", "highest")
"""`DeliveryAck`'s fields, in its order (tests/uplink/test_inbound.py checks it)."""
_REQUIRED = frozenset(ACK_FIELDS[1:])
JITER_MAX_DIGITS = 4300
"""Digits of a number's integer part beyond which pydantic-core's JSON parser refuses it."""
JITER_MAX_DEPTH = 200
"""Arrays and objects that may enclose a value in pydantic-core's JSON parser."""


@dataclass(frozen=True, slots=True)
class Watermark:
    """`DeliveryAck` without the model: every `dseq` ≤ `upto` of `stream` is stored (or
    dead-lettered); `highest` is the highest stored so far."""

    site: str
    gateway: str
    ts: int
    stream: int
    upto: int
    highest: int


def read_ack(topic: str | Topic, payload: bytes, *, root: str = DEFAULT_ROOT) -> Watermark:
    """The watermark an `ack` topic and payload carry; ContractError (only) if either is bad —
    exactly when `decode(topic, payload, root=root)` refuses them."""
    try:
        return _read(topic, payload, root)
    except ContractError:
        raise
    except Exception as exc:  # the contract promises ContractError only
        raise ContractError(f"undecodable payload: {type(exc).__name__}: {exc}") from None


def _read(topic: str | Topic, payload: bytes, root: str) -> Watermark:
    parsed = topic if isinstance(topic, Topic) else Topic.parse(topic, root)
    if parsed.channel is not Channel.ACK:
        raise ContractError(f"{parsed.channel.value} is not the ack channel")
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise ContractError("payload must be bytes")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractError(f"payload is not UTF-8: {exc.reason} at byte {exc.start}"
                            ) from None
    try:
        fields = json.loads(text, object_pairs_hook=_object, parse_float=_float,
                            parse_int=_int)
    except (ValueError, RecursionError) as exc:  # (a JSONDecodeError is a ValueError)
        raise ContractError(f"ack: payload: Invalid JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise ContractError("ack: payload: not a JSON object")
    unknown = fields.keys() - ACK_FIELDS
    if unknown:
        raise ContractError(f"ack: unknown field {min(unknown)!r:.80}")
    missing = _REQUIRED - fields.keys()
    if missing:
        raise ContractError(f"ack: {min(missing)}: missing")
    if "v" in fields:
        v = fields["v"]
        if not (v is True or (type(v) in (int, float) and v == 1)):
            raise ContractError(f"ack: v: {v!r:.40} is not 1")
    ack = Watermark(ID.check("ack: site", fields["site"]),
                    ID.check("ack: gateway", fields["gateway"]),
                    check_int("ack: ts", fields["ts"], 0, NS_END),
                    check_int("ack: stream", fields["stream"], 1, NS_END),
                    check_int("ack: upto", fields["upto"], 0, NS_END),
                    check_int("ack: highest", fields["highest"], 0, NS_END))
    if ack.highest < ack.upto:
        raise ContractError("ack: highest must not be below upto")
    if (ack.site, ack.gateway) != (parsed.site, parsed.gateway):
        raise ContractError(f"payload names {ack.site}/{ack.gateway} but the topic "
                            f"{parsed.site}/{parsed.gateway}")
    if isinstance(fields, _Overwritten) and not _fits(fields, JITER_MAX_DEPTH):
        raise ContractError("ack: payload: Invalid JSON: a lone surrogate, or nested deeper "
                            f"than {JITER_MAX_DEPTH}, in a value a repeated key overwrote")
    return ack


class _Overwritten(dict[str, Any]):
    """A JSON object with a repeated key: the values the last ones overwrote are kept, for
    `_fits` (jiter refuses them at parsing)."""

    overwritten: list[Any]


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    kept = _Overwritten(obj)
    last = {key: i for i, (key, _) in enumerate(pairs)}
    kept.overwritten = [value for i, (key, value) in enumerate(pairs) if last[key] != i]
    return kept


def _int(text: str) -> int:
    return int(_number(text))


def _float(text: str) -> float:
    return float(_number(text))


def _number(text: str) -> str:
    """A JSON number's text, unless its integer part is longer than jiter reads (json.loads
    limits ints only, and by the interpreter's setting)."""
    whole = text.lstrip("-").partition(".")[0].partition("e")[0].partition("E")[0]
    if len(whole) > JITER_MAX_DIGITS:
        raise ValueError(f"number out of range: {len(whole)} digits")
    return text


def _fits(value: object, room: int) -> bool:
    """Whether jiter parses `value` (at a depth leaving `room` more arrays and objects around
    what is inside it): no lone surrogate in a string or key, not nested too deep."""
    if type(value) is str:
        return value.isascii() or _encodable(value)
    if type(value) is list:
        return not value or (room > 0 and all(_fits(v, room - 1) for v in value))
    if isinstance(value, dict):
        inner = [*value.values(), *getattr(value, "overwritten", ())]
        return all(_fits(key, room) for key in value) and (
            not inner or (room > 0 and all(_fits(v, room - 1) for v in inner)))
    return True


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
