"""The command inbox: one `cmd` payload (bytes + retained flag) → a command carried out or a
refusal → the `CommandResult` to publish on `cmd/result`.

Pure: no broker, no event loop. The uplink hands every `cmd` payload to `receive()` and
publishes what it returns; `request_state` (which only publishes again) is reported back as
`republish` for the uplink to do. Nothing that arrives can make `receive()` raise.
"""

from __future__ import annotations

import json
import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from gateway.alarms.events import CommandRefused
from gateway.clock import Clock
from gateway.uplink.contract import (
    COMMAND_TYPES,
    MAX_PAYLOAD_BYTES,
    Channel,
    Command,
    CommandResult,
    ContractError,
    Message,
    RequestState,
    Topic,
    decode,
)

log = logging.getLogger("roomwarden.uplink")

RECENT_COMMANDS = 1024
"""Command ids remembered for deduplication (with the answer each got)."""

_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")

Outcome = Literal["applied", "refused", "duplicate", "bad"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of one `cmd` payload."""

    outcome: Outcome
    result: CommandResult | None
    """The answer to publish on `cmd/result` (None: the payload named no readable id)."""
    republish: bool = False
    """A `request_state`: publish state, catalog and active alarms again."""


class CommandInbox:
    def __init__(self, site: str, gateway: str, clock: Clock, *,
                 on_command: Callable[[Command], None] | None = None,
                 root: str | None = None) -> None:
        """`on_command` carries out an alarm command (acknowledge, shelve …) on the caller's
        thread; it raises `CommandRefused(reason)` to refuse."""
        self.site = site
        self.gateway = gateway
        self.clock = clock
        self._on_command = on_command
        self._topic = (Topic(site, gateway, Channel.CMD) if root is None
                       else Topic(site, gateway, Channel.CMD, root))
        self._recent: OrderedDict[str, CommandResult] = OrderedDict()

    def receive(self, payload: bytes, retained: bool) -> Delivery:
        """Decode, check and carry out one payload; never raises."""
        try:
            return self._receive(payload, retained)
        except Exception:  # the promise: an answer or a count, never a crash
            log.exception("event=uplink_command_failed bytes=%d", len(payload))
            return Delivery("bad", None)

    def _receive(self, payload: bytes, retained: bool) -> Delivery:
        try:
            cmd: Message = decode(self._topic, payload)
        except ContractError as exc:
            cid = recover_id(payload)
            log.error("event=uplink_bad_command id=%s bytes=%d error=%r", cid or "-",
                      len(payload), str(exc))
            answer = None if cid is None else self._answer(cid, f"bad command: {exc}",
                                                           remember=False)
            return Delivery("bad", answer)
        if not isinstance(cmd, COMMAND_TYPES):  # decode() on `cmd` gives commands only
            return Delivery("bad", None)
        # request_state only publishes again (idempotent): always carried out, so an ingest
        # that restarts and numbers its requests from 1 again still gets its catalog
        previous = None if isinstance(cmd, RequestState) else self._recent.get(cmd.id)
        if previous is not None:
            self._recent.move_to_end(cmd.id)
            log.info("event=uplink_command_duplicate id=%s action=%s", cmd.id, cmd.action)
            return Delivery("duplicate", previous.model_copy(update={"ts": self.clock.now_ns()}))
        now = self.clock.now_ns()
        error: str | None = None
        if retained:
            error = "refused: retained command (commands must not be retained)"
        elif cmd.expires is not None and cmd.expires < now:
            error = f"refused: expired {(now - cmd.expires) / 1e9:.1f} s ago"
        else:
            error = self._apply(cmd)
        log.info("event=uplink_command id=%s action=%s actor=%r ok=%s error=%r", cmd.id,
                 cmd.action, cmd.actor, error is None, error)
        answer = self._answer(cmd.id, error, remember=True)
        if error is not None:
            return Delivery("refused", answer)
        return Delivery("applied", answer, republish=isinstance(cmd, RequestState))

    def _apply(self, cmd: Command) -> str | None:
        """Carry out a command; the refusal's reason, or None."""
        if isinstance(cmd, RequestState):
            return None  # the uplink publishes again (Delivery.republish)
        if self._on_command is None:
            return f"refused: {cmd.action} is not handled by this gateway"
        try:
            self._on_command(cmd)
        except CommandRefused as exc:
            return f"refused: {exc}" if str(exc) else "refused"
        except Exception as exc:
            log.exception("event=uplink_command_handler_failed id=%s action=%s", cmd.id,
                          cmd.action)
            return f"failed: {type(exc).__name__}"
        return None

    def _answer(self, cid: str, error: str | None, *, remember: bool) -> CommandResult:
        result = command_result(self.site, self.gateway, cid, self.clock.now_ns(), error)
        if remember:
            self._recent[cid] = result
            while len(self._recent) > RECENT_COMMANDS:
                self._recent.popitem(last=False)
        return result


def recover_id(payload: bytes) -> str | None:
    """The `id` of a payload that broke the contract, if it still has a readable one."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        data = json.loads(payload)
    except Exception:  # not JSON, not UTF-8, nested too deep …
        return None
    cid = data.get("id") if isinstance(data, dict) else None
    if isinstance(cid, str) and _REQUEST_ID.fullmatch(cid):
        return cid
    return None


def command_result(site: str, gateway: str, cid: str, ts: int,
                   error: str | None) -> CommandResult:
    if error is not None:  # anything printable, within the contract's limit
        error = error.encode("utf-8", "backslashreplace").decode("utf-8")[:1000]
    try:
        return CommandResult(site=site, gateway=gateway, id=cid, ts=ts, ok=error is None,
                             error=error)
    except ValueError:
        return CommandResult(site=site, gateway=gateway, id=cid, ts=ts, ok=False,
                             error="refused")
