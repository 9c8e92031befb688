"""The gateway config as flashed to a site: identity, rooms, buses and devices, and the
sections of the features (outputs are gateway.config.outputs', buses gateway.config.buses',
re-exported here). Every class is a plain dataclass (gateway.config.section) but the `rules:`
section's; the config is validated with `validator(GatewayConfig)` (gateway.config.loader)."""

import re
from ipaddress import ip_address, ip_network
from typing import Annotated, Literal, get_args

from gateway.config.buses import (
    MAX_BUS_TIMEOUT_S,
    Bus,
    BusCommon,
    FailurePolicy,
    ModbusRtuBus,
    ModbusTcpBus,
    SerialTextBus,
)
from gateway.config.duration import Duration, at_most
from gateway.config.ipnet import IPvAnyNetwork
from gateway.config.names import Id, Name, PointKey
from gateway.config.numbers import FiniteFloat, Scale, check_range
from gateway.config.outputs import Interlock, Output, OutputFeedback, OutputRole, WriteBackoff
from gateway.config.section import Check, Limits, default_factory, defaults, section
from gateway.contract.vocab import MAX_CONFIG_BYTES
from gateway.flashing.keys import KeyFileError, TrustedKey, parse_public_key_line
from gateway.operator.settings import (  # issue 9: remote operator commands
    OperatorSettings,
    Permission,
)
from gateway.panel.passwords import parse_hash
from gateway.recorder.settings import IncidentSettings, RecorderSettings  # issue 12
from gateway.records import dataclass
from gateway.rules.section import RulesSection
from gateway.uplink.settings import UplinkSettings

MAX_HEALTH_TIMEOUT_S = 600.0
"""Longest trial of a newly applied config."""

__all__ = ["MAX_BUS_TIMEOUT_S", "AlarmSettings", "Bus", "BusCommon", "Chemistry", "Device",
           "FailurePolicy", "FlashingSettings", "GatewayConfig", "GatewayIdentity", "Interlock",
           "Location", "ModbusRtuBus", "ModbusTcpBus", "Output", "OutputFeedback", "OutputRole",
           "Panel", "PanelUser", "PointOverride", "Room", "SerialTextBus", "WriteBackoff"]


def _time_zone(name: str) -> str:
    """A zone this machine's time-zone database knows (`Asia/Shangai` was taken, and the panel
    and `status` then disagreed on the time shown: one fell back to UTC, one the name)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        try:  # (a machine without a time-zone database cannot judge: taken, shown as UTC)
            ZoneInfo("Asia/Shanghai")
        except (ZoneInfoNotFoundError, ValueError, OSError):
            return name
        raise ValueError(f"{name!r} is not a time zone this machine knows (IANA names: "
                         "Asia/Shanghai, Asia/Urumqi, UTC …)") from None
    return name


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayIdentity:
    id: Id
    """This gateway's id: topic names, journal and panel use it (letters, digits, `-`, `_`)."""
    site: Id
    """The site's id: gateways of one site share it."""
    name: str | None = None
    """A human name for the panel's title and `roomwarden status`."""
    timezone: Annotated[str, Check(_time_zone)] = "Asia/Shanghai"
    """IANA time zone of the site (`Asia/Shanghai`, `UTC` …): the panel, `status` and the demo show
    times in it. Default Asia/Shanghai."""


# --- issue 11: battery chemistry (rule defaults follow it; gateway/rules/config.py) -------
Chemistry = Literal["vrla", "vla", "lfp", "nmc"]
"""Battery chemistry: valve-regulated or vented lead-acid, lithium iron phosphate, NMC."""
# --- end issue 11 -----------------------------------------------------------------------------


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class Room:
    id: Id
    """The room's id: devices, outputs, suppressions and rule overrides name it."""
    type: Literal[
        "equipment", "data_center", "battery", "energy_storage", "distribution", "ups", "other"
    ]
    """What the room holds; rule packs select by it (battery rules only in battery rooms)."""
    name: str | None = None
    """A human name: the panel's alarm cards and readings show it."""
    chemistry: Chemistry | None = None
    """The batteries in this room (issue 11): rule defaults follow it (docs/rules.md)."""


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class Location:
    row: str | None = None
    """Rack row (`A`)."""
    rack: str | None = None
    """Rack (`A03`)."""
    position: str | None = None
    """Where on or near the rack (`cold aisle, rack inlet 1.1 m`)."""


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class PointOverride:
    """Site adjustments of one profile point for one device."""

    valid_min: FiniteFloat | None = None
    """Readings below this are invalid (the profile's own range by default)."""
    valid_max: FiniteFloat | None = None
    """Readings above this are invalid (the profile's own range by default)."""
    scale: Scale | None = None
    """Replaces the profile's scale factor for this device."""
    offset: FiniteFloat | None = None
    """Calibration offset added after the profile's own scale and offset."""
    quantity: Name | None = None
    """Replaces the point's quantity (what rules select it by)."""
    invert: bool | None = None
    """For a bool point: report the opposite of the profile (a contact wired the other way)."""
    field_device: bool | None = None
    """Replaces the profile's `field_device`: true when this input is wired to a field device
    of its own (a detector zone on an input module), counted apart by `distinct: device`."""
    enabled: bool = True
    """False: the point is not read or reported."""

    def __post_init__(self) -> None:
        check_range(self.valid_min, self.valid_max, names=("valid_min", "valid_max"))


@section
@dataclass(frozen=True, slots=True, kw_only=True, weakref_slot=True)  # gateway.field.points
class Device:
    id: Id
    """The device's id: point ids (`th-1.temperature`), outputs and alarms name it."""
    bus: Id
    """The bus it is on (an id from `buses`)."""
    profile: Name
    """Its device profile (a file in `profiles_dir` or the shipped library)."""
    unit: Annotated[int, Limits(ge=0, le=247)] = 1
    """Modbus unit (slave) id; ignored on serial-text buses."""
    room: Id
    """The room it is in (an id from `rooms`)."""
    location: Location = defaults(Location)
    """Where it hangs in the room; the panel's alarm cards show it."""
    poll_interval: Duration | None = None
    """Defaults to the profile's default_poll_interval."""
    name: str | None = None
    """A human name for the panel."""
    points: dict[PointKey, PointOverride] = default_factory(dict)
    """Site adjustments of the profile's points, by point name."""
    enabled: bool = True
    """False: not polled (kept in the file, e.g. while it is being replaced). An output or
    output feedback on it is refused: take those out of the file too while it is."""
    chemistry: Chemistry | None = None
    """A battery device's chemistry (issue 11); default: its room's."""

    def __post_init__(self) -> None:
        if self.poll_interval is not None and self.poll_interval < 0.05:
            raise ValueError("poll_interval must be at least 50ms")


ALL_PERMISSIONS: tuple[Permission, ...] = get_args(Permission)
"""Every right a panel user or an operator key can be given."""

_HOST_NAME = re.compile(r"\A[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9.])?\Z")


def _host_name(host: str) -> str:
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ip_address(bare)
    except ValueError:
        if not _HOST_NAME.match(host):
            raise ValueError(f"{host!r} is no DNS name or IP address (no port, no scheme: "
                             "`panel.site.example`, `192.168.10.2`)") from None
    return host


HostName = Annotated[str, Limits(min_length=1, max_length=253), Check(_host_name)]
"""A DNS name (`panel.site.example`) or an IP address (`192.168.10.2`, `[fd00::2]`)."""


def _password_hash(text: str) -> str:
    """A hash the panel can verify against, parsed as the panel parses it when the gateway
    starts (gateway.panel.front: a malformed one stopped the start, after the check passed).
    The reason never quotes the field: it may be a password written in by mistake."""
    parse_hash(text)  # MalformedHash (a ValueError) says what is wrong
    return text


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class PanelUser:
    name: Annotated[str, Limits(pattern=r"^[A-Za-z0-9_.@-]+$", max_length=64)]
    """Login name."""
    password_hash: Annotated[str, Check(_password_hash)]
    """`roomwarden passwd` prints one (scrypt); never a plain password."""
    may: tuple[Permission, ...] = ALL_PERMISSIONS
    """What the user may do, with the names of `operators.keys[].may`: acknowledge (and
    reset a latched alarm; `acknowledge_all` allows the same on the panel, whose Acknowledge
    all names the alarms shown), shelve (and unshelve), suppress (and unsuppress),
    reset_output. Default: all of them; `[]`: a user who logs in only to view
    (`login_to_view`). Anything else is refused with 403."""


METRICS_ALLOW_DEFAULT: tuple[IPvAnyNetwork, ...] = tuple(
    ip_network(n) for n in ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12",
                            "192.168.0.0/16", "fc00::/7"))


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class Panel:
    """The local alarm panel: HTTP server in the daemon."""

    enabled: bool = True
    """False: no panel (and no /metrics, /healthz)."""
    bind: str = "127.0.0.1"
    """Address to listen on; a gateway's LAN address (or 0.0.0.0) to reach it from a phone."""
    port: Annotated[int, Limits(ge=1, le=65535)] = 8080
    """TCP port of the panel."""
    users: tuple[PanelUser, ...] = ()
    """Who may log in to acknowledge, shelve and suppress."""
    login_to_view: bool = False
    """Reading needs no login unless this is set; changing state always does."""
    session_ttl: Duration = 8 * 3600.0
    """How long a login lasts."""
    metrics: bool = True
    """Serve Prometheus metrics on `GET /metrics` (no login, like any exporter)."""
    metrics_allow: tuple[IPvAnyNetwork, ...] = METRICS_ALLOW_DEFAULT
    """Client networks `/metrics` answers (others get 403): by default loopback and the private
    ranges (RFC 1918, IPv6 ULA) a site LAN or the NOC's VPN uses; `[0.0.0.0/0, ::/0]` = any."""
    hosts: tuple[HostName, ...] = ()
    """More names (or addresses) the panel is reached by, e.g. a TLS proxy's
    `panel.site.example`: a request whose `Host` is none of these, `panel.bind`, `localhost`,
    this machine's name or one of its addresses (those with `panel.port`) is refused with 421
    (DNS rebinding). A name listed here is taken on any port. /healthz and /metrics answer
    any `Host`."""
    trusted_proxies: tuple[IPvAnyNetwork, ...] = ()
    """Reverse proxies (e.g. a TLS proxy on `127.0.0.1/32`) whose `X-Forwarded-For` names the
    real client: login throttling and the panel's log lines then tell clients apart behind
    it. Empty (default): the header is ignored, as anyone can write it."""


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmSettings:
    """Alarm management (ISA-18.2 / EEMUA 191 starting values)."""

    chatter_count: Annotated[int, Limits(ge=2, le=100_000)] = 3
    """Activations within `chatter_window` that make an alarm chattering (held active)."""
    chatter_window: Annotated[Duration, Limits(gt=0)] = 60.0
    """The window `chatter_count` counts activations in."""
    chatter_hold: Duration = 60.0
    """How long the condition must stay clear before a chattering alarm returns."""
    flood_count: Annotated[int, Limits(ge=2, le=100_000)] = 10
    """More new alarms than this within `flood_window` is a flood."""
    flood_window: Annotated[Duration, Limits(gt=0)] = 600.0
    """The window `flood_count` counts new alarms in."""
    retention_days: Annotated[float, Limits(gt=0, le=3650)] = 90.0
    """How long the alarm journal keeps events."""


def _trusted_keys(lines: tuple[str, ...]) -> tuple[str, ...]:
    seen: set[str] = set()
    for index, line in enumerate(lines):
        try:
            key = parse_public_key_line(line)
        except KeyFileError as exc:
            raise ValueError(f"trusted_keys[{index}]: {exc}") from None
        if key.key_id in seen:
            raise ValueError(f"trusted_keys[{index}]: key {key.key_id} is listed twice")
        seen.add(key.key_id)
    return lines


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class FlashingSettings:
    """Signed config flashing (`roomwarden flash`): who may change this gateway's config."""

    trusted_keys: Annotated[tuple[str, ...], Check(_trusted_keys)] = ()
    """Public key lines as written by `roomwarden keys new` (`ed25519:<base64> NAME`)."""
    max_bytes: Annotated[int, Limits(ge=1024, le=MAX_CONFIG_BYTES)] = MAX_CONFIG_BYTES
    """Largest config (UTF-8 bytes) a `config/set` may carry."""
    health_timeout: Annotated[Duration, Limits(gt=0), at_most(MAX_HEALTH_TIMEOUT_S)] = 30.0
    """How long a newly applied config must run healthy before it becomes last-known-good (at
    most 10 minutes: during the trial a new config's trouble alarms are held)."""
    allow_local_unsigned: bool = True
    """Accept unsigned configs (and evacuation drills) over the local control socket: every
    local user who may open it (root and the `roomwarden` group: the socket is 0660) may then
    apply a config, or run a live drill that drives the outputs; its log
    line and the config store record the socket's real user beside the author given (`alice
    (as root)`). False: a local apply must be signed too (`config apply --key`)."""

    def trusted(self) -> tuple[TrustedKey, ...]:
        return tuple(parse_public_key_line(line) for line in self.trusted_keys)


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    """One site's gateway config file."""

    version: Literal[1] = 1
    """Config format version: 1."""
    gateway: GatewayIdentity
    """This gateway's identity and time zone."""
    profiles_dir: str | None = None
    """A directory of the site's own device profiles, relative to this file. Profiles are
    looked for here first, then in the shipped library (the repository's `hardware/profiles`,
    or /usr/share/roomwarden/profiles on an installed gateway): a site's profiles add to the
    shipped ones, and one with a shipped profile's id replaces it for this site."""
    rooms: Annotated[tuple[Room, ...], Limits(min_length=1)]
    """The rooms the gateway watches."""
    buses: Annotated[tuple[Bus, ...], Limits(min_length=1)]
    """Serial lines and Modbus TCP links it polls."""
    devices: Annotated[tuple[Device, ...], Limits(min_length=1)]
    """The devices on those buses."""
    outputs: tuple[Output, ...] = ()
    """Local alarm outputs (siren, strobe, fan …) the rules drive."""
    interlocks: tuple[Interlock, ...] = ()
    """Outputs that must not run together."""
    panel: Panel = defaults(Panel)
    """The local alarm panel (HTTP)."""
    rules: RulesSection = RulesSection.model_construct()  # a frozen model: one for all
    """Which rule packs run and site overrides of their parameters."""
    alarms: AlarmSettings = defaults(AlarmSettings)
    """Alarm management: chattering, floods, journal retention."""
    uplink: UplinkSettings | None = None
    """MQTT uplink to the central ingest; none = this gateway works on its own."""
    flashing: FlashingSettings | None = None
    """Signed config flashing over the uplink; none = configs change only locally."""
    # --- issue 9: remote operator commands (gateway/operator/settings.py) ---------------------
    operators: OperatorSettings = defaults(OperatorSettings)
    """Operator keys that may acknowledge, shelve or suppress over `cmd`, and what each may
    do; none: every remote alarm command is refused."""
    # --- end issue 9 ----------------------------------------------------------------------------
    # --- issue 12: flight recorder and incident records (gateway/recorder/settings.py) ---------
    recorder: RecorderSettings = defaults(RecorderSettings)
    """The last `window` (15 min) of every point at acquisition resolution, in memory."""
    incidents: IncidentSettings = defaults(IncidentSettings)
    """Evidence records of major and critical alarms, in the state directory."""
    # --- end issue 12 ---------------------------------------------------------------------------
