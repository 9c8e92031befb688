"""The signed `config/set` envelope: signing on the operator's side, verification on the
gateway's.

Canonical signing bytes (what the Ed25519 signature covers)::

    b"roomwarden/config-set/v1\\n" + UTF-8 of
    json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

where `fields` is every field of the validated `ConfigSet` except `signature`, defaults filled
in (`v`, `id`, `ts`, `gateway`, `version`, `sha256`, `author`, `force`, `config`, `key_id`).
The bytes are built from the parsed model, never from the received text, so whitespace, key
order or escapes on the wire do not matter, and an omitted `force` is the same as `false`.

`verify_envelope` refuses anything else with `EnvelopeRejected(code, message)` — and raises
nothing else for any input:

| code              | meaning                                                          |
|-------------------|------------------------------------------------------------------|
| `oversized`       | the payload or the config in it is larger than the gateway takes |
| `malformed`       | not UTF-8 JSON, or breaks the contract (the message names the field) |
| `wrong_gateway`   | addressed to another gateway                                     |
| `digest_mismatch` | `sha256` is not the SHA-256 of `config`                          |
| `unsigned`        | no signature or no key id                                        |
| `untrusted_key`   | signed by a key the gateway does not trust                       |
| `bad_signature`   | the signature does not verify (anything signed was changed)      |

`gateway.flashing.store.ConfigStore.check_fresh` adds `replayed`, `downgrade` and
`version_jump` (gateway.flashing.seen).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from pydantic import ValidationError

from gateway.contract.wire import (
    MAX_CONFIG_BYTES,
    MAX_PAYLOAD_BYTES,
    ConfigSet,
    ContractError,
    describe_errors,
)
from gateway.flashing.keys import TrustedKey, key_id

if TYPE_CHECKING:  # cryptography is imported when an envelope is signed or verified
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SIGNING_PREFIX: Final = b"roomwarden/config-set/v1\n"

OVERSIZED: Final = "oversized"
MALFORMED: Final = "malformed"
WRONG_GATEWAY: Final = "wrong_gateway"
DIGEST_MISMATCH: Final = "digest_mismatch"
UNSIGNED: Final = "unsigned"
UNTRUSTED_KEY: Final = "untrusted_key"
BAD_SIGNATURE: Final = "bad_signature"
REPLAYED: Final = "replayed"
DOWNGRADE: Final = "downgrade"
VERSION_JUMP: Final = "version_jump"
CODES: Final = (OVERSIZED, MALFORMED, WRONG_GATEWAY, DIGEST_MISMATCH, UNSIGNED, UNTRUSTED_KEY,
                BAD_SIGNATURE, REPLAYED, DOWNGRADE, VERSION_JUMP)


class EnvelopeRejected(Exception):
    """A ConfigSet the gateway refuses: `code` (one of CODES) for machines, `message` for
    people. Both go into the `rejected` ConfigStatus."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def signing_bytes(envelope: ConfigSet) -> bytes:
    """The canonical bytes the signature covers (see the module docstring)."""
    fields = envelope.model_dump(mode="json", exclude={"signature"})
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    return SIGNING_PREFIX + text.encode("utf-8")


def envelope_digest(envelope: ConfigSet) -> str:
    """SHA-256 (hex) of the signing bytes: names an envelope for replay detection (the same
    signed content is the same envelope however it is re-encoded or re-signed)."""
    return hashlib.sha256(signing_bytes(envelope)).hexdigest()


def payload_limit(max_bytes: int) -> int:
    """The largest raw payload looked at for a config of at most `max_bytes`: JSON escaping at
    most doubles YAML text (newlines, quotes, backslashes), plus room for the other fields."""
    return min(MAX_PAYLOAD_BYTES, 2 * max_bytes + 16 * 1024)


def sign_config(config_text: str, *, gateway: str, version: int, author: str,
                private_key: Ed25519PrivateKey, force: bool = False,
                request_id: str | None = None, now_ns: int | None = None) -> ConfigSet:
    """A signed ConfigSet for `config_text`. Raises ContractError if a field breaks the
    contract (e.g. an invalid gateway id, a config over MAX_CONFIG_BYTES)."""
    fields: dict[str, Any] = {
        "v": 1,
        "id": request_id or f"flash-{secrets.token_hex(8)}",
        "ts": time.time_ns() if now_ns is None else now_ns,
        "gateway": gateway,
        "version": version,
        "sha256": hashlib.sha256(config_text.encode("utf-8")).hexdigest(),
        "author": author,
        "force": force,
        "config": config_text,
        "key_id": key_id(private_key.public_key()),
    }
    try:
        unsigned = ConfigSet.model_validate(fields)
    except ValidationError as exc:
        raise ContractError(_describe(exc)) from None
    signature = base64.b64encode(private_key.sign(signing_bytes(unsigned))).decode("ascii")
    return unsigned.model_copy(update={"signature": signature})


def verify_envelope(raw: bytes, *, gateway_id: str, trusted: Sequence[TrustedKey],
                    max_bytes: int = MAX_CONFIG_BYTES) -> ConfigSet:
    """The ConfigSet in `raw` if it is for this gateway, intact and signed by a trusted key;
    otherwise EnvelopeRejected (and never any other exception). `max_bytes` is the largest
    config (UTF-8) the gateway accepts. Freshness (replay, downgrade) is the store's check."""
    try:
        return _verify(raw, gateway_id, trusted, max_bytes)
    except EnvelopeRejected:
        raise
    except Exception as exc:  # the promise: EnvelopeRejected only
        raise EnvelopeRejected(MALFORMED, f"undecodable envelope: {type(exc).__name__}"
                               ) from None


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _verify(raw: bytes, gateway_id: str, trusted: Sequence[TrustedKey],
            max_bytes: int) -> ConfigSet:
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise EnvelopeRejected(MALFORMED, "the payload is not bytes")
    raw = bytes(raw)
    limit = payload_limit(max_bytes)
    if len(raw) > limit:
        raise EnvelopeRejected(OVERSIZED, f"payload of {len(raw)} bytes exceeds the limit of "
                                          f"{limit} for configs up to {max_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EnvelopeRejected(MALFORMED, f"not UTF-8 at byte {exc.start}") from None
    try:
        data = json.loads(text, object_pairs_hook=_reject_duplicates,
                          parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise EnvelopeRejected(MALFORMED, f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EnvelopeRejected(MALFORMED, f"a ConfigSet is a JSON object, not "
                                          f"{type(data).__name__}")
    for name, value in data.items():  # (the model's own error on a large nested value
        if isinstance(value, dict | list):  # cost ~0.5 s of a core for 1 MiB of it)
            raise EnvelopeRejected(MALFORMED, f"{name[:64]!r}: a ConfigSet's fields are "
                                              "strings, numbers and booleans, not an "
                                              f"{'object' if isinstance(value, dict) else 'array'}")
    config = data.get("config")
    if isinstance(config, str):
        try:
            size = len(config.encode("utf-8"))
        except UnicodeEncodeError:
            raise EnvelopeRejected(MALFORMED, "config: not valid Unicode text") from None
        if size > max_bytes:
            raise EnvelopeRejected(OVERSIZED, f"config of {size} bytes exceeds this gateway's "
                                              f"limit of {max_bytes}")
    try:
        envelope = ConfigSet.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if errors and all(e["type"] == "digest_mismatch" for e in errors):
            _check_gateway(data.get("gateway"), gateway_id)
            raise EnvelopeRejected(DIGEST_MISMATCH, "sha256 does not match the config "
                                                    "(changed or truncated in transit)"
                                   ) from None
        raise EnvelopeRejected(MALFORMED, _describe(exc)) from None
    _check_gateway(envelope.gateway, gateway_id)
    if envelope.signature is None or envelope.key_id is None:
        missing = "signature" if envelope.signature is None else "key_id"
        raise EnvelopeRejected(UNSIGNED, f"the envelope has no {missing}; this gateway takes "
                                         "only signed configs")
    candidates = [k for k in trusted if k.key_id == envelope.key_id]
    if not candidates:
        raise EnvelopeRejected(UNTRUSTED_KEY, f"key {envelope.key_id} is not among this "
                                              f"gateway's {len(trusted)} trusted key(s)")
    try:
        signature = base64.b64decode(envelope.signature, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeRejected(BAD_SIGNATURE, "signature is not base64") from None
    if len(signature) != 64:
        raise EnvelopeRejected(BAD_SIGNATURE, f"signature is {len(signature)} bytes; an "
                                              "Ed25519 signature is 64")
    if base64.b64encode(signature).decode("ascii") != envelope.signature:
        raise EnvelopeRejected(BAD_SIGNATURE, "signature is not canonical base64")
    from cryptography.exceptions import InvalidSignature

    message = signing_bytes(envelope)
    for key in candidates:
        try:
            key.public_key.verify(signature, message)
        except InvalidSignature:
            continue
        return envelope
    raise EnvelopeRejected(BAD_SIGNATURE, f"the signature does not verify with key "
                                          f"{envelope.key_id}: the envelope was altered or "
                                          "signed with another key")


def _check_gateway(named: object, gateway_id: str) -> None:
    if named != gateway_id:
        shown = named if isinstance(named, str) else repr(named)
        raise EnvelopeRejected(WRONG_GATEWAY, f"the config is for gateway {shown[:64]!s}, "
                                              f"not {gateway_id}")


def _describe(exc: ValidationError) -> str:
    return describe_errors(exc, root="envelope", limit=3)
