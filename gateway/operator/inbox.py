"""The command inbox: one `cmd` payload (bytes + retained flag) → a verified command carried
out, or a refusal code → the `CommandResult` to publish on `cmd/result`.

No broker and no event loop. `receive()` does it all in the caller's thread; the uplink does it
in steps (gateway.operator.command_queue), so that the replay memory's disk writes run off the
event loop: `judge()` (every check but the memory's: no disk) gives the answer, or a `Pending`
command; `remember()` records its id (a disk write, in a worker thread) or refuses it;
`carry_out()` (on the loop) does it; `note()` (a disk write) keeps what became of it. A
`request_state` (which changes no safety state and needs no signature) comes back as
`republish` for the uplink to do; it and every refused command never touch the memory. Nothing
that arrives can make these raise.

An alarm command is carried out only if, in this order: it fits MAX_COMMAND_BYTES and the
contract (`oversized`, `malformed`); it did not arrive retained (`retained`); it names this
gateway and no other site or topic root (`wrong_gateway`); it is signed (`unsigned`, unless
`operators.allow_unsigned`) by a trusted operator key (`untrusted_key`), names its gateway,
site and root — signed with them, so bound to them: a gateway id is unique within its site
only, and a key is trusted at every site (`wrong_gateway`; an older signing tool named the
gateway only) — and the signature verifies (`bad_signature`); the key may do the action
(`not_permitted`); it has a valid lifetime of at most
MAX_COMMAND_LIFETIME_S (`bad_validity`), is not from the future beyond CLOCK_SKEW_S
(`not_yet_valid`) and not past its expiry (`expired`); and the key never used its id before,
also before a restart (`replayed`: `gateway.operator.replay`). Then `OperatorCommands` carries
it out in the name of the key's owner (`too_long`, `not_applicable` from there) — unless it
expired while it waited for its turn and its id's write (`carry_out` looks at `expires` again,
by the same rule: `past_expiry`): then it is answered `expired` instead, and its id stays used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, Union

from gateway.clock import Clock
from gateway.contract.channels import Channel, Topic
from gateway.contract.vocab import (
    DEFAULT_ROOT,
    MAX_COMMAND_BYTES,
    MAX_COMMAND_LIFETIME_S,
    ContractError,
)
from gateway.first_import import import_all
from gateway.operator import refusals as r
from gateway.operator.answers import command_result, recover_id
from gateway.operator.replay import ReplayMemory, ReplayMemoryError, iso
from gateway.operator.settings import PERMISSION_OF, OperatorSettings
from gateway.operator.signing import check_signature
from gateway.ops.connections import LogBudget
from gateway.records import dataclass

if TYPE_CHECKING:
    from gateway.contract.commands import AlarmCommand, CommandResult, RequestState
    from gateway.contract.topics import Message
    from gateway.operator.commands import Released

log = logging.getLogger("roomwarden.operator")

CLOCK_SKEW_S = 300
"""How far in the future a command's issue time may be (the sender's clock runs ahead)."""
UNSIGNED_ACTOR = "unsigned-remote"
"""Whom the journal names for an unsigned command (lab mode only)."""
UNSIGNED_KEY = "unsigned"
"""The replay memory's key for unsigned commands."""

LOG_BUDGET = 30
LOG_WINDOW_S = 60.0
"""At most LOG_BUDGET refusal and bad-payload lines per LOG_WINDOW_S: a flood of junk on `cmd`
is counted (UplinkStatus), not logged line by line; the next line logged says how many were
left out (`suppressed=N`)."""


Outcome = Literal["applied", "refused", "duplicate", "bad"]
CarryOut = Callable[["AlarmCommand", str], Union[int, "Released"]]
"""Carries out an alarm command in an actor's name; returns the alarms changed (or what a
`reset_output` did); raises `Refused` (e.g. OperatorCommands.carry_out)."""


@dataclass(frozen=True, slots=True)
class Pending:
    """An alarm command that passed every check but the replay memory's: `remember()` records
    its id before `carry_out()` does it."""

    cmd: AlarmCommand
    key: str
    """The replay memory's key (the signing key's id, or UNSIGNED_KEY)."""
    actor: str
    """Whom the journal names (the key's owner)."""
    judged: float = 0.0
    """When it was judged (the monotonic clock): how long it waited, should it expire."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of one `cmd` payload."""

    outcome: Outcome
    result: CommandResult | None
    """The answer to publish on `cmd/result` (None: the payload named no readable id)."""
    republish: bool = False
    """A `request_state`: publish state, catalog and active alarms again."""


class CommandInbox:
    def __init__(self, site: str, gateway: str, clock: Clock, *, root: str | None = None,
                 carry_out: CarryOut | None = None,
                 policy: Callable[[], OperatorSettings] | None = None,
                 memory: ReplayMemory | None = None) -> None:
        """`policy` returns the running config's operator keys (read at every command: a
        config apply changes them); `memory` remembers command ids across restarts; without
        either every alarm command is refused."""
        self.site = site
        self.gateway = gateway
        self.root = DEFAULT_ROOT if root is None else root
        self.clock = clock
        self._carry_out = carry_out
        self._policy = policy or OperatorSettings
        self.memory = memory
        self._topic = (Topic(site, gateway, Channel.CMD) if root is None
                       else Topic(site, gateway, Channel.CMD, root))
        self._log_budget = LogBudget(LOG_BUDGET, LOG_WINDOW_S, clock=clock.monotonic)

    def receive(self, payload: bytes, retained: bool) -> Delivery:
        """Decode, verify, remember and carry out one payload, all in the caller's thread (the
        memory's write blocks it: the uplink takes the steps apart); never raises."""
        step = self.judge(payload, retained)
        if isinstance(step, Delivery):
            return step
        refusal = self.remember(step)
        if refusal is not None:
            return self.refuse(step, refusal)
        delivery, outcome = self.carry_out(step)
        self.note(step, outcome)
        return delivery

    def judge(self, payload: bytes, retained: bool) -> Delivery | Pending:
        """Every check but the replay memory's (no disk): the answer, or the command to
        `remember` and carry out. Never raises."""
        try:
            return self._judge(bytes(payload), retained)
        except Exception:  # the promise: an answer or a count, never a crash
            log.exception("event=command_inbox_failed bytes=%d", len(payload))
            return Delivery("bad", None)

    def _judge(self, payload: bytes, retained: bool) -> Delivery | Pending:
        if len(payload) > MAX_COMMAND_BYTES:
            self._say(logging.ERROR, "event=command_bad code=%s bytes=%d", r.OVERSIZED,
                      len(payload))
            return Delivery("bad", None)
        # the contract's models (pydantic) are imported at the first command (issue 15)
        from gateway.contract.codec import decode
        from gateway.contract.commands import COMMAND_TYPES, RequestState

        try:
            cmd: Message = decode(self._topic, payload)
        except ContractError as exc:
            cid = recover_id(payload)
            self._say(logging.ERROR, "event=command_bad code=%s id=%s bytes=%d error=%r",
                      r.MALFORMED, cid or "-", len(payload), str(exc))
            return Delivery("bad", None if cid is None else self._answer(
                cid, r.Refused(r.MALFORMED, f"bad command: {exc}")))
        if not isinstance(cmd, COMMAND_TYPES):  # decode() on `cmd` gives commands only
            return Delivery("bad", None)
        try:
            if retained:
                raise r.Refused(r.RETAINED, "a retained command is never carried out (it "
                                            "would be again at every reconnect)")
            self._check_target(cmd)
            if isinstance(cmd, RequestState):
                self._say(logging.INFO, "event=command id=%s action=request_state ok=True",
                          cmd.id)
                return Delivery("applied", self._answer(cmd.id, None), republish=True)
            key, actor = self._authenticate(cmd)
            self._check_time(cmd)
            if self.memory is None:
                raise r.Refused(r.UNAVAILABLE, "this gateway keeps no replay memory")
        except r.Refused as refusal:
            return self._refused(cmd.id, cmd.action, cmd.key_id, refusal)
        return Pending(cmd, key, actor, self.clock.monotonic())

    def remember(self, pending: Pending) -> r.Refused | None:
        """Record the command's id in the replay memory, durably: None, or why it may not be
        carried out (`replayed`, `unavailable`). Blocks on the disk (an fsync; up to the busy
        timeout while another process holds the file): call it off the event loop. Never
        raises."""
        cmd = pending.cmd
        try:
            if self.memory is None:
                return r.Refused(r.UNAVAILABLE, "this gateway keeps no replay memory")
            refused = self.memory.first_use(pending.key, cmd.id, cmd.ts, cmd.expires or cmd.ts)
        except ReplayMemoryError as exc:
            log.error("event=command_replay_memory_failed error=%r", str(exc))
            return r.Refused(r.UNAVAILABLE, str(exc))
        except Exception as exc:
            log.exception("event=command_replay_memory_failed id=%s", cmd.id)
            return r.Refused(r.UNAVAILABLE, f"replay memory: {type(exc).__name__}")
        return None if refused is None else r.Refused(r.REPLAYED, refused)

    def carry_out(self, pending: Pending) -> tuple[Delivery, str]:
        """Carry out a remembered command (the alarm manager's work: on the event loop) — if
        it did not expire since it was judged (then `expired`, nothing done); its delivery,
        and the outcome to `note` (`ok` or the refusal's code). Never raises."""
        cmd, actor = pending.cmd, pending.actor
        late = self._expired_while_waiting(pending)
        if late is not None:
            return late, r.EXPIRED
        try:
            if self._carry_out is None:
                raise r.Refused(r.NOT_APPLICABLE, f"{cmd.action} is not handled by this "
                                                  "gateway")
            done = self._carry_out(cmd, actor)
        except r.Refused as refusal:
            return self._refused(cmd.id, cmd.action, cmd.key_id, refusal, actor), refusal.code
        except Exception as exc:
            log.exception("event=command_handler_failed id=%s action=%s", cmd.id, cmd.action)
            return self._refused(cmd.id, cmd.action, cmd.key_id,
                                 r.Refused(r.FAILED, f"failed: {type(exc).__name__}"),
                                 actor), r.FAILED
        if not isinstance(done, int):  # a reset_output: what it did (commands.Released)
            log.info("event=command id=%s action=%s actor=%r key=%s ok=True output=%s "
                     "still_on_for=%s", cmd.id, cmd.action, actor, cmd.key_id or "-",
                     done.output, ",".join(done.still_on_for) or "-")
            return Delivery("applied", self._answer(cmd.id, None, actor=actor,
                                                    note=done.message)), "ok"
        log.info("event=command id=%s action=%s actor=%r key=%s ok=True changed=%d", cmd.id,
                 cmd.action, actor, cmd.key_id or "-", done)
        return Delivery("applied", self._answer(cmd.id, None, actor=actor, changed=done)), "ok"

    def _expired_while_waiting(self, pending: Pending) -> Delivery | None:
        """The `expired` answer to a command judged in time that expired before its turn to
        be carried out came (behind others, or while its id was written: a slow or locked
        disk); None while it is still valid. Its id stays recorded: a replay is `replayed`."""
        cmd = pending.cmd
        now = self.clock.now_ns()
        ago = past_expiry(cmd.expires or cmd.ts, now)
        if ago is None:
            return None
        waited = max(0.0, self.clock.monotonic() - pending.judged)
        log.warning("event=command_expired_waiting id=%s action=%s actor=%r key=%s "
                    "expired_ago_s=%.1f waited_s=%.1f code=%s", cmd.id, cmd.action,
                    pending.actor, cmd.key_id or "-", ago, waited, r.EXPIRED)
        return Delivery("refused", self._answer(cmd.id, r.Refused(
            r.EXPIRED, f"expired {ago:.1f} s ago by this gateway's clock ({iso(now)}), while "
                       f"it waited {waited:.1f} s for its turn (the replay memory's disk was "
                       "slow or locked): nothing was carried out, and its id stays used; "
                       "send a new command"), actor=pending.actor))

    def note(self, pending: Pending, outcome: str) -> None:
        """Keep what became of a remembered command, for a replay's answer (best effort; a disk
        write: call it off the event loop). Never raises."""
        try:
            if self.memory is not None:
                self.memory.note_outcome(pending.key, pending.cmd.id, outcome)
        except Exception:
            log.exception("event=command_note_failed id=%s", pending.cmd.id)

    def refuse(self, pending: Pending, refusal: r.Refused) -> Delivery:
        """The answer to a judged command that is not carried out after all."""
        return self._refused(pending.cmd.id, pending.cmd.action, pending.cmd.key_id, refusal)

    def turn_away(self, payload: bytes, refusal: r.Refused) -> Delivery:
        """The answer to a payload refused before it was judged (too many wait, the uplink is
        stopping): `refusal`, to its id if one can be read; nothing is carried out or
        remembered."""
        cid = recover_id(payload) if len(payload) <= MAX_COMMAND_BYTES else None
        self._say(logging.WARNING, "event=command_refused id=%s code=%s reason=%r", cid or "-",
                  refusal.code, refusal.message)
        return Delivery("refused", None if cid is None else self._answer(cid, refusal))

    def _authenticate(self, cmd: AlarmCommand) -> tuple[str, str]:
        """(replay-memory key, actor) of a command this gateway may carry out."""
        policy = self._policy()
        if cmd.signature is None and cmd.key_id is None:
            if policy.allow_unsigned:
                return UNSIGNED_KEY, UNSIGNED_ACTOR
            raise r.Refused(r.UNSIGNED, "this gateway carries out signed alarm commands only "
                                        "(roomwarden ack|shelve|unshelve --key …)")
        if cmd.signature is None or cmd.key_id is None:
            missing = "signature" if cmd.signature is None else "key_id"
            raise r.Refused(r.UNSIGNED, f"the command has no {missing}")
        operator = policy.find(cmd.key_id)
        if operator is None:
            raise r.Refused(r.UNTRUSTED_KEY, f"key {cmd.key_id} is not among this gateway's "
                                             f"{len(policy.keys)} operator key(s)")
        if cmd.gateway is None or cmd.site is None or cmd.root is None:
            # before the signature: an older tool's signature does not verify (its fields
            # lack these), and this says why — fail closed, with the remedy
            raise r.Refused(r.WRONG_GATEWAY, "a signed command must name the gateway, site "
                                             "and topic root it is for (this one names "
                                             f"{_named(cmd)}): it was signed by an older "
                                             "roomwarden that bound it to the gateway id only, "
                                             "which other sites may share; update the signing "
                                             "tool (roomwarden ack|shelve|…) and send it anew")
        check_signature(cmd, operator.trusted)
        permission = PERMISSION_OF[cmd.action]
        if permission not in operator.may:
            raise r.Refused(r.NOT_PERMITTED, f"key {cmd.key_id} ({operator.owner}) may not "
                                             f"{permission}; it may {', '.join(operator.may)}")
        return cmd.key_id, operator.owner

    def _check_target(self, cmd: AlarmCommand | RequestState) -> None:
        """Refused(WRONG_GATEWAY) if the command names another gateway, site or topic root
        than this gateway's (a field it leaves out is checked by `_authenticate` when it is
        signed)."""
        for what, named, own in (("gateway", cmd.gateway, self.gateway),
                                 ("site", cmd.site, self.site), ("topic root", cmd.root,
                                                                 self.root)):
            if named is not None and named != own:
                raise r.Refused(r.WRONG_GATEWAY, f"the command is for {what} {named}, not "
                                                 f"{own} (this is {self.root}/{self.site}/"
                                                 f"{self.gateway})")

    def _check_time(self, cmd: AlarmCommand) -> None:
        now = self.clock.now_ns()
        if cmd.expires is None:
            raise r.Refused(r.BAD_VALIDITY, "an alarm command needs an expiry (`expires`)")
        if not 0 <= cmd.expires - cmd.ts <= MAX_COMMAND_LIFETIME_S * 1e9:
            raise r.Refused(r.BAD_VALIDITY, f"`expires` must be after `ts` by at most "
                                            f"{MAX_COMMAND_LIFETIME_S} s")
        if cmd.ts > now + CLOCK_SKEW_S * 1e9:
            raise r.Refused(r.NOT_YET_VALID, f"issued {(cmd.ts - now) / 1e9:.0f} s in the "
                                             f"future by this gateway's clock ({iso(now)}): "
                                             "the sender's clock or this gateway's is wrong")
        ago = past_expiry(cmd.expires, now)
        if ago is not None:
            raise r.Refused(r.EXPIRED, f"expired {ago:.1f} s ago by this gateway's clock "
                                       f"({iso(now)}; if that is wrong, check its time "
                                       "synchronisation)")

    def _refused(self, cid: str, action: str, key_id: str | None, refusal: r.Refused,
                 actor: str | None = None) -> Delivery:
        self._say(logging.WARNING,
                  "event=command_refused id=%s action=%s key=%s code=%s reason=%r", cid,
                  action, key_id or "-", refusal.code, refusal.message)
        outcome: Outcome = "duplicate" if refusal.code == r.REPLAYED else "refused"
        return Delivery(outcome, self._answer(cid, refusal, actor=actor))

    def _say(self, level: int, text: str, *args: object) -> None:
        """Log within the budget (see LOG_BUDGET)."""
        left_out = self._log_budget.take()
        if left_out is None:
            return
        if left_out:
            text, args = text + " suppressed=%d", (*args, left_out)
        log.log(level, text, *args)

    def _answer(self, cid: str, refusal: r.Refused | None, *, actor: str | None = None,
                changed: int | None = None, note: str | None = None) -> CommandResult:
        return command_result(self.site, self.gateway, cid, self.clock.now_ns(), refusal,
                              actor=actor, changed=changed, note=note)


def _named(cmd: AlarmCommand) -> str:
    """What of gateway, site and root a command names, for a refusal's message."""
    named = [f"{what} {value}" for what, value in (("gateway", cmd.gateway), ("site", cmd.site),
                                                  ("root", cmd.root)) if value is not None]
    return ", ".join(named) or "none of them"


def past_expiry(expires: int, now: int) -> float | None:
    """Seconds since `expires` (ns) by `now` (ns), if a command or signed drill start is past
    it; None while it is valid. No clock-skew allowance here: CLOCK_SKEW_S allows only a
    sender's clock ahead of the gateway's (a `ts` in its future); `expires` is the sender's
    own limit, kept as signed."""
    return (now - expires) / 1e9 if expires < now else None


def prepare_commands() -> None:
    """Import the contract's models `CommandInbox.judge` decodes a command with (pydantic:
    0.1-0.3 s here, more on a Pi) in the caller's thread: the uplink calls it in paho's
    network thread before a `cmd` message goes to the event loop, so a first acknowledgement
    in an alarm does not hold the loop the sirens run on (issue 15, DESIGN principle 13).
    Never raises: should the import fail, `judge` imports them itself and says what failed.
    Once imported, a look-up in `sys.modules` each."""
    try:
        import_all(("gateway.contract.codec", "gateway.contract.commands"))
    except Exception:
        log.exception("event=command_models_failed")
