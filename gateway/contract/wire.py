"""The MQTT wire contract, version 1, in one namespace: topics and payloads shared by the
gateway and the ingest (defined in the modules beside this one, re-exported here).

This module is the single source of truth (DESIGN principle 3): the gateway encodes with it, the
central ingest service decodes with it, and docs/mqtt-contract.md shows an example of every
message that the tests parse with it. What a running gateway publishes about itself — state,
point catalog, telemetry, alarm events, the active-alarm snapshot — it writes without the
models and without pydantic (gateway.contract.outbound, gateway.contract.alarm_reports,
gateway.contract.telemetry_encoder, JSON by gateway.contract.jsontext), byte for byte their
encoding; the ingest's acknowledgements it reads without `DeliveryAck`
(gateway.contract.inbound), refusing exactly what `decode` refuses. Those modules, and the
vocabulary and topics they share with the models (gateway.contract.vocab,
gateway.contract.channels, gateway.contract.points), import no pydantic (issue 15): importing
this module does.

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
| `incidents`     | up        | 1   | no       | IncidentChunk (a stored incident record, chunked) |

Payloads are UTF-8 JSON objects with `"v": 1`, parsed strictly: unknown keys, wrong types,
non-finite floats, oversize strings, lists or payloads are errors. `decode()` raises
`ContractError` — and nothing else — for every bad topic or payload.

Telemetry is compact: a batch holds rows `[point, value, dt, quality]` where `dt` is ns after
the batch's `t0` (the oldest sample), so a row does not repeat a 19-digit timestamp; the
per-point metadata the ingest needs for its tags (device, room, quantity, unit) travels once in
a `PointCatalog` on `meta`, named by a content hash that every batch carries in `catalog`.
"""

from __future__ import annotations

from gateway.contract.base import (
    Actor,
    AlarmRule,
    AlarmSubject,
    FiniteFloat,
    Hash,
    Id,
    KeyId,
    LongText,
    Name,
    Ns,
    PointId,
    RequestId,
    Seq,
    Sha256,
    Short,
    Signature,
    StatusCode,
    Text,
    Value,
    describe_errors,
    validated,
)
from gateway.contract.codec import (
    decode,
    encode,
)
from gateway.contract.commands import (
    ALARM_COMMAND_TYPES,
    COMMAND_TYPES,
    MAX_COMMAND_BYTES,
    MAX_COMMAND_LIFETIME_S,
    MAX_SHELVE_S,
    Acknowledge,
    AcknowledgeAll,
    AlarmCommand,
    AlarmRef,
    Command,
    CommandResult,
    RequestState,
    ResetOutput,
    Scope,
    Shelve,
    Suppress,
    Unshelve,
    Unsuppress,
)
from gateway.contract.configmsg import (
    MAX_STATUS_ERROR,
    ConfigSet,
    ConfigStatus,
    ConfigVersion,
)
from gateway.contract.enums import AlarmState, EventKind, Quality, Severity
from gateway.contract.events import (
    ActiveAlarm,
    ActiveAlarmsSnapshot,
    AlarmEventMessage,
    GatewayState,
    OutboxStatus,
)
from gateway.contract.inbound import Watermark, read_ack

# --- issue 12: incident records, chunked ---
from gateway.contract.incidents import (
    CHUNK_BYTES,
    INCIDENT_FORMAT,
    MAX_INCIDENT_BYTES,
    IncidentChunk,
    IncidentId,
    chunk_bytes,
    parse_record,
    split_record,
)

# --- end issue 12 ---
from gateway.contract.outbound import (
    CatalogReport,
    DeliveryTerms,
    OutboundMessage,
    OutboxFigures,
    PointTags,
    StateReport,
)
from gateway.contract.telemetry import (
    DeliveryAck,
    DeliveryInfo,
    PointCatalog,
    PointMeta,
    PointTagged,
    SampleRow,
    StreamId,
    TelemetryBatch,
    catalog_hash,
    wire_value,
)
from gateway.contract.topics import (
    CHANNELS,
    Channel,
    ChannelSpec,
    Message,
    Topic,
    channel_of,
    check_root,
    topic_filter,
)
from gateway.contract.vocab import (
    DEFAULT_ROOT,
    MAX_ACTIVE_ALARMS,
    MAX_BATCH_ROWS,
    MAX_CATALOG_POINTS,
    MAX_CONFIG_BYTES,
    MAX_PAYLOAD_BYTES,
    VERSION,
    ContractError,
    MessageKind,
)

__all__ = [
    "ALARM_COMMAND_TYPES",
    "CHANNELS",
    "CHUNK_BYTES",  # issue 12
    "COMMAND_TYPES",
    "DEFAULT_ROOT",
    "INCIDENT_FORMAT",  # issue 12
    "MAX_ACTIVE_ALARMS",
    "MAX_BATCH_ROWS",
    "MAX_CATALOG_POINTS",
    "MAX_COMMAND_BYTES",
    "MAX_COMMAND_LIFETIME_S",
    "MAX_CONFIG_BYTES",
    "MAX_INCIDENT_BYTES",  # issue 12
    "MAX_PAYLOAD_BYTES",
    "MAX_SHELVE_S",
    "MAX_STATUS_ERROR",
    "VERSION",
    "Acknowledge",
    "AcknowledgeAll",
    "ActiveAlarm",
    "ActiveAlarmsSnapshot",
    "Actor",
    "AlarmCommand",
    "AlarmEventMessage",
    "AlarmRef",
    "AlarmRule",
    "AlarmState",
    "AlarmSubject",
    "CatalogReport",
    "Channel",
    "ChannelSpec",
    "Command",
    "CommandResult",
    "ConfigSet",
    "ConfigStatus",
    "ConfigVersion",
    "ContractError",
    "DeliveryAck",
    "DeliveryInfo",
    "DeliveryTerms",
    "EventKind",
    "FiniteFloat",
    "GatewayState",
    "Hash",
    "Id",
    "IncidentChunk",  # issue 12
    "IncidentId",  # issue 12
    "KeyId",
    "LongText",
    "Message",
    "MessageKind",
    "Name",
    "Ns",
    "OutboundMessage",
    "OutboxFigures",
    "OutboxStatus",
    "PointCatalog",
    "PointId",
    "PointMeta",
    "PointTagged",
    "PointTags",
    "Quality",
    "RequestId",
    "RequestState",
    "ResetOutput",
    "SampleRow",
    "Scope",
    "Seq",
    "Severity",
    "Sha256",
    "Shelve",
    "Short",
    "Signature",
    "StateReport",
    "StatusCode",
    "StreamId",
    "Suppress",
    "TelemetryBatch",
    "Text",
    "Topic",
    "Unshelve",
    "Unsuppress",
    "Value",
    "Watermark",
    "catalog_hash",
    "channel_of",
    "check_root",
    "chunk_bytes",  # issue 12
    "decode",
    "describe_errors",
    "encode",
    "parse_record",  # issue 12
    "read_ack",
    "split_record",  # issue 12
    "topic_filter",
    "validated",
    "wire_value",
]
