"""A `cmd` message's answer (`CommandResult`): made from a refusal or an outcome, and the id of
a payload that broke the contract, recovered where it can be, so even that is answered (the
command inbox's, gateway.operator.inbox)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from gateway.contract.vocab import REQUEST_ID_PATTERN
from gateway.operator import refusals as r

if TYPE_CHECKING:
    from gateway.contract.commands import CommandResult

_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)


def recover_id(payload: bytes) -> str | None:
    """The `id` of a payload that broke the contract, if it still has a readable one."""
    try:
        data = json.loads(payload)
    except Exception:  # not JSON, not UTF-8, nested too deep …
        return None
    cid = data.get("id") if isinstance(data, dict) else None
    if isinstance(cid, str) and _REQUEST_ID.fullmatch(cid):
        return cid
    return None


def command_result(site: str, gateway: str, cid: str, ts: int, refusal: r.Refused | None, *,
                   actor: str | None = None, changed: int | None = None,
                   note: str | None = None) -> CommandResult:
    """The answer: ok, or the refusal's code and message (made printable, within limits)."""
    from gateway.contract.commands import CommandResult

    if refusal is None:
        return CommandResult(site=site, gateway=gateway, id=cid, ts=ts, ok=True, actor=actor,
                             changed=changed, note=None if note is None else note[:1000])
    error = refusal.message.encode("utf-8", "backslashreplace").decode("utf-8")[:1000]
    try:
        return CommandResult(site=site, gateway=gateway, id=cid, ts=ts, ok=False,
                             code=refusal.code, error=error, actor=actor)
    except ValueError:
        return CommandResult(site=site, gateway=gateway, id=cid, ts=ts, ok=False,
                             code=refusal.code)
