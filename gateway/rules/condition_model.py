"""A rule's condition language: scalar types with `$name` parameter
references, the selection of subjects, signals (value, rate, load, excess …) and conditions
(compare, stale, flatline, invalid_for, all, any, at_least), with the walks over a condition
tree (`iter_conditions`, `condition_refs`). gateway.rules.model builds rules and packs on them.

Each is a plain dataclass (gateway.config.section) that pydantic validates in the config
check's child, through the markers of gateway.config.section_markers: a running gateway
imports the module and unpickles its rule packs without pydantic (issue 15).
"""

import re
from collections.abc import Iterator
from dataclasses import fields, is_dataclass
from typing import Annotated, Any, Literal

from gateway.config.duration import parse_duration
from gateway.config.names import NAME_PATTERN, Name
from gateway.config.section import Between, Limits, section
from gateway.config.section_markers import before, discriminated, tag
from gateway.records import dataclass, field
from gateway.rules.section import RoomType

_REF = re.compile(r"^\$([a-z][a-z0-9_]*)$")
_NAME = re.compile(NAME_PATTERN)


# --- scalar types ---------------------------------------------------------------------------



def _ref_or(parse: Any) -> Any:
    def validator(value: object) -> object:
        if isinstance(value, str) and value.startswith("$"):
            if not _REF.match(value):
                raise ValueError(f"{value!r} is not a parameter reference; write $name "
                                 "(lower case, digits, underscores)")
            return value
        return parse(value)
    return validator


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected a number or a $parameter")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("expected a finite number")
    return float(value)


Num = Annotated[float | str, before(_ref_or(_number))]
"""A number, or `$name` of one of the rule's parameters."""
Dur = Annotated[float | str, before(_ref_or(parse_duration))]
"""A duration (`5s`, `2m`, a number of seconds), or `$name`."""


def _names(value: object) -> object:
    """One name or a list of names → a tuple."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(value)
    return value


Names = Annotated[tuple[Name, ...], before(_names)]
RoomTypes = Annotated[tuple[RoomType, ...], before(_names)]
Ids = Annotated[tuple[Annotated[str, Limits(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")], ...],
                before(_names)]
Scalar = bool | int | float | str
"""What `equals`/`in` compare with: a flag, a number, or an enum label."""


# --- selection ------------------------------------------------------------------------------


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class Select:
    """Which points a rule looks at; the rule's `subject` then groups them per point, device
    or room. Every given filter must match. No `quantity` = every point with a quantity."""

    quantity: Names | None = None
    exclude_quantity: Names = ()
    room_type: RoomTypes | None = None
    room: Ids | None = None
    profile: Names | None = None
    device_has: Names | None = None
    """Only devices that have a point of one of these quantities (e.g. the detector's own
    fault flag, only on H2 detectors)."""
    min_members: Annotated[int, Between(ge=1, le=1000)] = 1
    """Bind a device/room subject only when it has at least this many selected points."""


# --- signals --------------------------------------------------------------------------------


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class RateSpec:
    window: Dur
    """Samples older than this are left out of the slope."""
    per: Dur = 60.0
    """The rate's time unit: 60 s gives units per minute (°C/min)."""
    min_samples: Annotated[int, Between(ge=2, le=256)] = 3
    absolute: bool = False
    """Use the magnitude of the slope (rising or falling)."""
    min_span: Dur | None = None
    """Judge the slope once the good samples span this long (default: a quarter of the
    window, see `gateway.rules.conditions.RateWindow`); before that the rate is unknown."""
    confidence: Num = 2.0
    """Noise guard: the rate reported is the fitted slope less this many standard errors
    (never past zero), so a short or noisy span cannot pass for a trend."""


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class RateSignal:
    """Least-squares slope of each point over a window (the fastest member for a group)."""

    rate: RateSpec


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class LoadSpec:
    rating: Num
    """The breaker/branch rating in A, normally a per-device parameter with no default."""


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class LoadSignal:
    """Largest member current as % of the rating."""

    load_pct: LoadSpec


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class ExcessSignal:
    """How far the hottest member (not of the reference quantities) stands above the mean of
    the members of the reference quantities: a battery block above the room air."""

    excess_over: Names


SignalName = Literal["value", "spread", "unbalance", "dew_point", "mean", "outlier"]
"""`value`: each point's value (the worst member of a group); `spread`: max − min of the
members (redundant sensors); `unbalance`: max |V − mean| / mean in % of a device's phase
voltages; `dew_point`: Magnus dew point from temperature and relative_humidity; `mean`;
`outlier`: the largest distance of a member from the group's median (needs 3 members)."""

Signal = SignalName | RateSignal | LoadSignal | ExcessSignal


# --- conditions -----------------------------------------------------------------------------


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class Compare:
    """A test of a signal with hysteresis and delays. Exactly one of the tests is given."""

    quantity: Names | None = None
    """Use only the subject's points of these quantities."""
    signal: Signal = "value"
    above: Num | None = None
    at_or_above: Num | None = None
    below: Num | None = None
    at_or_below: Num | None = None
    outside: tuple[Num, Num] | None = None
    """[low, high]: active below low or above high."""
    equals: Scalar | None = None
    # `in:` in a file: pydantic reads a dataclass field's metadata as `Field(...)`'s arguments
    in_: tuple[Scalar, ...] | None = field(default=None, metadata={"alias": "in"})
    deadband: Num = 0.0
    """Returns to normal only past limit ∓ deadband (hysteresis)."""
    on_delay: Dur = 0.0
    """The test must hold continuously this long before the condition becomes active."""
    off_delay: Dur = 0.0
    """The test must be false continuously this long before the condition clears."""

    def __post_init__(self) -> None:
        given = [name for name in ("above", "at_or_above", "below", "at_or_below", "outside",
                                   "equals", "in_") if getattr(self, name) is not None]
        if len(given) != 1:
            named = ", ".join(n.rstrip("_") for n in given) or "none"
            raise ValueError("a comparison needs exactly one of above, at_or_above, below, "
                             f"at_or_below, outside, equals, in (given: {named})")
        if given[0] in ("equals", "in_") and self.signal != "value":
            raise ValueError("equals/in compare the points' own values: signal must be value")
        if given[0] in ("equals", "in_") and self.deadband not in (0, 0.0):
            raise ValueError("deadband applies to numeric limits, not to equals/in")

    @property
    def test(self) -> str:
        for name in ("above", "at_or_above", "below", "at_or_below", "outside", "equals"):
            if getattr(self, name) is not None:
                return name
        return "in"


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class Stale:
    """No good sample of the point for this long (while its device is not reported offline:
    the offline rule covers that)."""

    quantity: Names | None = None
    stale: Dur
    include_offline: bool = False


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class FlatlineSpec:
    window: Dur
    epsilon: Num = 0.0
    """Stuck when every good value over `window` lies within a range of at most epsilon."""


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class Flatline:
    quantity: Names | None = None
    flatline: FlatlineSpec


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class Invalid:
    """The latest samples have had quality `invalid` (out of range, undecodable) this long."""

    quantity: Names | None = None
    invalid_for: Dur


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class All:
    all: Annotated[tuple["Condition", ...], Limits(min_length=1)]


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class AnyOf:
    any: Annotated[tuple["Condition", ...], Limits(min_length=1)]


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class AtLeastSpec:
    count: Num
    """How many (a whole number ≥ 1, or `$name`)."""
    of: tuple["Condition", ...] | None = None
    """k of these conditions."""
    each: "Condition | None" = None
    """k of the subject's points for which this condition holds (k independent devices)."""
    distinct: Literal["device", "point"] = "device"
    """With `each`: count distinct devices (independent detectors) or points."""

    def __post_init__(self) -> None:
        if (self.of is None) == (self.each is None):
            raise ValueError("at_least needs exactly one of `of` (conditions) or `each` "
                             "(a condition per point)")
        if isinstance(self.count, float):
            if self.count < 1 or not self.count.is_integer():
                raise ValueError("at_least count must be a whole number, at least 1")
            if self.of is not None and len(self.of) < self.count:
                raise ValueError(f"at_least {self.count:g} of {len(self.of)} conditions can "
                                 f"never hold")


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class AtLeast:
    at_least: AtLeastSpec


CONDITION_KINDS = ("all", "any", "at_least", "stale", "flatline", "invalid_for")


def _condition_kind(value: Any) -> str:
    if isinstance(value, dict):
        for key in CONDITION_KINDS:
            if key in value:
                return key
        return "compare"
    for model, kind in ((All, "all"), (AnyOf, "any"), (AtLeast, "at_least"), (Stale, "stale"),
                        (Flatline, "flatline"), (Invalid, "invalid_for")):
        if isinstance(value, model):
            return kind
    return "compare"


Condition = Annotated[
    Annotated[Compare, tag("compare")]
    | Annotated[All, tag("all")]
    | Annotated[AnyOf, tag("any")]
    | Annotated[AtLeast, tag("at_least")]
    | Annotated[Stale, tag("stale")]
    | Annotated[Flatline, tag("flatline")]
    | Annotated[Invalid, tag("invalid_for")],
    discriminated(_condition_kind),
]
# All, AnyOf and AtLeast(Spec) name `Condition` before it exists (as text): pydantic resolves
# it when it builds their validator, in the config check's child.


def iter_conditions(condition: Condition) -> Iterator[Condition]:
    """The condition and every condition nested in it."""
    yield condition
    children: tuple[Condition, ...] = ()
    if isinstance(condition, All):
        children = condition.all
    elif isinstance(condition, AnyOf):
        children = condition.any
    elif isinstance(condition, AtLeast):
        spec = condition.at_least
        children = spec.of if spec.of is not None else (spec.each,) if spec.each else ()
    for child in children:
        yield from iter_conditions(child)


def _refs_in(value: object) -> Iterator[str]:
    if isinstance(value, str):
        match = _REF.match(value)
        if match:
            yield match.group(1)
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _refs_in(item)
    elif is_dataclass(value):
        for f in fields(value):
            yield from _refs_in(getattr(value, f.name))


def condition_refs(condition: Condition) -> set[str]:
    """Names of the parameters a condition refers to."""
    refs: set[str] = set()
    for node in iter_conditions(condition):
        for f in fields(node):
            if f.name in ("all", "any", "at_least"):
                continue
            refs.update(_refs_in(getattr(node, f.name)))
        if isinstance(node, AtLeast):
            refs.update(_refs_in(node.at_least.count))
    return refs
