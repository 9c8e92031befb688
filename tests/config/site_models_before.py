"""The pydantic models that gateway/config/site.py's buses, Device and GatewayConfig replaced
(issue 15), verbatim from 9d61447 (only the imports differ): the references
tests/config/test_site_sections.py compares the dataclasses with (validation, errors, dumps,
JSON schema). Their other sections are the module's own, as the originals had them."""

from typing import Annotated, Literal

from pydantic import Field, model_validator

from gateway.config.duration import Duration, at_most
from gateway.config.profile import Id, Name, PointKey, Strict
from gateway.config.section import defaults
from gateway.config.site import (
    MAX_BUS_TIMEOUT_S,
    AlarmSettings,
    Chemistry,
    FailurePolicy,
    FlashingSettings,
    GatewayIdentity,
    Interlock,
    Location,
    Output,
    Panel,
    PointOverride,
    Room,
)
from gateway.operator.settings import OperatorSettings
from gateway.recorder.settings import IncidentSettings, RecorderSettings
from gateway.rules.section import RulesSection
from gateway.uplink.settings import UplinkSettings

__all__ = ["Bus", "BusCommon", "Device", "GatewayConfig", "ModbusRtuBus", "ModbusTcpBus",
           "SerialTextBus"]


class BusCommon(Strict):
    id: Id
    """The bus's id: devices name the bus they are on."""
    timeout: Annotated[Duration, at_most(MAX_BUS_TIMEOUT_S)] = 1.0
    """How long one request may wait for its reply; bounds what a dead device costs the bus
    (at most 10 s: a longer one lets one dead device hold every other device of the bus,
    smoke detectors included, for minutes — `300m` written for `300ms` is 5 hours)."""
    max_gap: Annotated[int, Field(ge=0, le=124)] = 8
    """Unused registers (or bits × 16) a merged request may read across to save a request."""
    failure: FailurePolicy = defaults(FailurePolicy)
    """When a device counts as offline and how its polls back off."""


class ModbusRtuBus(BusCommon):
    type: Literal["modbus_rtu"]
    """`modbus_rtu`: Modbus RTU on a serial line (RS-485)."""
    port: str
    """Serial device (`/dev/ttyUSB0`, `/dev/serial/by-id/...`)."""
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    """Line speed in bit/s (the devices' setting; 9600 is the usual default)."""
    parity: Literal["N", "E", "O"] = "N"
    """`N` none, `E` even, `O` odd."""
    stopbits: Literal[1, 2] = 1
    """1 or 2 stop bits."""
    bytesize: Literal[7, 8] = 8
    """Data bits per character, 7 or 8."""
    inter_frame_delay: Annotated[Duration, at_most(1.0)] | None = None
    """Silence between frames; default 3.5 characters at the bus speed (1.75 ms above 19200)."""

    @property
    def bits_per_char(self) -> int:
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits

    @property
    def char_time(self) -> float:
        return self.bits_per_char / self.baudrate

    @property
    def frame_gap(self) -> float:
        if self.inter_frame_delay is not None:
            return self.inter_frame_delay
        return 0.00175 if self.baudrate > 19200 else 3.5 * self.char_time


class ModbusTcpBus(BusCommon):
    type: Literal["modbus_tcp"]
    """`modbus_tcp`: Modbus TCP (a device or an RS-485-to-Ethernet converter)."""
    host: str
    """The device's or converter's host name or IP address."""
    port: Annotated[int, Field(ge=1, le=65535)] = 502
    """TCP port (502)."""


class SerialTextBus(BusCommon):
    type: Literal["serial_text"]
    """`serial_text`: a line-based text protocol on a serial port (a UPS's Megatec Q1)."""
    port: str
    """Serial device (`/dev/ttyAMA0`, `/dev/ttyUSB1` …)."""
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 2400
    """Line speed in bit/s (2400 for most UPS ports)."""
    parity: Literal["N", "E", "O"] = "N"
    """`N` none, `E` even, `O` odd."""
    stopbits: Literal[1, 2] = 1
    """1 or 2 stop bits."""
    bytesize: Literal[7, 8] = 8
    """Data bits per character, 7 or 8."""


Bus = Annotated[ModbusRtuBus | ModbusTcpBus | SerialTextBus, Field(discriminator="type")]


class Device(Strict):
    id: Id
    """The device's id: point ids (`th-1.temperature`), outputs and alarms name it."""
    bus: Id
    """The bus it is on (an id from `buses`)."""
    profile: Name
    """Its device profile (a file in `profiles_dir` or the shipped library)."""
    unit: Annotated[int, Field(ge=0, le=247)] = 1
    """Modbus unit (slave) id; ignored on serial-text buses."""
    room: Id
    """The room it is in (an id from `rooms`)."""
    location: Location = defaults(Location)
    """Where it hangs in the room; the panel's alarm cards show it."""
    poll_interval: Duration | None = None
    """Defaults to the profile's default_poll_interval."""
    name: str | None = None
    """A human name for the panel."""
    points: dict[PointKey, PointOverride] = {}
    """Site adjustments of the profile's points, by point name."""
    enabled: bool = True
    """False: not polled (kept in the file, e.g. while it is being replaced). An output or
    output feedback on it is refused: take those out of the file too while it is."""
    chemistry: Chemistry | None = None
    """A battery device's chemistry (issue 11); default: its room's."""

    @model_validator(mode="after")
    def _interval(self) -> "Device":
        if self.poll_interval is not None and self.poll_interval < 0.05:
            raise ValueError("poll_interval must be at least 50ms")
        return self



class GatewayConfig(Strict):
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
    rooms: tuple[Room, ...] = Field(min_length=1)
    """The rooms the gateway watches."""
    buses: tuple[Bus, ...] = Field(min_length=1)
    """Serial lines and Modbus TCP links it polls."""
    devices: tuple[Device, ...] = Field(min_length=1)
    """The devices on those buses."""
    outputs: tuple[Output, ...] = ()
    """Local alarm outputs (siren, strobe, fan …) the rules drive."""
    interlocks: tuple[Interlock, ...] = ()
    """Outputs that must not run together."""
    panel: Panel = defaults(Panel)
    """The local alarm panel (HTTP)."""
    rules: RulesSection = RulesSection.model_construct()
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
