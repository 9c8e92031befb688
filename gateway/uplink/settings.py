"""The `uplink:` section of a gateway config: the MQTT broker, the outbox, report by exception
and replay pacing. Absent section = no uplink (the gateway runs standalone).

```yaml
uplink:
  broker: mqtt.example.net
  port: 8883
  tls: {ca_file: /etc/roomwarden/ca.pem}
  username: gw-bj-yz-01
  password_file: /etc/roomwarden/mqtt.password   # read at each connect, never logged
  exception: {deadband: 0.1, deadbands: {temperature: 0.2}, max_interval: 5m}
  replay: {messages_per_s: 20, bytes_per_s: 65536}
  state_interval: 60s                             # retained GatewayState refresh
  delivery: ingest          # or puback: a consumer other than the RoomWarden ingest
  ack_timeout: 30s          # publish again what the ingest has not confirmed by then
```

Plain frozen dataclasses, without pydantic at import (gateway.config.section, issue 15):
pydantic validates them as fields of `GatewayConfig`, a running gateway uses them unpickled.
"""

from typing import Annotated, Literal

from gateway.config.duration import Duration
from gateway.config.names import Name
from gateway.config.section import Check, Limits, default_factory, defaults, section
from gateway.config.state_files import owner_of
from gateway.contract.channels import check_root
from gateway.contract.vocab import DEFAULT_ROOT, ContractError
from gateway.records import dataclass

Deadband = Annotated[float, Limits(ge=0, allow_inf_nan=False)]
"""An absolute deadband: finite, not negative."""


def _outbox_path(path: str) -> str:
    """Not on the gateway's own other state (gateway.config.state_files): the outbox would
    write its tables into that file, or move it aside as a damaged outbox. A relative path
    is judged here, as the gateway resolves it (against its state directory); an absolute one
    where the gateway knows its state directory (gateway.uplink.parts.outbox_path)."""
    owner = owner_of(path)
    if owner is not None:
        raise ValueError(f"{path!r} is {owner} in the gateway's state directory: the outbox "
                         "must not land on the gateway's own state (default "
                         "uplink/outbox.sqlite)")
    return path


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class TlsSettings:
    ca_file: str | None = None
    """CA bundle that signed the broker's certificate; None: the system's trust store."""
    cert_file: str | None = None
    """Client certificate (mutual TLS), with `key_file`."""
    key_file: str | None = None
    """The client certificate's private key (with `cert_file`)."""
    insecure: bool = False
    """Skip the broker host-name check (test benches only)."""

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxSettings:
    path: Annotated[str, Check(_outbox_path)] = "uplink/outbox.sqlite"
    """Relative to the gateway's state directory (or absolute). Never one of the gateway's
    own other files there (`alarms.sqlite`, `operator/commands.sqlite`, `rate_windows.bin`,
    `gateway.lock`, `control.sock`, anything under `config/` or `incidents/`): the check
    refuses it (an absolute path into the state directory: the gateway, when it starts the
    config). An existing file at the path that is not an outbox — not empty, not beginning
    with SQLite's header, its name not ending in `.sqlite` — is refused when the gateway
    starts the config, never moved or overwritten; a damaged outbox is moved aside (logged
    `event=outbox_corrupt`) and a fresh one started."""
    budget_mb: Annotated[float, Limits(gt=0, le=100_000)] = 256.0
    """Disk the outbox may use; past it the oldest telemetry goes first (alarm events last)."""
    commit_interval: Duration = 1.0
    """Longest a snapshot, command result or telemetry batch due for its commit waits in memory
    (alarm events: at once), and the window whose polls share one telemetry batch."""
    telemetry_hold: Duration = 10.0
    """Telemetry is published from memory and committed only if the central side has not
    acknowledged it by then (or while the uplink is disconnected or the ingest away, within
    `commit_interval`): acknowledged in time, it never touches the disk. What a power cut can
    lose of telemetry: at most this much, of what was not acknowledged yet."""
    delete_wait: Duration = 30.0
    """Longest the delete of stored messages the central side confirmed waits for a commit that
    happens anyway (an alarm event's, a command result's) instead of a commit of its own. A
    crash before it only sends them again, and the ingest recognises them as stored."""

    def __post_init__(self) -> None:
        if not 0.01 <= self.commit_interval <= 1.0:
            raise ValueError("commit_interval must be between 10ms and 1s")
        if not 1.0 <= self.telemetry_hold <= 300.0:
            raise ValueError("telemetry_hold must be between 1s and 5m (it is how much "
                             "unacknowledged telemetry a power cut can lose)")
        if not 0 <= self.delete_wait <= 600.0:
            raise ValueError("delete_wait must be between 0s and 10m")


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class ExceptionSettings:
    """Report by exception (gateway.uplink.exception_filter)."""

    deadband: Deadband = 0.0
    """Default absolute deadband; 0 reports every change."""
    deadbands: dict[Name, Deadband] = default_factory(dict)
    """Per quantity (`temperature: 0.2`)."""
    point_deadbands: dict[str, Deadband] = default_factory(dict)
    """Per point (`th-1.temperature: 0.5`)."""
    max_interval: Duration = 300.0
    """Heartbeat: a polled point is reported at least this often."""

    def __post_init__(self) -> None:
        if self.max_interval <= 0:
            raise ValueError("max_interval must be positive")


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class ReplaySettings:
    """Pacing of the backlog after an outage (live messages are never paced)."""

    messages_per_s: Annotated[float, Limits(gt=0, le=100_000, allow_inf_nan=False)] = 20.0
    """Backlog messages published per second at most."""
    bytes_per_s: Annotated[float, Limits(gt=0, le=1e9, allow_inf_nan=False)] = 64 * 1024.0
    """Backlog bytes published per second at most."""


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class UplinkSettings:
    broker: Annotated[str, Limits(min_length=1, max_length=253)]
    """The MQTT broker's host name or address."""
    port: Annotated[int, Limits(ge=1, le=65535)] = 1883
    """The broker's port (1883; 8883 with TLS)."""
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    """MQTT protocol version: `3.1.1` or `5`."""
    client_id: Annotated[str, Limits(min_length=1, max_length=64,
                                     pattern=r"^[A-Za-z0-9_.:-]+$")] | None = None
    """Default `roomwarden-<gateway id>`."""
    root: str = DEFAULT_ROOT
    """Topic root, one or more levels (`acme/roomwarden`)."""
    keepalive: Duration = 30.0
    """MQTT keepalive: the broker drops the session (and sends our will) after 1.5 times this
    without traffic."""
    tls: TlsSettings | None = None
    """TLS to the broker (mqtts); none: plain TCP."""
    username: Annotated[str, Limits(min_length=1, max_length=128)] | None = None
    """Broker user name (the password in `password_file`)."""
    password_file: str | None = None
    """Read at every connect (so a rotated password needs no restart); never logged."""
    reconnect_min: Duration = 1.0
    """First wait before a reconnect."""
    reconnect_max: Duration = 60.0
    """Reconnects back off exponentially from reconnect_min to reconnect_max."""
    max_inflight: Annotated[int, Limits(ge=1, le=1000)] = 20
    """Messages published and awaiting PUBACK at once."""
    state_interval: Duration = 60.0
    """The retained GatewayState is re-published this often (outbox figures, devices online),
    and at once when the devices online or the config identity change."""
    delivery: Literal["ingest", "puback"] = "ingest"
    """When an outbox entry (telemetry batch, alarm event) may leave: `ingest` — when the
    RoomWarden ingest's acknowledgement watermark (`<root>/<site>/<gateway>/ack`) says the
    database stored it; `puback` — when the broker acknowledged it, for a consumer other than
    the RoomWarden ingest (shown in GatewayState). docs/mqtt-contract.md, "Delivery"."""
    ack_timeout: Duration = 30.0
    """An entry the broker acknowledged and the ingest has not confirmed by then is published
    again (the wait doubles with each attempt, up to 5 minutes; to an hour once the ingest has
    confirmed nothing for 5 minutes)."""
    outbox: OutboxSettings = defaults(OutboxSettings)
    """The durable outbox (SQLite) that keeps what is not yet delivered."""
    exception: ExceptionSettings = defaults(ExceptionSettings)
    """Report by exception: deadbands and heartbeat of telemetry."""
    replay: ReplaySettings = defaults(ReplaySettings)
    """Pacing of the backlog after an outage."""

    def __post_init__(self) -> None:
        try:
            check_root(self.root)
        except ContractError as exc:
            raise ValueError(str(exc)) from None
        if not 1.0 <= self.keepalive <= 65535:
            raise ValueError("keepalive must be between 1s and 18h")
        if not 0.01 <= self.reconnect_min <= self.reconnect_max <= 3600:
            raise ValueError("need 10ms <= reconnect_min <= reconnect_max <= 1h")
        if not 0.1 <= self.state_interval <= 86400:
            raise ValueError("state_interval must be between 100ms and 24h")
        if not 0.1 <= self.ack_timeout <= 300:
            raise ValueError("ack_timeout must be between 100ms and 5m")
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs a username")
