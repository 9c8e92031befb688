"""The MQTT wire contract, version 1: topics and payloads, shared by the gateway and the ingest.

One module is the single source of truth (DESIGN principle 3): the gateway encodes with it, the
central ingest service decodes with it, and docs/mqtt-contract.md shows an example of every
message that the tests parse with it.

Topics: `<root>/<site>/<gateway>/<channel>`; the root is configurable (default `roomwarden`,
one or more segments), site and gateway are config ids (`[A-Za-z0-9][A-Za-z0-9_.-]*`, at most
64 characters — no `/`, no MQTT wildcard `+` or `#`, no leading `$`).

| channel         | direction | QoS | retained | payload               |
|-----------------|-----------|-----|----------|-----------------------|
| `state`         | up        | 1   | yes      | GatewayState (birth, refreshes; will = offline) |
| `telemetry`     | up        | 1   | no       | TelemetryBatch        |
| `meta`          | up        | 1   | no       | PointCatalog          |
| `alarms`        | up        | 1   | no       | AlarmEventMessage     |
| `alarms/active` | up        | 1   | yes      | ActiveAlarmsSnapshot  |
| `config/set`    | down      | 1   | no       | ConfigSet             |
| `config/status` | up        | 1   | yes      | ConfigStatus          |
| `cmd`           | down      | 1   | no       | Command               |
| `cmd/result`    | up        | 1   | no       | CommandResult         |
| `ack`           | down      | 1   | yes      | DeliveryAck (published by the ingest) |

Payloads are UTF-8 JSON objects with `"v": 1`, parsed strictly: unknown keys, wrong types,
non-finite floats, oversize strings, lists or payloads are errors. `decode()` raises
`ContractError` — and nothing else — for every bad topic or payload.

Telemetry is compact: a batch holds rows `[point, value, dt, quality]` where `dt` is ns after
the batch's `t0` (the oldest sample), so a row does not repeat a 19-digit timestamp; the
per-point metadata the ingest needs for its tags (device, room, quantity, unit) travels once in
a `PointCatalog` on `meta`, named by a content hash that every batch carries in `catalog`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gateway.contract.enums import AlarmState, EventKind, Quality, Severity
from gateway.contract.sample import Sample
from gateway.contract.sample import Value as SampleValue
from gateway.strict import StrictModel

VERSION = 1
DEFAULT_ROOT = "roomwarden"
MAX_PAYLOAD_BYTES = 2 * 1024 * 1024
"""Largest payload either side accepts (2 MiB; a full telemetry batch stays well below)."""
MAX_BATCH_ROWS = 4096
MAX_CATALOG_POINTS = 20_000
MAX_ACTIVE_ALARMS = 2000
MAX_CONFIG_BYTES = 512 * 1024

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class ContractError(ValueError):
    """A topic or payload that breaks the contract; the message says why."""


# ---------------------------------------------------------------------------------- scalars

Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
"""Site, gateway, device and room ids (the config's `Id`); safe as a topic level."""
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
PointId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                                           max_length=160)]
"""`device.point` or `device.point.flag`."""
RequestId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
                                             max_length=64)]
Ns = Annotated[int, Field(ge=0, lt=2**63)]
"""ns since the epoch, UTC."""
Seq = Annotated[int, Field(ge=0, lt=2**63)]
Hash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Text = Annotated[str, StringConstraints(max_length=200)]
LongText = Annotated[str, StringConstraints(max_length=1000)]
Short = Annotated[str, StringConstraints(max_length=64)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Value = FiniteFloat | int | bool | Annotated[str, StringConstraints(max_length=200)] | None
"""A sample value on the wire: finite float, integer, boolean, short string or null."""
AlarmRule = Annotated[str, StringConstraints(min_length=1, max_length=128)]
AlarmSubject = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Actor = Annotated[str, StringConstraints(min_length=1, max_length=64)]
KeyId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
"""A signing key's short fingerprint (gateway.flashing.keys.key_id)."""
Signature = Annotated[str, StringConstraints(min_length=1, max_length=256)]
"""An Ed25519 signature, base64."""
StatusCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]


class MessageKind(StrEnum):
    """What the outbox stores, in priority order for sending and reverse order for dropping."""

    ALARM = "alarm"
    STATE = "state"
    TELEMETRY = "telemetry"

    @property
    def priority(self) -> int:
        """0 is sent first and dropped last."""
        return _PRIORITY[self]


_PRIORITY = {MessageKind.ALARM: 0, MessageKind.STATE: 1, MessageKind.TELEMETRY: 2}


class _Model(StrictModel):
    """Strict types (no coercion of "1" to 1) and no NaN or infinity, on top of the base."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False)


class _Up(_Model):
    """Sent by a gateway: names its site and gateway, so a stored payload is self-describing."""

    v: Literal[1] = 1
    site: Id
    gateway: Id


# ------------------------------------------------------------ delivery (end-to-end ack) ----
# Owned by the uplink / ingest (issue 10): the ingest's acknowledgement watermark.

StreamId = Annotated[int, Field(ge=1, lt=2**63)]
"""Names one outbox's delivery numbering (random, made when the outbox file is created): a
gateway whose outbox was wiped starts a new stream, so an old watermark never covers it."""


class DeliveryInfo(_Model):
    """How a gateway's outbox lets go of telemetry and alarm events (in GatewayState).

    `ingest`: an entry leaves only when the ingest's `ack` watermark covers its `dseq`;
    `puback`: when the broker acknowledges it (for a consumer other than the RoomWarden
    ingest; the broker's PUBACK then is the whole guarantee)."""

    mode: Literal["ingest", "puback"]
    stream: StreamId | None = None
    floor: Annotated[int, Field(ge=1, lt=2**63)] | None = None
    """The lowest `dseq` the gateway still holds (or the next it will give): numbers below it
    will never be sent again (covered, or dropped to stay within the disk budget), so the
    ingest may count them as done."""


class _Delivered(_Up):
    """A message the ingest acknowledges: `stream` and `dseq` (both or neither; neither in
    `puback` mode)."""

    stream: StreamId | None = None
    dseq: Annotated[int, Field(ge=1, lt=2**63)] | None = None
    """Delivery sequence: 1, 2, 3 … per stream over telemetry batches and alarm events
    together, in the order the outbox committed them."""

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if (self.stream is None) != (self.dseq is None):
            raise ValueError("stream and dseq go together")
        return self


class DeliveryAck(_Up):
    """Published by the ingest (retained, QoS 1) on `<root>/<site>/<gateway>/ack` after the
    database accepted a batch or event: every `dseq` ≤ `upto` of `stream` is stored (or
    dead-lettered: the ingest will do nothing more with it). `highest` is the highest `dseq`
    stored so far: numbers between `upto` and `highest` are holes the gateway re-sends."""

    ts: Ns
    stream: StreamId
    upto: Annotated[int, Field(ge=0, lt=2**63)]
    highest: Annotated[int, Field(ge=0, lt=2**63)]

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.highest < self.upto:
            raise ValueError("highest must not be below upto")
        return self

# -------------------------------------------------------- end of delivery (end-to-end ack) ----


# ---------------------------------------------------------------------------------- telemetry

SampleRow = tuple[PointId, Value, Annotated[int, Field(ge=0, lt=2**63)], Quality]
"""`[point, value, dt, quality]`: dt is ns after the batch's `t0`."""


def wire_value(value: SampleValue) -> SampleValue:
    """A sample value as the wire carries it: a NaN or infinite float (kept by acquisition with
    quality `invalid`) becomes null, since JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class TelemetryBatch(_Delivered):
    """One poll cycle's reported samples (after the exception filter)."""

    seq: Seq
    """Per gateway, strictly increasing, survives restarts: the ingest's duplicate key."""
    produced: Ns
    """When the gateway made the batch (the samples keep their own acquisition times)."""
    catalog: Hash | None = None
    """The `PointCatalog` that describes the points (tags for the ingest)."""
    t0: Ns
    """The oldest sample's timestamp; each row's time is t0 + dt."""
    samples: Annotated[tuple[SampleRow, ...], Field(min_length=1, max_length=MAX_BATCH_ROWS)]

    @model_validator(mode="after")
    def _times(self) -> Self:
        for row in self.samples:
            if self.t0 + row[2] >= 2**63:
                raise ValueError(f"sample {row[0]}: t0 + dt is out of range")
        return self

    @classmethod
    def from_samples(cls, *, site: str, gateway: str, seq: int, produced: int,
                     samples: list[Sample], catalog: str | None = None) -> TelemetryBatch:
        if not samples:
            raise ContractError("a telemetry batch needs at least one sample")
        t0 = min(s.ts for s in samples)
        rows = tuple((s.point, wire_value(s.value), s.ts - t0, Quality(s.quality))
                     for s in samples)
        return validated(cls, site=site, gateway=gateway, seq=seq, produced=produced,
                      catalog=catalog, t0=t0, samples=rows)

    def to_samples(self) -> list[Sample]:
        return [Sample(point, value, self.t0 + dt, quality)
                for point, value, dt, quality in self.samples]


class PointMeta(_Model):
    """What the ingest needs to write a point: InfluxDB tags site, gateway, room, device (and
    quantity, unit); the field is the point's name."""

    device: Id
    room: Id | None = None
    quantity: Name | None = None
    unit: Annotated[str, StringConstraints(max_length=16)] | None = None


def catalog_hash(points: dict[str, PointMeta]) -> str:
    """The content hash that names a catalog: 16 hex digits of SHA-256 over canonical JSON."""
    canonical = json.dumps({p: m.model_dump() for p, m in sorted(points.items())},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class PointCatalog(_Up):
    """The gateway's points and their metadata, sent on connect and when the config changes.
    Batches name it by `catalog`; the ingest keeps every catalog it has seen."""

    catalog: Hash
    produced: Ns
    points: Annotated[dict[PointId, PointMeta], Field(max_length=MAX_CATALOG_POINTS)]

    @model_validator(mode="after")
    def _hash(self) -> Self:
        if catalog_hash(self.points) != self.catalog:
            raise ValueError("catalog does not match the hash of its points")
        return self

    @classmethod
    def build(cls, *, site: str, gateway: str, produced: int,
              points: dict[str, PointMeta]) -> PointCatalog:
        return validated(cls, site=site, gateway=gateway, produced=produced,
                      catalog=catalog_hash(points), points=points)


# ---------------------------------------------------------------------------------- alarms

class AlarmEventMessage(_Delivered):
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


class ActiveAlarm(_Model):
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


class ActiveAlarmsSnapshot(_Up):
    """Every annunciated alarm now (retained: a dashboard that subscribes sees the present)."""

    ts: Ns
    seq: Seq
    """The last alarm event the snapshot reflects; an older snapshot never replaces a newer."""
    alarms: Annotated[tuple[ActiveAlarm, ...], Field(max_length=MAX_ACTIVE_ALARMS)] = ()


# ---------------------------------------------------------------------------------- state

class OutboxStatus(_Model):
    depth: Annotated[int, Field(ge=0)]
    """Messages waiting for a PUBACK."""
    bytes: Annotated[int, Field(ge=0)]
    budget: Annotated[int, Field(ge=0)]
    oldest_age_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


class GatewayState(_Up):
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


# ---------------------------------------------------------------------------------- commands

MAX_COMMAND_BYTES = 64 * 1024
"""Largest `cmd` payload a gateway looks at."""
MAX_COMMAND_LIFETIME_S = 15 * 60
"""Longest a command may be valid (`expires` − `ts`): bounds the gateway's replay memory."""
MAX_SHELVE_S = 7 * 24 * 3600
"""Longest shelve or suppression, from the panel or from `cmd` (7 days)."""
Scope = Annotated[str, StringConstraints(min_length=1, max_length=128)]
"""A suppression's scope: a device, room or rule id."""


class _Command(_Model):
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
    actor: Actor | None = None
    """Informational (logged); the journal names the signing key's owner."""
    key_id: KeyId | None = None
    signature: Signature | None = None


class AlarmRef(_Model):
    """One alarm: a rule bound to a subject (the panel and `cmd` both name alarms so)."""

    rule: AlarmRule
    subject: AlarmSubject


class Acknowledge(_Command):
    action: Literal["acknowledge"]
    alarms: Annotated[tuple[AlarmRef, ...], Field(min_length=1, max_length=500)]
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


class RequestState(_Command):
    """Publish state, active-alarm snapshot and point catalog again (an ingest that lost them).
    Changes no safety state: needs no signature."""

    action: Literal["request_state"]


AlarmCommand = Acknowledge | AcknowledgeAll | Shelve | Unshelve | Suppress | Unsuppress
Command = Annotated[AlarmCommand | RequestState, Field(discriminator="action")]
COMMAND_TYPES = (Acknowledge, AcknowledgeAll, Shelve, Unshelve, Suppress, Unsuppress,
                 RequestState)
ALARM_COMMAND_TYPES = (Acknowledge, AcknowledgeAll, Shelve, Unshelve, Suppress, Unsuppress)


class CommandResult(_Up):
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


# ---------------------------------------------------------------------------------- config

ConfigVersion = Annotated[int, Field(ge=0, lt=2**63)]
"""A config's version: 0 is the factory config, flashed configs count up from 1."""
MAX_STATUS_ERROR = 4000


def _digest_mismatch() -> PydanticCustomError:
    return PydanticCustomError("digest_mismatch", "sha256 does not match the config")


class ConfigSet(_Model):
    """A signed config to flash (gateway.flashing.envelope signs and verifies it).

    The Ed25519 `signature` (base64) covers every other field: see
    `gateway.flashing.envelope.signing_bytes`. `sha256` is of `config` in UTF-8 and is checked
    on decode; the signature, the key and the version by the gateway."""

    v: Literal[1] = 1
    id: RequestId
    """Chosen by the sender; every ConfigStatus about this envelope echoes it."""
    ts: Ns
    gateway: Id
    """The gateway the config is for; any other gateway refuses it."""
    version: Annotated[int, Field(ge=1, lt=2**63)]
    """Strictly increasing per gateway: a gateway refuses a version it has already accepted
    or passed (unless `force`)."""
    sha256: Sha256
    author: Actor
    force: bool = False
    """Allow a version at or below the highest accepted (a signed downgrade)."""
    config: Annotated[str, StringConstraints(min_length=1, max_length=MAX_CONFIG_BYTES)]
    """The YAML text, at most MAX_CONFIG_BYTES in UTF-8."""
    key_id: KeyId | None = None
    signature: Signature | None = None

    @field_validator("v", mode="before")
    @classmethod
    def _v_is_an_integer(cls, value: object) -> object:
        if type(value) is not int:  # Literal[1] alone takes `true` and 1.0 (both == 1)
            raise ValueError("v must be the integer 1")
        return value

    @model_validator(mode="after")
    def _digest(self) -> Self:
        data = self.config.encode()  # a lone surrogate raises UnicodeEncodeError: invalid
        if len(data) > MAX_CONFIG_BYTES:
            raise ValueError(f"config is {len(data)} bytes in UTF-8; the limit is "
                             f"{MAX_CONFIG_BYTES}")
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise _digest_mismatch()
        return self


class ConfigStatus(_Up):
    """The gateway's answer to a ConfigSet (retained: the last one shows the running config).

    `state`: received → staged → applying → applied, or rejected (refused before staging:
    `code` says why, e.g. `bad_signature`, `replayed`, `downgrade`, `schema`) or rolled_back
    (applied but unhealthy, or interrupted: the last-known-good config runs again)."""

    id: RequestId | None = None
    """The ConfigSet this answers, or None for the running config at boot."""
    ts: Ns
    state: Literal["received", "rejected", "staged", "applying", "applied", "rolled_back"]
    code: StatusCode | None = None
    """A short machine-readable reason for rejected / rolled_back."""
    version: ConfigVersion | None = None
    """The version of the ConfigSet this answers."""
    sha256: Sha256 | None = None
    error: Annotated[str, StringConstraints(max_length=MAX_STATUS_ERROR)] | None = None
    """What went wrong, for people (e.g. every error of an invalid config, one a line)."""
    active_version: ConfigVersion | None = None
    """The version running now (after this step)."""
    active_sha256: Sha256 | None = None


# ---------------------------------------------------------------------------------- topics

class Channel(StrEnum):
    STATE = "state"
    TELEMETRY = "telemetry"
    META = "meta"
    ALARMS = "alarms"
    ALARMS_ACTIVE = "alarms/active"
    CONFIG_SET = "config/set"
    CONFIG_STATUS = "config/status"
    CMD = "cmd"
    CMD_RESULT = "cmd/result"
    ACK = "ack"


Message = (TelemetryBatch | PointCatalog | AlarmEventMessage | ActiveAlarmsSnapshot
           | GatewayState | ConfigSet | ConfigStatus | Acknowledge | AcknowledgeAll | Shelve
           | Unshelve | Suppress | Unsuppress | RequestState | CommandResult
           | DeliveryAck)


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    qos: int
    retain: bool
    upstream: bool
    """Published by the gateway (True) or to it (False)."""
    kind: MessageKind | None
    """The outbox kind of gateway-published messages."""


CHANNELS: dict[Channel, ChannelSpec] = {
    Channel.STATE: ChannelSpec(1, True, True, MessageKind.STATE),
    Channel.TELEMETRY: ChannelSpec(1, False, True, MessageKind.TELEMETRY),
    Channel.META: ChannelSpec(1, False, True, MessageKind.STATE),
    Channel.ALARMS: ChannelSpec(1, False, True, MessageKind.ALARM),
    Channel.ALARMS_ACTIVE: ChannelSpec(1, True, True, MessageKind.STATE),
    Channel.CONFIG_SET: ChannelSpec(1, False, False, None),
    Channel.CONFIG_STATUS: ChannelSpec(1, True, True, MessageKind.STATE),
    Channel.CMD: ChannelSpec(1, False, False, None),
    Channel.CMD_RESULT: ChannelSpec(1, False, True, MessageKind.STATE),
    Channel.ACK: ChannelSpec(1, True, False, None),
}

_CHANNEL_OF: dict[type[BaseModel], Channel] = {
    TelemetryBatch: Channel.TELEMETRY, PointCatalog: Channel.META,
    AlarmEventMessage: Channel.ALARMS, ActiveAlarmsSnapshot: Channel.ALARMS_ACTIVE,
    GatewayState: Channel.STATE, ConfigSet: Channel.CONFIG_SET,
    ConfigStatus: Channel.CONFIG_STATUS, CommandResult: Channel.CMD_RESULT,
    DeliveryAck: Channel.ACK,
    **{t: Channel.CMD for t in COMMAND_TYPES},
}

_ADAPTERS: dict[Channel, TypeAdapter[Any]] = {
    Channel.STATE: TypeAdapter(GatewayState),
    Channel.TELEMETRY: TypeAdapter(TelemetryBatch),
    Channel.META: TypeAdapter(PointCatalog),
    Channel.ALARMS: TypeAdapter(AlarmEventMessage),
    Channel.ALARMS_ACTIVE: TypeAdapter(ActiveAlarmsSnapshot),
    Channel.CONFIG_SET: TypeAdapter(ConfigSet),
    Channel.CONFIG_STATUS: TypeAdapter(ConfigStatus),
    Channel.CMD: TypeAdapter(Command),
    Channel.CMD_RESULT: TypeAdapter(CommandResult),
    Channel.ACK: TypeAdapter(DeliveryAck),
}


def channel_of(message: Message) -> Channel:
    return _CHANNEL_OF[type(message)]


def _check_id(what: str, value: str) -> None:
    if not isinstance(value, str) or _ID_RE.fullmatch(value) is None:
        raise ContractError(f"{what} {value!r} is not a valid id "
                            "([A-Za-z0-9][A-Za-z0-9_.-]*, at most 64 characters)")


def check_root(root: str) -> None:
    """A root is one or more id-like levels (`roomwarden`, `acme/roomwarden`)."""
    if not isinstance(root, str) or not root:
        raise ContractError("topic root must not be empty")
    for level in root.split("/"):
        _check_id("topic root level", level)


@dataclass(frozen=True, slots=True)
class Topic:
    site: str
    gateway: str
    channel: Channel
    root: str = DEFAULT_ROOT

    def __post_init__(self) -> None:
        check_root(self.root)
        _check_id("site", self.site)
        _check_id("gateway", self.gateway)
        if not isinstance(self.channel, Channel):
            raise ContractError(f"unknown channel {self.channel!r}")

    def __str__(self) -> str:
        return f"{self.root}/{self.site}/{self.gateway}/{self.channel.value}"

    @property
    def spec(self) -> ChannelSpec:
        return CHANNELS[self.channel]

    @classmethod
    def parse(cls, topic: str, root: str = DEFAULT_ROOT) -> Topic:
        check_root(root)
        if not isinstance(topic, str):
            raise ContractError("topic must be a string")
        if len(topic) > 512:
            raise ContractError("topic is too long")
        prefix = root + "/"
        if not topic.startswith(prefix):
            raise ContractError(f"topic {topic!r} is not under root {root!r}")
        levels = topic[len(prefix):].split("/")
        if len(levels) < 3:
            raise ContractError(f"topic {topic!r} lacks <site>/<gateway>/<channel>")
        site, gateway, channel = levels[0], levels[1], "/".join(levels[2:])
        try:
            parsed = Channel(channel)
        except ValueError:
            raise ContractError(f"unknown channel {channel!r} in topic {topic!r}") from None
        return cls(site, gateway, parsed, root)


def topic_filter(channel: Channel, *, root: str = DEFAULT_ROOT, site: str = "+",
                 gateway: str = "+") -> str:
    """A subscription filter, e.g. `roomwarden/+/+/telemetry` for the ingest."""
    check_root(root)
    if site != "+":
        _check_id("site", site)
    if gateway != "+":
        _check_id("gateway", gateway)
    return f"{root}/{site}/{gateway}/{channel.value}"


# ---------------------------------------------------------------------------------- codec

_M = TypeVar("_M", bound=BaseModel)

def validated(cls: type[_M], **fields: Any) -> _M:
    """Construct through validation, turning a ValidationError into a ContractError."""
    try:
        return cls.model_validate(fields)
    except ValidationError as exc:
        raise ContractError(describe_errors(exc)) from None


def describe_errors(exc: ValidationError, root: str = "payload", limit: int = 5) -> str:
    """A validation error in one line: the first `limit` problems as `field.path: reason`."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or root
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def encode(message: Message) -> bytes:
    """Compact UTF-8 JSON; null fields are left out (every nullable field defaults to null).
    Raises ContractError if the result would exceed the size limit."""
    try:
        data = message.model_dump_json(exclude_none=True).encode()
    except Exception as exc:  # e.g. a lone surrogate in a string
        raise ContractError(f"cannot encode: {type(exc).__name__}: {exc}") from None
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ContractError(f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    return data


def decode(topic: str | Topic, payload: bytes, *, root: str = DEFAULT_ROOT) -> Message:
    """The message a topic and payload carry; ContractError (only) if either is bad."""
    try:
        parsed = topic if isinstance(topic, Topic) else Topic.parse(topic, root)
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise ContractError("payload must be bytes")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ContractError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        raw = bytes(payload)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ContractError(f"payload is not UTF-8: {exc.reason} at byte {exc.start}"
                                ) from None
        try:
            message: Message = _ADAPTERS[parsed.channel].validate_json(text)
        except ValidationError as exc:
            raise ContractError(f"{parsed.channel.value}: {describe_errors(exc)}") from None
        if isinstance(message, _Up) and (message.site, message.gateway) != (
                parsed.site, parsed.gateway):
            raise ContractError(
                f"payload names {message.site}/{message.gateway} but the topic "
                f"{parsed.site}/{parsed.gateway}")
        return message
    except ContractError:
        raise
    except Exception as exc:  # the contract promises ContractError only
        raise ContractError(f"undecodable payload: {type(exc).__name__}: {exc}") from None
