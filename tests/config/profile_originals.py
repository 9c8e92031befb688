"""The device profiles' pydantic models as they were on 9d61447, verbatim (gateway/config/
profile.py before its classes became sections, issue 15): tests/config/test_profile_sections.py
proves the sections validate, refuse, dump and describe themselves as these did. Their helper
functions and enums are the shipped ones (unchanged). Changed since, in both (7 Dec 2026): the
numbers a reading is computed with are finite and a scale is not 0 (gateway/config/numbers.py),
and a serial profile's `reply_timeout` is at most 10 s, as a bus's `timeout`."""

import re
import warnings
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.buses import MAX_BUS_TIMEOUT_S
from gateway.config.duration import Duration, at_most
from gateway.config.escapes import escapes_known, unescape
from gateway.config.numbers import FiniteFloat, Scale, check_range
from gateway.config.patterns import nests_unbounded_repeats
from gateway.config.profile import (
    MAX_PROFILE_POINTS,
    MIN_POLL_INTERVAL,
    WIDTH_REGISTERS,
    ByteOrder,
    DataType,
    Name,
    RegisterType,
)
from gateway.config.strict_model import Strict


class ValidRange(Strict):
    """Engineering values outside [min, max] are reported with quality `invalid`."""

    min: FiniteFloat | None = None
    max: FiniteFloat | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "ValidRange":
        check_range(self.min, self.max, names=("min", "max"))
        return self


class Flag(Strict):
    """One named bit of a status word; becomes its own boolean point `<point>.<name>`."""

    bit: Annotated[int, Field(ge=0, le=63)]
    name: Name
    quantity: Name | None = None
    description: str | None = None
    active_low: bool = False
    field_device: bool = False
    """This bit is a field device of its own wired to the module — a conventional detector
    zone, a contact — not one of the module's own readings: rules that count distinct devices
    (`distinct: device`, fire.smoke_coincidence) count it apart from the module's other
    points. Without it, the points of one device count once (two smoke points of one smart
    detector are one detector)."""


class PointCommon(Strict):
    """Fields shared by Modbus and serial-text points."""

    name: Name
    description: str | None = None
    unit: str | None = None
    quantity: Name | None = None
    """What the value means (temperature, h2_lel, smoke …); rules select points by it."""
    scale: Scale = 1.0
    offset: FiniteFloat = 0.0
    """Engineering value = raw × scale + offset."""
    valid: ValidRange | None = None
    enum: dict[int, str] | None = None
    """Status codes: raw value → label."""
    flags: tuple[Flag, ...] = ()
    writable: bool = False
    field_device: bool = False
    """This input is a field device of its own wired to the module — a conventional detector
    zone, a contact — not one of the module's own readings: rules that count distinct devices
    (`distinct: device`, fire.smoke_coincidence) count it apart from the module's other
    points. Without it, the points of one device count once (two smoke points of one smart
    detector are one detector)."""

    @field_validator("flags")
    @classmethod
    def _unique_flags(cls, flags: tuple[Flag, ...]) -> tuple[Flag, ...]:
        seen_bits: set[int] = set()
        seen_names: set[str] = set()
        for flag in flags:
            if flag.bit in seen_bits:
                raise ValueError(f"bit {flag.bit} is named twice")
            if flag.name in seen_names:
                raise ValueError(f"flag name {flag.name!r} is used twice")
            seen_bits.add(flag.bit)
            seen_names.add(flag.name)
        return flags


warnings.filterwarnings(  # `register` is the natural YAML key; ABCMeta.register is not used
    "ignore", message='Field name "register"', category=UserWarning)


class ModbusPoint(PointCommon):
    register: RegisterType = Field(...)
    address: Annotated[int, Field(ge=0, le=65535)]
    type: DataType = DataType.UINT16
    """Defaults to uint16 for registers and bool for coils and discrete inputs."""
    order: ByteOrder = ByteOrder.ABCD
    bit: Annotated[int, Field(ge=0, le=15)] | None = None
    """For `type: bool` on a register: which bit (0 = least significant)."""
    length: Annotated[int, Field(ge=1, le=123)] | None = None
    """For `type: string`: its length in registers (two characters each)."""
    invert: bool = False
    """For `type: bool`: report the opposite (a normally-closed contact reads true in alarm)."""

    @model_validator(mode="before")
    @classmethod
    def _bits_default_to_bool(cls, data: object) -> object:
        """Coils and discrete inputs hold one bit: `type: bool` goes without saying."""
        if isinstance(data, dict) and "type" not in data and \
                data.get("register") in ("coil", "discrete_input"):
            return {**data, "type": "bool"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "ModbusPoint":
        reg, typ = self.register, self.type
        if reg.is_bit and typ is not DataType.BOOL:
            raise ValueError(f"a {reg.value} holds one bit: its type must be bool, not {typ}")
        if typ is DataType.BOOL and not reg.is_bit and self.bit is None:
            raise ValueError("a bool in a register needs `bit:` (0-15)")
        if self.bit is not None and (reg.is_bit or typ is not DataType.BOOL):
            raise ValueError("`bit:` is only for type bool in an input or holding register")
        if typ is DataType.STRING and self.length is None:
            raise ValueError("a string needs `length:` in registers")
        if typ is not DataType.STRING and self.length is not None:
            raise ValueError("`length:` is only for type string")
        if self.flags and typ not in (DataType.UINT16, DataType.UINT32, DataType.UINT64,
                                      DataType.INT16, DataType.INT32, DataType.INT64):
            raise ValueError("flags need an integer type")
        width_bits = 16 * self.width
        for flag in self.flags:
            if flag.bit >= width_bits:
                raise ValueError(f"flag bit {flag.bit} is outside a {width_bits}-bit {typ}")
        if self.address + self.width > 65536:
            raise ValueError(f"address {self.address} + {self.width} registers passes 65535")
        if self.invert and typ is not DataType.BOOL:
            raise ValueError("`invert:` is only for type bool")
        if self.writable and reg in (RegisterType.INPUT, RegisterType.DISCRETE_INPUT):
            raise ValueError(f"a {reg.value} is read-only and cannot be writable")
        return self

    @property
    def width(self) -> int:
        """Registers (or bits, for coils and discrete inputs) the point occupies."""
        if self.register.is_bit:
            return 1
        if self.type is DataType.STRING:
            assert self.length is not None
            return self.length
        return WIDTH_REGISTERS[self.type]


class ModbusProfile(Strict):
    kind: Literal["modbus"]
    id: Name
    manufacturer: str
    model: str
    generic: bool = False
    """True when the register map is a typical one, not a named model's documented map."""
    source: str | None = None
    """The public document the register map comes from (title, version, section)."""
    description: str | None = None
    default_poll_interval: Duration = 5.0
    max_registers_per_request: Annotated[int, Field(ge=1, le=125)] = 125
    max_bits_per_request: Annotated[int, Field(ge=1, le=2000)] = 2000
    points: tuple[ModbusPoint, ...] = Field(min_length=1, max_length=MAX_PROFILE_POINTS)

    @model_validator(mode="after")
    def _check(self) -> "ModbusProfile":
        _require_source(self.generic, self.source)
        _unique_point_names(self.points)
        _check_interval(self.default_poll_interval)
        return self


class TextField(PointCommon):
    """One named group of a serial reply regex, as a point."""

    group: Name
    type: Literal["float", "int", "bool", "string", "bitstring"] = "float"
    """`bitstring`: a run of 0/1 characters, first character = highest bit (Megatec Q1)."""

    @model_validator(mode="after")
    def _consistent(self) -> "TextField":
        if self.flags and self.type not in ("bitstring", "int"):
            raise ValueError("flags need type bitstring or int")
        return self


class SerialTextProfile(Strict):
    kind: Literal["serial_text"]
    id: Name
    manufacturer: str
    model: str
    generic: bool = False
    source: str | None = None
    description: str | None = None
    default_poll_interval: Duration = 5.0
    request: str
    """Bytes sent to ask for a reading, with Python escapes (`Q1\\r`)."""
    reply_terminator: str = "\r"
    reply_pattern: str
    """A regular expression with named groups; it must match the whole reply line."""
    reply_format: str | None = None
    """How the simulator writes a reply: Python format fields named after the points
    (`({input_voltage:05.1f} …{status}\\r`); a bitstring field is given as its integer."""
    reply_timeout: Annotated[Duration, at_most(MAX_BUS_TIMEOUT_S)] = 1.0
    """How long the whole reply may take (at most 10 s, as a bus's `timeout`; the shorter of
    this and the bus's `timeout` is waited: `300m` written for `300ms` waited 5 hours a poll,
    the device `online` all the while)."""
    encoding: str = "ascii"
    fields: tuple[TextField, ...] = Field(min_length=1, max_length=MAX_PROFILE_POINTS)

    @field_validator("request", "reply_terminator")
    @classmethod
    def _escapes(cls, text: str) -> str:
        return escapes_known(text)  # (added with the sections' check: both refuse alike)

    @field_validator("reply_pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"reply_pattern is not a valid regular expression: {exc}") from exc
        if nests_unbounded_repeats(pattern):
            raise ValueError("reply_pattern repeats a repeat without bound (like (\\d+)+ or "
                             "(\\w+ )*): on a line that nearly matches it can take minutes, "
                             "holding every bus; bound one of them ({1,8}) or drop the nesting")
        return pattern

    @model_validator(mode="after")
    def _check(self) -> "SerialTextProfile":
        _require_source(self.generic, self.source)
        _unique_point_names(self.fields)
        _check_interval(self.default_poll_interval)
        if self.reply_timeout <= 0:
            raise ValueError("reply_timeout must be more than 0s")
        try:
            "".encode(self.encoding)  # (rot13, hex: codecs Python knows, not text encodings)
        except LookupError:
            raise ValueError(f"encoding {self.encoding!r} is not a text encoding Python knows "
                             "(ascii, latin-1, utf-8, gbk …)") from None
        for name in ("request", "reply_terminator"):
            try:  # the bytes the poller sends and waits for, made as it makes them
                unescape(getattr(self, name), self.encoding)
            except (UnicodeError, ValueError) as exc:
                raise ValueError(f"{name} {getattr(self, name)!r} cannot be sent in "
                                 f"{self.encoding}: {exc}") from None
        if not self.terminator_bytes:
            raise ValueError("reply_terminator must not be empty (the end of a reply line: "
                             "'\\r', '\\r\\n', '\\n')")
        groups = set(re.compile(self.reply_pattern).groupindex)
        for field in self.fields:
            if field.group not in groups:
                raise ValueError(
                    f"field {field.name!r} names group {field.group!r}, which reply_pattern "
                    f"does not define (it has: {', '.join(sorted(groups)) or 'none'})"
                )
        return self

    @property
    def request_bytes(self) -> bytes:
        return unescape(self.request, self.encoding)

    @property
    def terminator_bytes(self) -> bytes:
        return unescape(self.reply_terminator, self.encoding)


Profile = Annotated[ModbusProfile | SerialTextProfile, Field(discriminator="kind")]


def _check_interval(interval: float) -> None:
    if interval < MIN_POLL_INTERVAL:
        raise ValueError("default_poll_interval must be at least 50ms")


def _require_source(generic: bool, source: str | None) -> None:
    if not generic and not source:
        raise ValueError(
            "a profile of a named model cites its register map's `source:` document; "
            "mark a typical map `generic: true` instead"
        )


def _unique_point_names(points: tuple[PointCommon, ...]) -> None:
    seen: set[str] = set()
    for point in points:
        names = [point.name] + [f"{point.name}.{flag.name}" for flag in point.flags]
        for name in names:
            if name in seen:
                raise ValueError(f"point name {name!r} is used twice")
            seen.add(name)
