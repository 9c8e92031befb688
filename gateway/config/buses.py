"""A gateway config's buses (`buses:`): serial lines and Modbus TCP links, as plain frozen
dataclasses (gateway.config.section, issue 15) that pydantic validates in the checking child
and a running gateway reads unpickled without pydantic. gateway.config.site re-exports them.

The kinds share `BusCommon`'s keys, first in each kind's schema and dump, as the models they
replace had them by inheritance. `Bus` is their union told apart by `type:`
(gateway.config.section_markers' `Discriminated`: pydantic's `Field(discriminator="type")`,
handed to pydantic when it builds a validator or a schema, not imported to declare it)."""

from typing import Annotated, Literal

from gateway.config.duration import Duration, at_most
from gateway.config.names import Id
from gateway.config.section import Limits, defaults, section
from gateway.config.section_markers import Discriminated
from gateway.records import dataclass

MAX_BUS_TIMEOUT_S = 10.0
"""Longest wait for one reply on a bus (Modbus TCP gateways with a slow line behind them)."""

__all__ = ["MAX_BUS_TIMEOUT_S", "Bus", "BusCommon", "FailurePolicy", "ModbusRtuBus",
           "ModbusTcpBus", "SerialTextBus"]


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class FailurePolicy:
    """How a bus treats a device that stops answering."""

    offline_after: Annotated[int, Limits(ge=1, le=100)] = 3
    """Consecutive failed polls before the device is reported offline. When twice this many
    devices of the bus (all of them, on a smaller bus) failed in a row with nothing answering
    in between, every device of the bus is offline at once."""
    backoff_max: Duration = 60.0
    """Longest wait between polls of a failing device (exponential from its interval)."""
    backoff_multiplier: Annotated[float, Limits(ge=1.0, le=10.0)] = 2.0
    """Each failed poll of an offline device multiplies the wait by this."""


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class BusCommon:
    id: Id
    """The bus's id: devices name the bus they are on."""
    timeout: Annotated[Duration, at_most(MAX_BUS_TIMEOUT_S)] = 1.0
    """How long one request may wait for its reply; bounds what a dead device costs the bus
    (at most 10 s: a longer one lets one dead device hold every other device of the bus,
    smoke detectors included, for minutes — `300m` written for `300ms` is 5 hours)."""
    max_gap: Annotated[int, Limits(ge=0, le=124)] = 8
    """Unused registers (or bits × 16) a merged request may read across to save a request."""
    failure: FailurePolicy = defaults(FailurePolicy)
    """When a device counts as offline and how its polls back off."""


@section
@dataclass(frozen=True, slots=True, kw_only=True)
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


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class ModbusTcpBus(BusCommon):
    type: Literal["modbus_tcp"]
    """`modbus_tcp`: Modbus TCP (a device or an RS-485-to-Ethernet converter)."""
    host: str
    """The device's or converter's host name or IP address."""
    port: Annotated[int, Limits(ge=1, le=65535)] = 502
    """TCP port (502)."""


@section
@dataclass(frozen=True, slots=True, kw_only=True)
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


Bus = Annotated[ModbusRtuBus | ModbusTcpBus | SerialTextBus, Discriminated("type")]
"""A bus of any kind, by its `type:`."""
