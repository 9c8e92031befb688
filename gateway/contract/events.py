"""Alarm events, the active-alarm snapshot and the gateway's retained state."""

from typing import Annotated, Literal

from pydantic import (
    Field,
)

from gateway.contract.base import (
    Actor,
    AlarmRule,
    AlarmSubject,
    Hash,
    Id,
    LongText,
    Ns,
    Seq,
    Sha256,
    Short,
    Text,
    Upstream,
    Value,
    WireModel,
)
from gateway.contract.enums import AlarmState, EventKind, Severity
from gateway.contract.telemetry import Delivered, DeliveryInfo
from gateway.contract.vocab import MAX_ACTIVE_ALARMS, MessageKind

# ---------------------------------------------------------------------------------- alarms

class AlarmEventMessage(Delivered):
    """One alarm-manager event (`AlarmEvent`, converted by gateway.uplink.records), as
    journalled. `seq` is the journal's sequence: strictly increasing per gateway, the ingest's
    duplicate key."""

    seq: Seq
    ts: Ns
    kind: EventKind
    rule: AlarmRule
    subject: AlarmSubject
    state: AlarmState
    previous_state: AlarmState
    value: Value = None
    severity: Severity | None = None
    actor: Actor
    note: LongText | None = None
    first_out: bool = False
    room: Id | None = None
    title: Text
    chattering: bool = False
    drill: bool = False
    """A live drill's alarm (subject `drill:<subject>`) or a drill's start or end (kind
    `drill`): an exercise, never a real hazard (issue 12)."""
    clock_synced: bool | None = None
    """Whether the gateway's system clock was synchronised (NTP) when it stamped `ts`; absent:
    not known (a gateway of before 6 Dec 2026, or an event it journalled before then). The
    ingest writes an event older than its `max_event_age` at `ts` only when this is true
    (gateway.ingest.timecheck)."""


class ActiveAlarm(WireModel):
    rule: AlarmRule
    subject: AlarmSubject
    state: AlarmState
    severity: Severity
    title: Text
    room: Id | None = None
    value: Value = None
    activated: Ns | None = None
    acked_by: Actor | None = None
    acked: Ns | None = None
    first_out: bool = False
    chattering: bool = False
    drill: bool = False
    """A live drill's alarm (issue 12)."""


class ActiveAlarmsSnapshot(Upstream):
    """Every alarm that is not normal now — annunciated, shelved, suppressed or out of service
    (retained: a dashboard that subscribes sees the present)."""

    ts: Ns
    seq: Seq
    """The last alarm event the snapshot reflects; an older snapshot never replaces a newer."""
    alarms: Annotated[tuple[ActiveAlarm, ...], Field(max_length=MAX_ACTIVE_ALARMS)] = ()
    omitted: Annotated[int, Field(ge=1, lt=2**63)] | None = None
    """How many alarms were left out because more than `MAX_ACTIVE_ALARMS` are not normal: the
    least important (overlaid before annunciated, a drill's before a real one, then the lowest
    severity, then the oldest activation). Absent when none were (a snapshot within the limit
    is as before)."""


# ---------------------------------------------------------------------------------- state

class OutboxStatus(WireModel):
    depth: Annotated[int, Field(ge=0)]
    """Messages waiting for a PUBACK."""
    bytes: Annotated[int, Field(ge=0)]
    budget: Annotated[int, Field(ge=0)]
    oldest_age_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


class GatewayState(Upstream):
    """Retained on `state`: the birth message on connect, the last will (`offline`, few fields),
    a refresh every `state_interval` and at once when the devices online or the config identity
    change."""

    status: Literal["online", "offline"]
    ts: Ns
    software: Short | None = None
    """RoomWarden version."""
    config_version: Short | None = None
    """The running config's version as a decimal string (`"0"`: the installed file)."""
    config_hash: Sha256 | None = None
    """SHA-256 (hex) of the running config."""
    catalog: Hash | None = None
    boot: Ns | None = None
    outbox: OutboxStatus | None = None
    dropped: dict[MessageKind, Annotated[int, Field(ge=0)]] = {}
    """Messages the outbox dropped to stay within its disk budget, per kind, since install."""
    devices_online: Annotated[int, Field(ge=0)] | None = None
    devices_total: Annotated[int, Field(ge=0)] | None = None
    delivery: DeliveryInfo | None = None
    """How the outbox lets go of telemetry and alarm events (end-to-end or PUBACK only)."""
