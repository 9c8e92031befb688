"""Signed operator commands sent down to a gateway, and their results."""

from typing import Annotated, Literal

from pydantic import (
    Field,
    StringConstraints,
)

from gateway.contract.base import (
    Actor,
    AlarmRule,
    AlarmSubject,
    Id,
    KeyId,
    LongText,
    Ns,
    RequestId,
    Root,
    Signature,
    StatusCode,
    Upstream,
    WireModel,
)
from gateway.contract.vocab import MAX_COMMAND_BYTES, MAX_COMMAND_LIFETIME_S, MAX_SHELVE_S

__all__ = ["MAX_COMMAND_BYTES", "MAX_COMMAND_LIFETIME_S", "MAX_SHELVE_S"]  # (and the models)

# ---------------------------------------------------------------------------------- commands

Scope = Annotated[str, StringConstraints(min_length=1, max_length=128)]
"""A suppression's scope: a device, room or rule id."""


class _Command(WireModel):
    """An operator command. Alarm commands are signed by an operator key the gateway trusts
    (`gateway.operator.signing`: the Ed25519 `signature` covers every other field); the
    journal names the key's owner, never text from the payload."""

    v: Literal[1] = 1
    id: RequestId
    """Chosen by the sender, unique per key; echoed in the CommandResult. A gateway carries
    out an id once (also across restarts): a repeat is refused as `replayed`."""
    ts: Ns
    """When the command was issued."""
    expires: Ns | None = None
    """The gateway refuses the command after this time; required on alarm commands, at most
    MAX_COMMAND_LIFETIME_S after `ts`."""
    gateway: Id | None = None
    """The gateway the command is for (required when signed: a signature for one gateway is
    worthless on another)."""
    site: Id | None = None
    """The site of that gateway (required when signed: a gateway id is unique within its site
    only, and one operator key is trusted at many sites — without it a command signed for
    `gw-01` at one site would be carried out by `gw-01` at every other)."""
    root: Root | None = None
    """The topic root it is sent under (required when signed, for the same reason: two
    deployments on one broker under different roots may have the same site and gateway ids)."""
    actor: Actor | None = None
    """Informational (logged); the journal names the signing key's owner."""
    key_id: KeyId | None = None
    signature: Signature | None = None


class AlarmRef(WireModel):
    """One alarm: a rule bound to a subject (the panel and `cmd` both name alarms so)."""

    rule: AlarmRule
    subject: AlarmSubject


class Acknowledge(_Command):
    action: Literal["acknowledge"]
    alarms: Annotated[tuple[AlarmRef, ...], Field(min_length=1, max_length=500,
                                                   fail_fast=True)]
    """(`fail_fast`: the first bad reference ends the check — 21,000 empty objects in 64 KiB
    made 42,000 errors and 150 ms of the event loop's time a message.)"""
    note: LongText | None = None


class AcknowledgeAll(_Command):
    action: Literal["acknowledge_all"]
    room: Id | None = None
    note: LongText | None = None


class Shelve(_Command):
    action: Literal["shelve"]
    alarm: AlarmRef
    until: Ns
    reason: Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class Unshelve(_Command):
    action: Literal["unshelve"]
    alarm: AlarmRef


class Suppress(_Command):
    """Suppress every alarm of a device, room or rule until `until` (e.g. hot work)."""

    action: Literal["suppress"]
    scope: Scope
    until: Ns
    reason: Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class Unsuppress(_Command):
    action: Literal["unsuppress"]
    scope: Scope


class ResetOutput(_Command):
    """Release an output that does not restore on clear (`restore_on_clear: false`, e.g. a
    battery room's charge inhibit): once a real alarm switched it on it stays on until an
    operator resets it. An output a real alarm still demands stays on for that alarm."""

    action: Literal["reset_output"]
    output: Id
    """The output's id (the config's `outputs[].id`)."""
    note: LongText | None = None


class RequestState(_Command):
    """Publish state, active-alarm snapshot and point catalog again (an ingest that lost them).
    Changes no safety state: needs no signature."""

    action: Literal["request_state"]


AlarmCommand = (Acknowledge | AcknowledgeAll | Shelve | Unshelve | Suppress | Unsuppress
                | ResetOutput)
Command = Annotated[AlarmCommand | RequestState, Field(discriminator="action")]
COMMAND_TYPES = (Acknowledge, AcknowledgeAll, Shelve, Unshelve, Suppress, Unsuppress,
                 ResetOutput, RequestState)
ALARM_COMMAND_TYPES = (Acknowledge, AcknowledgeAll, Shelve, Unshelve, Suppress, Unsuppress,
                       ResetOutput)


class CommandResult(Upstream):
    id: RequestId
    ts: Ns
    ok: bool
    code: StatusCode | None = None
    """Why it was refused, for machines (docs/mqtt-contract.md lists the codes)."""
    error: LongText | None = None
    """Why it was refused, for people."""
    actor: Actor | None = None
    """Whom the gateway journalled as having given the command (the key's owner)."""
    changed: Annotated[int, Field(ge=0)] | None = None
    """Alarms whose state the command changed."""
    note: LongText | None = None
    """What the gateway says about a command it carried out, for people (`reset_output`:
    `released` or why the output stays on)."""
