"""gateway/rules/condition_model.py as pydantic models, at 9d61447
(tests/rules/test_rule_sections.py): its classes and walks verbatim; the scalar parsers, which
have no pydantic in them, imported from the converted module, which kept them unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Discriminator, Field, Tag, model_validator

from gateway.config.duration import parse_duration
from gateway.config.profile import Name, Strict
from gateway.rules.condition_model import (
    _REF,
    CONDITION_KINDS,
    Scalar,
    SignalName,
    _names,
    _number,
    _ref_or,
)
from tests.rules.originals.section import RoomType

__all__ = ["CONDITION_KINDS", "Scalar", "SignalName"]

Num = Annotated[float | str, BeforeValidator(_ref_or(_number))]
"""A number, or `$name` of one of the rule's parameters."""
Dur = Annotated[float | str, BeforeValidator(_ref_or(parse_duration))]
"""A duration (`5s`, `2m`, a number of seconds), or `$name`."""


Names = Annotated[tuple[Name, ...], BeforeValidator(_names)]
RoomTypes = Annotated[tuple[RoomType, ...], BeforeValidator(_names)]
Ids = Annotated[tuple[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")], ...],
                BeforeValidator(_names)]


# --- selection ------------------------------------------------------------------------------


class Select(Strict):
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
    min_members: Annotated[int, Field(ge=1, le=1000)] = 1
    """Bind a device/room subject only when it has at least this many selected points."""


# --- signals --------------------------------------------------------------------------------


class RateSpec(Strict):
    window: Dur
    """Samples older than this are left out of the slope."""
    per: Dur = 60.0
    """The rate's time unit: 60 s gives units per minute (°C/min)."""
    min_samples: Annotated[int, Field(ge=2, le=256)] = 3
    absolute: bool = False
    """Use the magnitude of the slope (rising or falling)."""
    min_span: Dur | None = None
    """Judge the slope once the good samples span this long (default: a quarter of the
    window, see `gateway.rules.conditions.RateWindow`); before that the rate is unknown."""
    confidence: Num = 2.0
    """Noise guard: the rate reported is the fitted slope less this many standard errors
    (never past zero), so a short or noisy span cannot pass for a trend."""


class RateSignal(Strict):
    """Least-squares slope of each point over a window (the fastest member for a group)."""

    rate: RateSpec


class LoadSpec(Strict):
    rating: Num
    """The breaker/branch rating in A, normally a per-device parameter with no default."""


class LoadSignal(Strict):
    """Largest member current as % of the rating."""

    load_pct: LoadSpec


class ExcessSignal(Strict):
    """How far the hottest member (not of the reference quantities) stands above the mean of
    the members of the reference quantities: a battery block above the room air."""

    excess_over: Names


Signal = SignalName | RateSignal | LoadSignal | ExcessSignal


# --- conditions -----------------------------------------------------------------------------


class Compare(Strict):
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
    in_: tuple[Scalar, ...] | None = Field(default=None, alias="in")
    deadband: Num = 0.0
    """Returns to normal only past limit ∓ deadband (hysteresis)."""
    on_delay: Dur = 0.0
    """The test must hold continuously this long before the condition becomes active."""
    off_delay: Dur = 0.0
    """The test must be false continuously this long before the condition clears."""

    @model_validator(mode="after")
    def _one_test(self) -> Compare:
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
        return self

    @property
    def test(self) -> str:
        for name in ("above", "at_or_above", "below", "at_or_below", "outside", "equals"):
            if getattr(self, name) is not None:
                return name
        return "in"


class Stale(Strict):
    """No good sample of the point for this long (while its device is not reported offline:
    the offline rule covers that)."""

    quantity: Names | None = None
    stale: Dur
    include_offline: bool = False


class FlatlineSpec(Strict):
    window: Dur
    epsilon: Num = 0.0
    """Stuck when every good value over `window` lies within a range of at most epsilon."""


class Flatline(Strict):
    quantity: Names | None = None
    flatline: FlatlineSpec


class Invalid(Strict):
    """The latest samples have had quality `invalid` (out of range, undecodable) this long."""

    quantity: Names | None = None
    invalid_for: Dur


class All(Strict):
    all: tuple[Condition, ...] = Field(min_length=1)


class AnyOf(Strict):
    any: tuple[Condition, ...] = Field(min_length=1)


class AtLeastSpec(Strict):
    count: Num
    """How many (a whole number ≥ 1, or `$name`)."""
    of: tuple[Condition, ...] | None = None
    """k of these conditions."""
    each: Condition | None = None
    """k of the subject's points for which this condition holds (k independent devices)."""
    distinct: Literal["device", "point"] = "device"
    """With `each`: count distinct devices (independent detectors) or points."""

    @model_validator(mode="after")
    def _one_source(self) -> AtLeastSpec:
        if (self.of is None) == (self.each is None):
            raise ValueError("at_least needs exactly one of `of` (conditions) or `each` "
                             "(a condition per point)")
        if isinstance(self.count, float):
            if self.count < 1 or not self.count.is_integer():
                raise ValueError("at_least count must be a whole number, at least 1")
            if self.of is not None and len(self.of) < self.count:
                raise ValueError(f"at_least {self.count:g} of {len(self.of)} conditions can "
                                 f"never hold")
        return self


class AtLeast(Strict):
    at_least: AtLeastSpec


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
    Annotated[Compare, Tag("compare")]
    | Annotated[All, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[AtLeast, Tag("at_least")]
    | Annotated[Stale, Tag("stale")]
    | Annotated[Flatline, Tag("flatline")]
    | Annotated[Invalid, Tag("invalid_for")],
    Discriminator(_condition_kind),
]
# All, AnyOf and AtLeast(Spec) name `Condition` before it exists: pydantic resolves it when
# they are first validated (defer_build), not at import (issue 15).


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
    elif isinstance(value, Strict):
        for name in type(value).model_fields:
            yield from _refs_in(getattr(value, name))


def condition_refs(condition: Condition) -> set[str]:
    """Names of the parameters a condition refers to."""
    refs: set[str] = set()
    for node in iter_conditions(condition):
        for name in type(node).model_fields:
            if name in ("all", "any", "at_least"):
                continue
            refs.update(_refs_in(getattr(node, name)))
        if isinstance(node, AtLeast):
            refs.update(_refs_in(node.at_least.count))
    return refs
