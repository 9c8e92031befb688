"""The ingest's central YAML: broker, database and local files, validated with precise errors.

```yaml
mqtt:
  host: broker.example.net
  port: 8883
  protocol: 5                 # or "3.1.1"
  broker_max_inflight: 20     # 3.1.1: the broker's max_inflight_messages (parking: ≤ half)
  client_id: roomwarden-ingest-1
  shared_group: null          # MQTT 5 $share/<group>/…: only on a broker keeping them
  username: ingest
  password_file: /etc/roomwarden/mqtt.pass
  tls: {ca_file: /etc/roomwarden/ca.pem, cert_file: ..., key_file: ...}
  root: roomwarden
influx:
  url: http://influx.example.net:8086
  token_file: /etc/roomwarden/influx.token
  org: ops
  bucket: roomwarden
  # api: v1                  # InfluxDB 1.x /write instead of org/bucket/token:
  # database: roomwarden      #   database, retention_policy (default: the database's),
  # username: ingest          #   username, password_file
  # store: victoriametrics    # alarm strings as labels of `alarm_history` (VM drops strings)
  batch_size: 5000            # points per write
  flush_interval: 1s
dead_letter: /var/lib/roomwarden-ingest/dead-letter.jsonl
catalog_store: /var/lib/roomwarden-ingest/catalogs.sqlite
dedup_store: /var/lib/roomwarden-ingest/seen.sqlite   # default: next to catalog_store
catalog_wait: 60s             # a batch whose catalog is unknown waits this long for it
series_budget:                # distinct series one gateway may create (gateway.ingest.budget)
  period: 1d                  # counted over a rolling period
  telemetry_series: 100000    # 20,000 points (a gateway's most) in all four qualities, +25%
  alarm_keys: 32500           # (rule, subject): 5 × a large site's ~6,500 alarm bindings
  alarm_series: 100000        # alarm_events / alarm_history tag tuples
  store: /var/lib/roomwarden-ingest/budget.sqlite     # default: next to catalog_store
queue:                        # what the writer's intake holds (gateway.ingest.fairqueue)
  per_gateway_bytes: 16777216 # one gateway's queued messages; then the ingest reads on
  total_bytes: 134217728      #   from the broker only once the writer took some
max_event_age: 24h            # older alarm events and live states: written at receive time
telemetry_retention: 720h     # older telemetry is dead-lettered: the database's retention
http: {bind: 127.0.0.1, port: 9108}                   # /healthz and /metrics (optional)
incidents:                    # the gateways' incident records (gateway.ingest.incidents)
  store: /var/lib/roomwarden-ingest/incidents.sqlite  # default: next to catalog_store
  max_record_bytes: 67108864  # a record (gzip-compressed) at most
  max_incidents: 100000       # shared out per gateway
  max_bytes: 17179869184      # disk budget of records and waiting chunks, shared out per gateway
  quarantine_bytes: 268435456 # records too large for their gateway's share, kept whole
```

Relative file paths are relative to the YAML file's directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    StringConstraints,
    model_validator,
)

from gateway.config.duration import Duration, format_duration
from gateway.config.yamlfile import (
    ConfigError,
    ConfigErrors,
    read_yaml,
    validate,
)
from gateway.contract.wire import DEFAULT_ROOT, ContractError, check_root
from gateway.ingest.budget import SeriesBudgetSettings
from gateway.ingest.fairqueue import QueueSettings
from gateway.ingest.incidents import CentralIncidentSettings  # issue 12
from gateway.strict import StrictModel


def _protocol(value: object) -> object:
    """`protocol: 5` is an int in YAML and `3.1.1` a string; both are accepted."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _root(value: object) -> object:
    if isinstance(value, str):
        try:
            check_root(value)
        except ContractError as exc:
            raise ValueError(str(exc)) from None
    return value


def _at_least(limit: float) -> AfterValidator:
    def check(seconds: float) -> float:
        if seconds < limit:
            raise ValueError(f"{format_duration(seconds)} is shorter than the least of "
                             f"{format_duration(limit)}")
        return seconds

    return AfterValidator(check)


class TlsSettings(StrictModel):
    ca_file: Path | None = None
    """None: the system's CA store."""
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False
    """Skip the host-name check (test brokers only)."""

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (client certificate)")
        return self


class MqttSettings(StrictModel):
    host: Annotated[str, StringConstraints(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    protocol: Annotated[Literal["3.1.1", "5"], BeforeValidator(_protocol)] = "5"
    client_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    """Fixed, so the broker keeps the session (and unacknowledged messages) across restarts."""
    shared_group: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = (
        None)
    """MQTT 5 shared-subscription group: several ingest instances split the stream. Only with
    a broker that restores shared subscriptions after its restart (EMQX, HiveMQ): Mosquitto
    2.0 does not, and drops what is published before the ingest subscribes again. None (the
    default) subscribes plainly: one instance, nothing lost across broker restarts. Ignored
    with protocol 3.1.1."""
    username: str | None = None
    password_file: Path | None = None
    tls: TlsSettings | None = None
    root: Annotated[str, BeforeValidator(_root)] = DEFAULT_ROOT
    keepalive: Duration = 30.0
    session_expiry: Duration = 7 * 24 * 3600.0
    """MQTT 5: how long the broker keeps the session (and queued messages) while we are away."""
    receive_maximum: Annotated[int, Field(ge=1, le=65535)] = 1000
    """MQTT 5: unacknowledged messages the broker may have in flight to us."""
    broker_max_inflight: Annotated[int, Field(ge=2, le=65535)] = 20
    """MQTT 3.1.1: unacknowledged messages the broker has in flight to us at most — its own
    setting (Mosquitto's `max_inflight_messages`, default 20), which 3.1.1 cannot negotiate.
    At most half of it are parked (`max_parked`); raise both together for more."""

    @model_validator(mode="after")
    def _auth(self) -> Self:
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs a username")
        return self


_Name = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class InfluxSettings(StrictModel):
    url: Annotated[str, StringConstraints(pattern=r"^https?://.+")]
    # --- issue 13: the write API (gateway.ingest.writers) -----------------------------------
    api: Literal["v1", "v2"] = "v2"
    """v2: `/api/v2/write` with org, bucket and token (InfluxDB 2.x/3.x, 1.8+,
    VictoriaMetrics); v1: `/write` with database, retention policy, username and password
    (InfluxDB 1.x)."""
    database: _Name | None = None
    """v1: the database (`db`)."""
    retention_policy: _Name | None = None
    """v1: the retention policy (`rp`); None: the database's default."""
    username: _Name | None = None
    """v1: the user (HTTP basic authentication), with `password` or `password_file`."""
    password: SecretStr | None = None
    password_file: Path | None = None
    store: Literal["influxdb", "victoriametrics"] = "influxdb"
    """victoriametrics: the store drops string fields, so each alarm event is also written as
    an `alarm_history` series whose labels carry its strings (gateway.ingest.eventlabels)."""
    # --- end issue 13 -----------------------------------------------------------------------
    token: SecretStr | None = None
    token_file: Path | None = None
    org: _Name | None = None
    """v2 (required there)."""
    bucket: _Name | None = None
    """v2 (required there)."""
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 5000
    flush_interval: Duration = 1.0
    """Longest wait before a partial batch is written."""
    timeout: Duration = 10.0
    retry_max_wait: Duration = 30.0
    """Longest pause between write attempts while the database is unreachable."""

    @model_validator(mode="after")
    def _token(self) -> Self:
        if self.token is not None and self.token_file is not None:
            raise ValueError("give token or token_file, not both")
        # --- issue 13: what each API needs, and nothing of the other's ----------------------
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        if self.api == "v2":
            if self.org is None or self.bucket is None:
                raise ValueError("api v2 needs org and bucket")
            stray = [k for k in ("database", "retention_policy", "username", "password",
                                 "password_file") if getattr(self, k) is not None]
        else:
            if self.database is None:
                raise ValueError("api v1 needs database")
            if (self.password is not None or self.password_file is not None) and \
                    self.username is None:
                raise ValueError("a password needs a username")
            stray = [k for k in ("org", "bucket", "token", "token_file")
                     if getattr(self, k) is not None]
        if stray:
            raise ValueError(f"api {self.api} does not use {', '.join(stray)}")
        # --- end issue 13 -------------------------------------------------------------------
        if not 0 < self.flush_interval <= 60:
            raise ValueError("flush_interval must be more than 0 and at most 60s")
        return self


class HttpSettings(StrictModel):
    """`/healthz` and `/metrics` (Prometheus) of the ingest."""

    bind: Annotated[str, StringConstraints(min_length=1)] = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9108
    """0: any free port (tests)."""


class IngestSettings(StrictModel):
    mqtt: MqttSettings
    influx: InfluxSettings
    dead_letter: Path = Path("dead-letter.jsonl")
    catalog_store: Path = Path("catalogs.sqlite")
    dedup_store: Path | None = None
    """Keys of the messages already written (gateway.ingest.dedup); default `seen.sqlite`
    next to `catalog_store`."""
    dedup_retention: Duration = 8 * 24 * 3600.0
    ack_store: Path | None = None
    """The acknowledgement watermarks (gateway.ingest.watermark); default `acks.sqlite` next to
    `catalog_store`. Ingest instances of one shared-subscription group on one host share it."""
    catalog_wait: Duration = 60.0
    """How long a telemetry batch naming an unknown point catalog is held (unacknowledged)
    while the ingest asks its gateway for the catalog (`request_state`); then it is
    dead-lettered."""
    max_parked: Annotated[int, Field(ge=1, le=10_000)] = 200
    """Batches held for their catalog at most (never more than half of the broker's in-flight
    window — MQTT 5 `mqtt.receive_maximum`, MQTT 3.1.1 `mqtt.broker_max_inflight` — so the
    stream and the catalog itself still arrive), shared among the gateways waiting: beyond it
    the gateway holding the most dead-letters its own oldest (gateway.ingest.writer.shed)."""
    request_state_interval: Duration = 30.0
    """At most one `request_state` command per gateway this often."""
    # --- gateway clocks (gateway.ingest.timecheck, gateway.ingest.alarmorder) ----------------
    max_event_age: Annotated[Duration, _at_least(600.0)] = 86_400.0
    """An alarm event or live gateway state stamped further back is written at its first
    receive time, marked `clock_suspect`, its own time in `gateway_ts`: a clock restored to an
    old time (fake-hwclock) put a live alarm where *Active alarms* (30 days) never looks or
    the database drops it. A backlog older than this is so written too, in its alarms' order
    — but an alarm event that says its gateway's clock was synchronised when it stamped it
    (`clock_synced`) keeps its own time up to `telemetry_retention`. At least 10 minutes."""
    telemetry_retention: Annotated[Duration, _at_least(3600.0)] = 30 * 86_400.0
    """The database's retention: older telemetry is dead-lettered (kind `clock`) rather than
    acknowledged and dropped (VictoriaMetrics answers 204 and drops rows older than its
    `-retentionPeriod`, default 31 days; InfluxDB refuses points older than the bucket's or
    retention policy's duration). At least an hour."""
    order_store: Path | None = None
    """Each alarm's newest event written (gateway.ingest.alarmorder: its events' order across
    restarts); default `alarm-order.sqlite` next to `catalog_store`."""
    # --- end gateway clocks ------------------------------------------------------------------
    http: HttpSettings | None = None
    series_budget: SeriesBudgetSettings = SeriesBudgetSettings()
    """Distinct series one gateway may create within a rolling period; beyond, its messages
    are dead-lettered (gateway.ingest.budget)."""
    queue: QueueSettings = QueueSettings()
    """What the writer's per-gateway queues hold at most (gateway.ingest.fairqueue)."""
    # --- issue 12: the gateways' incident records (gateway.ingest.incidents) ----------------
    incidents: CentralIncidentSettings = CentralIncidentSettings()
    """Where and how much of the gateways' incident records are kept."""

    @property
    def incident_store(self) -> Path:
        return self.incidents.store if self.incidents.store is not None else (
            self.catalog_store.parent / "incidents.sqlite")
    # --- end issue 12 -----------------------------------------------------------------------

    @property
    def budget_store(self) -> Path:
        return self.series_budget.store if self.series_budget.store is not None else (
            self.catalog_store.parent / "budget.sqlite")

    @property
    def seen_store(self) -> Path:
        return self.dedup_store if self.dedup_store is not None else (
            self.catalog_store.parent / "seen.sqlite")

    @property
    def alarm_order_store(self) -> Path:
        return self.order_store if self.order_store is not None else (
            self.catalog_store.parent / "alarm-order.sqlite")

    @property
    def watermark_store(self) -> Path:
        return self.ack_store if self.ack_store is not None else (
            self.catalog_store.parent / "acks.sqlite")

    def resolve(self, base: Path) -> IngestSettings:
        """Relative file paths made relative to `base` (the YAML file's directory)."""
        def fix(p: Path | None) -> Path | None:
            return p if p is None or p.is_absolute() else base / p

        tls = self.mqtt.tls
        if tls is not None:
            tls = tls.model_copy(update={"ca_file": fix(tls.ca_file),
                                         "cert_file": fix(tls.cert_file),
                                         "key_file": fix(tls.key_file)})
        mqtt = self.mqtt.model_copy(update={"password_file": fix(self.mqtt.password_file),
                                            "tls": tls})
        influx = self.influx.model_copy(update={"token_file": fix(self.influx.token_file),
                                                "password_file": fix(self.influx.password_file)})
        return self.model_copy(update={"mqtt": mqtt, "influx": influx,
                                       "dead_letter": fix(self.dead_letter),
                                       "catalog_store": fix(self.catalog_store),
                                       "dedup_store": fix(self.dedup_store),
                                       "ack_store": fix(self.ack_store),
                                       "series_budget": self.series_budget.model_copy(
                                           update={"store": fix(self.series_budget.store)}),
                                       "order_store": fix(self.order_store),
                                       "incidents": self.incidents.model_copy(  # issue 12
                                           update={"store": fix(self.incidents.store)})})

    def influx_token(self) -> str:
        """The token (from the file if one is named); ConfigErrors if it cannot be read."""
        if self.influx.token is not None:
            return self.influx.token.get_secret_value()
        if self.influx.token_file is None:
            return ""
        return _read_secret(self.influx.token_file, "influx.token_file")

    def influx_password(self) -> str | None:
        """v1: the password (from the file if one is named); ConfigErrors if unreadable."""
        if self.influx.password is not None:
            return self.influx.password.get_secret_value()
        if self.influx.password_file is None:
            return None
        return _read_secret(self.influx.password_file, "influx.password_file")

    def mqtt_password(self) -> str | None:
        if self.mqtt.password_file is None:
            return None
        return _read_secret(self.mqtt.password_file, "mqtt.password_file")


def _read_secret(path: Path, key: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigErrors([ConfigError(str(path), tuple(key.split(".")),
                                        f"cannot read: {exc}")]) from exc


def load_settings(path: Path, *, check_files: bool = False) -> IngestSettings:
    """Read and validate the central YAML; ConfigErrors names file, line, path and reason.
    `check_files`: also every file the settings name that the service reads (file_errors)."""
    data, lines = read_yaml(path)
    validated: Any = validate(IngestSettings, data, str(path), lines)
    assert isinstance(validated, IngestSettings)
    settings = validated.resolve(path.parent)
    if check_files:
        from gateway.ingest.settings_files import file_errors  # only a check needs it
        errors = file_errors(settings, str(path), lines)
        if errors:
            raise ConfigErrors(errors)
    return settings
