"""Signed live drills: an evacuation drill (sirens, strobes, fans and charge inhibits driven for
real) started over the control socket is signed by an operator key when the gateway does not
trust its local users to change things unsigned (`flashing.allow_local_unsigned: false`).

The socket's file mode lets root and the `roomwarden` group in; with that setting a member of
the group may no longer apply a config unsigned, and so may no longer sound an evacuation
either. `roomwarden drill --live FILE --evacuation --key KEY` signs the start: an Ed25519
signature (the keys of `roomwarden keys new`) over

    b"roomwarden/drill/v1\\n" + UTF-8 of json.dumps(fields, sort_keys=True,
                                                    separators=(",", ":"), ensure_ascii=False)

with `fields` = action `drill_start`, the drill file's SHA-256, its name, `evacuation`, the
gateway's id and its site (a gateway id is unique within its site only, and an operator key is
trusted at every site: a start signed for `gw-01` at one site must not sound `gw-01`'s sirens
at another), the key's id, a fresh id, issue time and expiry (at most `MAX_COMMAND_LIFETIME_S`
later) — its own prefix, so no signed config or alarm command can pass for one. A start
without `site` (signed by an older roomwarden) is refused, saying to update it. The gateway
takes a signature only from a key under `operators.keys` that `may` `drill`, for itself (its
id and site), in its time, once (the operator commands' replay memory, on disk), and
journals the drill as run by the key's owner, as the user the kernel names. A silent drill
(outputs held) needs no signature; a signed one is checked all the same. Stopping a drill never
needs one."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import TYPE_CHECKING, Any, Final

from gateway.contract.commands import MAX_COMMAND_LIFETIME_S
from gateway.flashing.keys import key_id
from gateway.operator.inbox import CLOCK_SKEW_S, past_expiry
from gateway.operator.refusals import Refused
from gateway.operator.replay import ReplayMemoryError
from gateway.operator.signing import verify

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway.operator.replay import ReplayMemory
    from gateway.operator.settings import OperatorSettings

PREFIX: Final = b"roomwarden/drill/v1\n"
ACTION: Final = "drill_start"
LIFETIME_S = 120.0
_FIELDS: Final = {"action": str, "file_sha256": str, "name": str, "evacuation": bool,
                  "gateway": str, "site": str, "key_id": str, "id": str, "ts": int, "expires": int,
                  "signature": str}


class DrillRefused(Exception):
    """A signed drill start the gateway does not take (the message says why)."""


def signing_bytes(fields: dict[str, Any]) -> bytes:
    """What the signature covers: every field but `signature` (see the module docstring)."""
    unsigned = {k: v for k, v in fields.items() if k != "signature"}
    return PREFIX + json.dumps(unsigned, sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False).encode("utf-8")


def file_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sign_start(text: str, name: str, evacuation: bool, *, gateway: str, site: str,
               private_key: Ed25519PrivateKey, now_ns: int | None = None,
               lifetime_s: float = LIFETIME_S) -> dict[str, Any]:
    """The `signed` field of a drill start request for the drill file `text`, for `gateway`
    at `site`."""
    now = time.time_ns() if now_ns is None else now_ns
    fields: dict[str, Any] = {
        "action": ACTION, "file_sha256": file_digest(text), "name": name,
        "evacuation": evacuation, "gateway": gateway, "site": site,
        "key_id": key_id(private_key.public_key()), "id": f"drill-{uuid.uuid4().hex[:16]}",
        "ts": now, "expires": now + int(lifetime_s * 1e9)}
    signature = private_key.sign(signing_bytes(fields))
    return {**fields, "signature": base64.b64encode(signature).decode("ascii")}


def check_start(signed: object, *, text: str, name: str, evacuation: bool, gateway: str,
                site: str, operators: OperatorSettings, replay: ReplayMemory | None,
                now_ns: int) -> str:
    """The owner of the key that signed this start (for the journal); DrillRefused saying why
    it is not taken."""
    if isinstance(signed, dict) and set(signed) == set(_FIELDS) - {"site"}:
        raise DrillRefused("the start names no site: it was signed by an older roomwarden "
                           "that bound it to the gateway id only, which other sites may share; "
                           "update the signing tool (roomwarden drill --live … --key KEY) and "
                           "sign it anew")
    if not isinstance(signed, dict) or set(signed) != set(_FIELDS) or not all(
            type(signed[k]) is kind for k, kind in _FIELDS.items()):
        raise DrillRefused("signed: the fields " + ", ".join(_FIELDS) + " (from "
                           "`roomwarden drill --live … --key KEY`)")
    wanted = {"action": ACTION, "file_sha256": file_digest(text), "name": name,
              "evacuation": evacuation, "gateway": gateway, "site": site}
    for field, value in wanted.items():
        if signed[field] != value:
            raise DrillRefused(f"the signature is for another {field.replace('_', ' ')} "
                               f"({str(signed[field])[:80]!r}, not {str(value)[:80]!r})")
    operator = operators.find(signed["key_id"])
    if operator is None:
        raise DrillRefused(f"key {signed['key_id'][:40]} is not one of this gateway's "
                           "operators.keys")
    if "drill" not in operator.may:
        raise DrillRefused(f"key {signed['key_id']} ({operator.owner}) may not run drills; it "
                           f"may {', '.join(operator.may)}")
    try:
        verify(operator.trusted, signed["signature"], signing_bytes(signed), "the start")
    except Refused as exc:
        raise DrillRefused(exc.message) from None
    if not 0 <= signed["expires"] - signed["ts"] <= MAX_COMMAND_LIFETIME_S * 1e9:
        raise DrillRefused(f"expires must be after ts by at most {MAX_COMMAND_LIFETIME_S} s")
    if signed["ts"] > now_ns + CLOCK_SKEW_S * 1e9 or past_expiry(signed["expires"],
                                                                 now_ns) is not None:
        raise DrillRefused("the signature is not valid now by this gateway's clock (expired, "
                           "or issued in its future): sign the start anew, check the clocks")
    if replay is None:
        raise DrillRefused("this gateway keeps no replay memory")
    try:
        refused = replay.first_use(signed["key_id"], signed["id"], signed["ts"],
                                   signed["expires"], what="start")
    except ReplayMemoryError as exc:
        raise DrillRefused(str(exc)) from None
    if refused is not None:
        raise DrillRefused(refused)
    return operator.owner


def check_still_valid(signed: dict[str, Any], *, now_ns: int, waited_s: float) -> None:
    """DrillRefused if a start `check_start` took has expired since (by the same rule): its
    id's write waited for a slow or locked disk, or its file took long to read. Nothing is
    started then, and its id stays used (the start replayed is refused as one)."""
    ago = past_expiry(signed["expires"], now_ns)
    if ago is not None:
        raise DrillRefused(f"the signature expired {ago:.1f} s ago, while the start waited "
                           f"{waited_s:.1f} s for the replay memory (a slow or locked disk): "
                           "nothing was started, and its id stays used; sign the start anew")
