"""Device profiles: what one device model exposes (points, registers, data types, quantities).

A profile is data, in `hardware/profiles/*.yaml`. Two kinds exist:

* `modbus`: points read from coils, discrete inputs, input registers or holding registers;
* `serial_text`: an ASCII request/reply device (Megatec Q1 UPS, simple sensors): a request
  string, a reply regular expression with named groups and a mapping of groups to points.

A profile has at most MAX_PROFILE_POINTS points (`points` or `fields`; flags not counted). The
loader refuses a longer list while reading the file, before anything else is done with it.

The classes are config sections (gateway.config.section, issue 15): plain frozen dataclasses
that pydantic validates where profiles are loaded (gateway.config.profiles), so that a running
gateway, which unpickles its profiles from the config check's answer, imports no pydantic for
them. Their pydantic originals, and the proof that they validate, refuse and dump the same:
tests/config/test_profile_sections.py. `Strict`, the base of the config models still written
with pydantic, lives in gateway.config.strict_model (given from here too, imported when asked).
"""

import re
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal

from gateway.config.buses import MAX_BUS_TIMEOUT_S
from gateway.config.duration import Duration, at_most
from gateway.config.escapes import escapes_known, unescape
from gateway.config.names import NAME_PATTERN as NAME_PATTERN  # re-exported: profiles, rules
from gateway.config.names import Id as Id
from gateway.config.names import Name as Name
from gateway.config.names import PointKey as PointKey
from gateway.config.numbers import FiniteFloat, Scale, check_range
from gateway.config.patterns import nests_unbounded_repeats
from gateway.config.section import Check, Limits, section
from gateway.config.section_markers import Discriminated, prepared
from gateway.records import dataclass

if TYPE_CHECKING:
    from gateway.config.strict_model import Strict as Strict

MAX_PROFILE_POINTS = 2000
"""Points per profile. The largest shipped profile has 37; a real device model with more than
a few hundred is rare (split a very large one into several profiles on the same unit)."""


def __getattr__(name: str) -> Any:
    """`Strict` (gateway.config.strict_model), imported with pydantic when first asked for:
    the site's, rule packs' and drills' models import it from here."""
    if name == "Strict":
        from gateway.config.strict_model import Strict

        return Strict
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class RegisterType(StrEnum):
    COIL = "coil"
    DISCRETE_INPUT = "discrete_input"
    INPUT = "input"
    HOLDING = "holding"

    @property
    def is_bit(self) -> bool:
        return self in (RegisterType.COIL, RegisterType.DISCRETE_INPUT)


class DataType(StrEnum):
    BOOL = "bool"  # a coil/discrete input, or one bit of a register (`bit:`)
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"

    @property
    def is_numeric(self) -> bool:
        return self not in (DataType.BOOL, DataType.STRING)


WIDTH_REGISTERS: dict[DataType, int] = {
    DataType.BOOL: 1,
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.FLOAT32: 2,
    DataType.INT64: 4,
    DataType.UINT64: 4,
    DataType.FLOAT64: 4,
}


class ByteOrder(StrEnum):
    """Order of the bytes of a multi-register value as they arrive, A = most significant.

    ABCD: big-endian words, big-endian registers (Modbus default).
    CDAB: word-swapped (low word first), common on meters.
    BADC: byte-swapped inside each register.
    DCBA: little-endian throughout.
    For 64-bit values the same rule extends to four registers; for 16-bit values only the
    byte swap inside the register matters (BADC and DCBA swap, ABCD and CDAB do not).
    """

    ABCD = "ABCD"
    BADC = "BADC"
    CDAB = "CDAB"
    DCBA = "DCBA"

    @property
    def swaps_bytes(self) -> bool:
        return self in (ByteOrder.BADC, ByteOrder.DCBA)

    @property
    def swaps_words(self) -> bool:
        return self in (ByteOrder.CDAB, ByteOrder.DCBA)


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class ValidRange:
    """Engineering values outside [min, max] are reported with quality `invalid`."""

    min: FiniteFloat | None = None
    max: FiniteFloat | None = None

    def __post_init__(self) -> None:
        check_range(self.min, self.max, names=("min", "max"))


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class Flag:
    """One named bit of a status word; becomes its own boolean point `<point>.<name>`."""

    bit: Annotated[int, Limits(ge=0, le=63)]
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


def _unique_flags(flags: tuple[Flag, ...]) -> tuple[Flag, ...]:
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


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class PointCommon:
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
    flags: Annotated[tuple[Flag, ...], Check(_unique_flags)] = ()
    writable: bool = False
    field_device: bool = False
    """This input is a field device of its own wired to the module — a conventional detector
    zone, a contact — not one of the module's own readings: rules that count distinct devices
    (`distinct: device`, fire.smoke_coincidence) count it apart from the module's other
    points. Without it, the points of one device count once (two smoke points of one smart
    detector are one detector)."""


def _bits_default_to_bool(data: object) -> object:
    """Coils and discrete inputs hold one bit: `type: bool` goes without saying."""
    if isinstance(data, dict) and "type" not in data and \
            data.get("register") in ("coil", "discrete_input"):
        return {**data, "type": "bool"}
    return data


@prepared(_bits_default_to_bool)
@section
@dataclass(frozen=True, slots=True, kw_only=True)
class ModbusPoint(PointCommon):
    register: RegisterType
    address: Annotated[int, Limits(ge=0, le=65535)]
    type: DataType = DataType.UINT16
    """Defaults to uint16 for registers and bool for coils and discrete inputs."""
    order: ByteOrder = ByteOrder.ABCD
    bit: Annotated[int, Limits(ge=0, le=15)] | None = None
    """For `type: bool` on a register: which bit (0 = least significant)."""
    length: Annotated[int, Limits(ge=1, le=123)] | None = None
    """For `type: string`: its length in registers (two characters each)."""
    invert: bool = False
    """For `type: bool`: report the opposite (a normally-closed contact reads true in alarm)."""

    def __post_init__(self) -> None:
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

    @property
    def width(self) -> int:
        """Registers (or bits, for coils and discrete inputs) the point occupies."""
        if self.register.is_bit:
            return 1
        if self.type is DataType.STRING:
            assert self.length is not None
            return self.length
        return WIDTH_REGISTERS[self.type]


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class ModbusProfile:
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
    max_registers_per_request: Annotated[int, Limits(ge=1, le=125)] = 125
    max_bits_per_request: Annotated[int, Limits(ge=1, le=2000)] = 2000
    points: Annotated[tuple[ModbusPoint, ...],
                      Limits(min_length=1, max_length=MAX_PROFILE_POINTS)]

    def __post_init__(self) -> None:
        _require_source(self.generic, self.source)
        _unique_point_names(self.points)
        _check_interval(self.default_poll_interval)


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class TextField(PointCommon):
    """One named group of a serial reply regex, as a point."""

    group: Name
    type: Literal["float", "int", "bool", "string", "bitstring"] = "float"
    """`bitstring`: a run of 0/1 characters, first character = highest bit (Megatec Q1)."""

    def __post_init__(self) -> None:
        if self.flags and self.type not in ("bitstring", "int"):
            raise ValueError("flags need type bitstring or int")


def _compiles(pattern: str) -> str:
    """A pattern both `re` (the check below reads it) and `regex` (the poller runs it, within a
    time budget: gateway.field.serial_text) compile."""
    import regex  # (here: a gateway at rest does not hold it — 2 MiB — issue 15)

    try:
        re.compile(pattern)
        regex.compile(pattern)
    except (re.error, regex.error) as exc:
        raise ValueError(f"reply_pattern is not a valid regular expression: {exc}") from exc
    if nests_unbounded_repeats(pattern):
        raise ValueError("reply_pattern repeats a repeat without bound (like (\\d+)+ or "
                         "(\\w+ )*): on a line that nearly matches it can take minutes, "
                         "holding every bus; bound one of them ({1,8}) or drop the nesting")
    return pattern


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class SerialTextProfile:
    kind: Literal["serial_text"]
    id: Name
    manufacturer: str
    model: str
    generic: bool = False
    source: str | None = None
    description: str | None = None
    default_poll_interval: Duration = 5.0
    request: Annotated[str, Check(escapes_known)]
    """Bytes sent to ask for a reading, with Python escapes (`Q1\\r`)."""
    reply_terminator: Annotated[str, Check(escapes_known)] = "\r"
    reply_pattern: Annotated[str, Check(_compiles)]
    """A regular expression with named groups; it must match the whole reply line."""
    reply_format: str | None = None
    """How the simulator writes a reply: Python format fields named after the points
    (`({input_voltage:05.1f} …{status}\\r`); a bitstring field is given as its integer."""
    reply_timeout: Annotated[Duration, at_most(MAX_BUS_TIMEOUT_S)] = 1.0
    """How long the whole reply may take (at most 10 s, as a bus's `timeout`; the shorter of
    this and the bus's `timeout` is waited: `300m` written for `300ms` waited 5 hours a poll,
    the device `online` all the while)."""
    encoding: str = "ascii"
    fields: Annotated[tuple[TextField, ...], Limits(min_length=1, max_length=MAX_PROFILE_POINTS)]

    def __post_init__(self) -> None:
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

    @property
    def request_bytes(self) -> bytes:
        return unescape(self.request, self.encoding)

    @property
    def terminator_bytes(self) -> bytes:
        return unescape(self.reply_terminator, self.encoding)


Profile = Annotated[ModbusProfile | SerialTextProfile, Discriminated("kind")]


MIN_POLL_INTERVAL = 0.05
"""The shortest poll interval a device or a profile may ask for (50 ms)."""


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
