"""Topics: channels, their QoS/retain/direction, the message each carries, and parsing."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import (
    BaseModel,
    TypeAdapter,
)

from gateway.contract.channels import (
    CHANNELS,
    Channel,
    ChannelSpec,
    Topic,
    check_id,
    check_root,
    topic_filter,
)
from gateway.contract.commands import (
    COMMAND_TYPES,
    Acknowledge,
    AcknowledgeAll,
    Command,
    CommandResult,
    RequestState,
    ResetOutput,
    Shelve,
    Suppress,
    Unshelve,
    Unsuppress,
)
from gateway.contract.configmsg import ConfigSet, ConfigStatus
from gateway.contract.events import ActiveAlarmsSnapshot, AlarmEventMessage, GatewayState
from gateway.contract.incidents import IncidentChunk  # issue 12: incident records
from gateway.contract.telemetry import DeliveryAck, PointCatalog, TelemetryBatch

__all__ = ["CHANNELS", "Channel", "ChannelSpec", "Message", "Topic", "channel_of", "check_id",
           "check_root", "payload_adapter", "topic_filter"]

Message = (TelemetryBatch | PointCatalog | AlarmEventMessage | ActiveAlarmsSnapshot
           | GatewayState | ConfigSet | ConfigStatus | Acknowledge | AcknowledgeAll | Shelve
           | Unshelve | Suppress | Unsuppress | ResetOutput | RequestState | CommandResult
           | DeliveryAck | IncidentChunk)


_CHANNEL_OF: dict[type[BaseModel], Channel] = {
    TelemetryBatch: Channel.TELEMETRY, PointCatalog: Channel.META,
    AlarmEventMessage: Channel.ALARMS, ActiveAlarmsSnapshot: Channel.ALARMS_ACTIVE,
    GatewayState: Channel.STATE, ConfigSet: Channel.CONFIG_SET,
    ConfigStatus: Channel.CONFIG_STATUS, CommandResult: Channel.CMD_RESULT,
    DeliveryAck: Channel.ACK, IncidentChunk: Channel.INCIDENTS,  # issue 12
    **{t: Channel.CMD for t in COMMAND_TYPES},
}

_PAYLOAD_TYPES: dict[Channel, Any] = {
    Channel.STATE: GatewayState,
    Channel.TELEMETRY: TelemetryBatch,
    Channel.META: PointCatalog,
    Channel.ALARMS: AlarmEventMessage,
    Channel.ALARMS_ACTIVE: ActiveAlarmsSnapshot,
    Channel.CONFIG_SET: ConfigSet,
    Channel.CONFIG_STATUS: ConfigStatus,
    Channel.CMD: Command,
    Channel.CMD_RESULT: CommandResult,
    Channel.ACK: DeliveryAck,
    Channel.INCIDENTS: IncidentChunk,  # issue 12
}


@functools.cache
def payload_adapter(channel: Channel) -> TypeAdapter[Any]:
    """The validator of a channel's payloads, built on its first use (issue 15: a process
    builds the schemas of the messages it decodes, not of all of them at import)."""
    return TypeAdapter(_PAYLOAD_TYPES[channel])


def channel_of(message: Message) -> Channel:
    return _CHANNEL_OF[type(message)]
