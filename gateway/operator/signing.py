"""Signed operator commands: signing on the operator's side, signature checks on the gateway's.

Canonical signing bytes (what the Ed25519 signature covers)::

    b"roomwarden/cmd/v1\\n" + UTF-8 of
    json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

where `fields` is every field of the validated command except `signature`, defaults filled in
— the same construction as a signed config (`gateway.flashing.envelope`), with its own prefix
so that a signature over one can never pass for the other. The keys are the flashing keys
(`roomwarden keys new`); the gateway trusts the ones its config lists under `operators.keys`.

Among those fields are the command's target — `gateway`, `site` and `root` (the MQTT topic
root) — so a signature for one gateway is worthless at another: a gateway id is unique within
its site only, and an operator key is trusted at every site. The gateway refuses a signed
command that names no site or root (`wrong_gateway`: signed by an older tool that bound the
gateway id only).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import secrets
import time
from typing import TYPE_CHECKING, Any, Final

from gateway.contract.vocab import ContractError
from gateway.flashing.keys import TrustedKey, key_id
from gateway.operator.refusals import BAD_SIGNATURE, Refused

if TYPE_CHECKING:  # cryptography is imported when a command is signed or verified, pydantic
    # when one is signed (a client's job: a gateway only verifies, issue 15)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from pydantic import TypeAdapter

    from gateway.contract.commands import AlarmCommand

SIGNING_PREFIX: Final = b"roomwarden/cmd/v1\n"


@functools.cache
def _command_adapter() -> TypeAdapter[Any]:
    """The command union's validator, built when a command is first signed (a client's job;
    the gateway only verifies, so it never builds it: issue 15)."""
    from pydantic import TypeAdapter  # (issue 15: pydantic imported when first needed)

    from gateway.contract.commands import Command

    return TypeAdapter(Command)


def signing_bytes(command: AlarmCommand) -> bytes:
    """The canonical bytes the signature covers (see the module docstring)."""
    fields = command.model_dump(mode="json", exclude={"signature"})
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    return SIGNING_PREFIX + text.encode("utf-8")


def sign_command(fields: dict[str, Any], private_key: Ed25519PrivateKey, *, gateway: str,
                 site: str, root: str, lifetime_s: float = 120.0,
                 now_ns: int | None = None) -> AlarmCommand:
    """A signed command from its action's fields (`action` and what it takes) for `gateway`
    at `site` under the topic root `root`: id, issued-at, expiry, target and key id filled in
    unless given. ContractError if a field breaks the contract."""
    now = time.time_ns() if now_ns is None else now_ns
    data = {"id": f"cmd-{secrets.token_hex(8)}", "ts": now,
            "expires": now + int(lifetime_s * 1e9), **fields, "gateway": gateway,
            "site": site, "root": root, "key_id": key_id(private_key.public_key())}
    data.pop("signature", None)
    from pydantic import ValidationError

    from gateway.contract.base import describe_errors

    try:
        unsigned = _command_adapter().validate_json(json.dumps(data, default=_plain))
    except ValidationError as exc:
        raise ContractError(describe_errors(exc, root="command", limit=3)) from None
    signature = base64.b64encode(private_key.sign(signing_bytes(unsigned))).decode("ascii")
    signed: AlarmCommand = unsigned.model_copy(update={"signature": signature})
    return signed


def _plain(value: object) -> Any:
    """Models (e.g. an AlarmRef) as their JSON fields."""
    dump = getattr(value, "model_dump", None)
    if dump is None:
        raise TypeError(f"{type(value).__name__} is not JSON")
    return dump(mode="json")


def check_signature(command: AlarmCommand, key: TrustedKey) -> None:
    """Refused(BAD_SIGNATURE) unless `command.signature` verifies with `key`."""
    verify(key, command.signature or "", signing_bytes(command), "the command")


def verify(key: TrustedKey, text: str, message: bytes, what: str) -> None:
    """Refused(BAD_SIGNATURE) unless `text` is a canonical base64 Ed25519 signature of
    `message` by `key` (`what` was signed: named in the refusal). Commands and signed drill
    starts (gateway.drills.signed) are checked here."""
    from cryptography.exceptions import InvalidSignature

    try:
        signature = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Refused(BAD_SIGNATURE, "the signature is not base64") from None
    if len(signature) != 64 or base64.b64encode(signature).decode("ascii") != text:
        raise Refused(BAD_SIGNATURE, "the signature is not 64 bytes in canonical base64")
    try:
        key.public_key.verify(signature, message)
    except InvalidSignature:
        raise Refused(BAD_SIGNATURE, f"the signature does not verify with key {key.key_id}: "
                                     f"{what} was altered or signed with another key"
                      ) from None
