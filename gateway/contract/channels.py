"""Topics without pydantic (issue 15): the channels, their QoS/retain/direction and outbox
kind, topic parsing and subscription filters — what a running gateway's uplink reads at rest.
gateway.contract.topics adds the message each channel carries (the models)."""

from __future__ import annotations

from enum import StrEnum

from gateway.contract.vocab import DEFAULT_ROOT, ID_RE, ContractError, MessageKind
from gateway.records import dataclass

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
    INCIDENTS = "incidents"  # issue 12: incident records, chunked


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
    # issue 12: evidence, so kind `alarm` (sent before telemetry, dropped last)
    Channel.INCIDENTS: ChannelSpec(1, False, True, MessageKind.ALARM),
}


def check_id(what: str, value: str) -> None:
    if not isinstance(value, str) or ID_RE.fullmatch(value) is None:
        raise ContractError(f"{what} {value!r} is not a valid id "
                            "([A-Za-z0-9][A-Za-z0-9_.-]*, at most 64 characters)")


def check_root(root: str) -> None:
    """A root is one or more id-like levels (`roomwarden`, `acme/roomwarden`)."""
    if not isinstance(root, str) or not root:
        raise ContractError("topic root must not be empty")
    for level in root.split("/"):
        check_id("topic root level", level)


@dataclass(frozen=True, slots=True)
class Topic:
    site: str
    gateway: str
    channel: Channel
    root: str = DEFAULT_ROOT

    def __post_init__(self) -> None:
        check_root(self.root)
        check_id("site", self.site)
        check_id("gateway", self.gateway)
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
        check_id("site", site)
    if gateway != "+":
        check_id("gateway", gateway)
    return f"{root}/{site}/{gateway}/{channel.value}"
