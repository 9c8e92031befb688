"""Rule packs as data: the sections of `edge_rules/<pack>.yaml` and their loader.

A pack holds rules; a rule selects its subjects (points, devices or rooms) by quantity and
location, names its thresholds as parameters with defaults, and states its condition as
structured YAML (never an evaluated string). Parameters are referenced as `$name`.

    pack: explosion
    title: Explosive gas
    rules:
      - id: h2_alarm
        title: Hydrogen at 25 % LEL
        severity: critical
        basis: "IBC §420.6.1 (detector acts at ≤ 25 % LFL); GB 51048-2014 §9.0.2"
        parameters: {alarm_lel: 25, deadband: 2, delay: 5s}
        select: {quantity: h2_lel}
        condition: {at_or_above: $alarm_lel, deadband: $deadband, on_delay: $delay}
        actions: [exhaust_fan, alarm_panel]

The condition language (selection, signals, conditions) is gateway.rules.condition_model's,
re-exported here. Errors name the file, the YAML path, the line and the reason
(gateway.config.errors.ConfigError). The classes are plain dataclasses (gateway.config.section)
that pydantic validates when a pack is loaded, in the config check's child: a running gateway
unpickles its checked packs without pydantic (issue 15).
"""

import functools
from collections.abc import Iterator
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_type_hints

from gateway.alarms.types import Severity
from gateway.config.duration import format_duration
from gateway.config.errors import ConfigError, ConfigErrors, YamlPath
from gateway.config.names import Name
from gateway.config.section import Check, Limits, default_factory, section, validator
from gateway.config.section_markers import KeepsWritten
from gateway.records import dataclass
from gateway.rules.condition_model import (
    CONDITION_KINDS,
    All,
    AnyOf,
    AtLeast,
    AtLeastSpec,
    Compare,
    Condition,
    Dur,
    ExcessSignal,
    Flatline,
    FlatlineSpec,
    Ids,
    Invalid,
    LoadSignal,
    LoadSpec,
    Names,
    Num,
    RateSignal,
    RateSpec,
    RoomTypes,
    Scalar,
    Select,
    Signal,
    SignalName,
    Stale,
    condition_refs,
    iter_conditions,
)
from gateway.rules.section import (
    ParamKind,
    Params,
    ParamValue,
    Response,
    RoomType,
)

__all__ = [
    "CONDITION_KINDS",
    "DEVICE_ONLINE",
    "ActionRole",
    "All",
    "AnyOf",
    "AtLeast",
    "AtLeastSpec",
    "Chemistry",
    "ChemistryDefaults",
    "Compare",
    "Condition",
    "Dur",
    "Escalation",
    "ExcessSignal",
    "Flatline",
    "FlatlineSpec",
    "Ids",
    "Invalid",
    "LoadSignal",
    "LoadSpec",
    "Names",
    "Num",
    "ParamKind",
    "RateSignal",
    "RateSpec",
    "RoomType",
    "RoomTypes",
    "Rule",
    "RulePack",
    "Scalar",
    "Select",
    "Signal",
    "SignalName",
    "Stale",
    "SupervisedAlarm",
    "condition_refs",
    "iter_conditions",
    "load_pack",
    "parameter_kinds",
]

DEVICE_ONLINE = "device_online"
"""Pseudo-quantity of the `<device>.online` point every device reports."""


# --- rules and packs ------------------------------------------------------------------------

ActionRole = Name
"""An output role the actions layer maps to a device output: siren, strobe, exhaust_fan,
alarm_panel, charge_inhibit …"""


Chemistry = Literal["vrla", "vla", "lfp", "nmc"]
"""Battery chemistries a room or device may declare (gateway.config.site.Chemistry)."""


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class ChemistryDefaults(KeepsWritten):
    """A rule's parameter defaults for one battery chemistry, with their basis."""

    set: Annotated[Params, Limits(min_length=1)]
    basis: Annotated[str, Limits(min_length=5)]


def _unique_actions(actions: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(actions)) != len(actions):
        raise ValueError("an action role is listed twice")
    return actions


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class Rule(KeepsWritten):
    WRITTEN = "parameters"
    id: Name
    title: Annotated[str, Limits(min_length=3)]
    severity: Severity
    basis: Annotated[str, Limits(min_length=5)]
    """The standard and clause the threshold rests on, or `vendor default: …`."""
    description: str | None = None
    response: Response | None = None
    """What the person on site does when the alarm sounds, first things first (ISA-18.2's
    alarm response: the corrective action written down with the alarm, not looked up at
    3 a.m.). Shown on the panel's alarm card; a site's `rules: responses:` replaces it."""
    parameters: Params = default_factory(dict)
    select: Select
    subject: Literal["point", "device", "room"] = "point"
    condition: Condition
    actions: Annotated[tuple[ActionRole, ...], Check(_unique_actions)] = ()
    latching: bool = False
    trouble: bool = False
    """The alarm is about the devices themselves (a detector failed, monitoring lost), not a
    hazard they measure: held while a config is on trial (gateway.flashing.trial), as the
    sensor_health pack's are, so a candidate that misreads its devices costs nothing if it is
    rolled back."""
    chemistry: dict[Chemistry, ChemistryDefaults] = default_factory(dict)
    """Parameter defaults per battery chemistry of the subject's device or room; a site's
    `rules: parameters:` overrides still win."""

    def __post_init__(self) -> None:
        refs = condition_refs(self.condition)
        unknown = sorted(refs - set(self.parameters))
        if unknown:
            raise ValueError(f"condition refers to undeclared parameter(s) "
                             f"{', '.join('$' + n for n in unknown)}; declare them under "
                             f"`parameters`")
        unused = sorted(set(self.parameters) - refs)
        if unused:
            raise ValueError(f"parameter(s) {', '.join(unused)} are declared but not used "
                             f"in the condition")
        if self.select.min_members > 1 and self.subject == "point":
            raise ValueError("min_members needs subject device or room")
        for chemistry, defaults in self.chemistry.items():
            extra = sorted(set(defaults.set) - set(self.parameters))
            if extra:
                raise ValueError(f"chemistry {chemistry}: no parameter(s) {', '.join(extra)}")


SupervisedAlarm = Literal["output_no_feedback", "output_unexpected_feedback"]


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class Escalation:
    """An output supervision alarm (`actions.output_no_feedback` …) made more severe, with
    more actions, while a hazard is present in a room the output serves: an exhaust fan that
    does not run while hydrogen is above warning is critical and stops the charging."""

    id: Name
    title: Annotated[str, Limits(min_length=3)]
    alarm: SupervisedAlarm
    roles: Names
    """Output roles this applies to (`exhaust_fan`)."""
    room_type: RoomTypes | None = None
    """Only outputs serving a room of these types."""
    while_active: Annotated[tuple[Annotated[str, Limits(min_length=3)], ...],
                            Limits(min_length=1)]
    """Rule ids (fnmatch patterns) of which an alarm with its condition present in one of
    the output's rooms escalates it."""
    severity: Severity
    basis: Annotated[str, Limits(min_length=5)]
    actions: tuple[ActionRole, ...] = ()
    response: Response | None = None
    """What the person on site does (as `Rule.response`)."""


def _unique_ids(rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise ValueError(f"rule id {rule.id!r} is used twice in this pack")
        seen.add(rule.id)
    return rules


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class RulePack:
    pack: Name
    title: Annotated[str, Limits(min_length=3)]
    description: str | None = None
    rules: Annotated[tuple[Rule, ...], Limits(min_length=1), Check(_unique_ids)]
    escalations: tuple[Escalation, ...] = ()

    def full_id(self, rule: Rule) -> str:
        return f"{self.pack}.{rule.id}"

    def rule(self, rule_id: str) -> Rule | None:
        """The rule with this short or full id."""
        short = rule_id.removeprefix(f"{self.pack}.")
        return next((r for r in self.rules if r.id == short), None)


# --- what kind of value each parameter is -------------------------------------------------

_NUM = get_args(Num)[1]
_DUR = get_args(Dur)[1]
"""The validators that make a field of the condition language a `Num` or a `Dur`."""


@functools.cache
def _hints(model: type) -> dict[str, Any]:
    """The annotations of `model`'s fields, with their `Annotated` metadata."""
    return get_type_hints(model, include_extras=True)


def _field_kind(model: type, field: str) -> Literal["number", "duration"] | None:
    """`number` for a `Num` field of the condition language (`above`, `deadband`, `count`,
    `outside`'s pair …), `duration` for a `Dur` one (`on_delay`, `stale`, `window` …), None
    for others (`equals` …): read from the annotation, so a field added to
    gateway.rules.condition_model is judged by the type it is given."""
    def metadata(annotation: Any) -> Iterator[Any]:
        yield from getattr(annotation, "__metadata__", ())
        for arg in get_args(annotation):
            yield from metadata(arg)

    found: set[Literal["number", "duration"]] = set()
    for meta in metadata(_hints(model)[field]):
        if meta is _NUM or meta is _DUR:
            found.add("number" if meta is _NUM else "duration")
    return found.pop() if len(found) == 1 else None


def _threshold(signal: Signal) -> str:
    """What a threshold of a comparison of `signal` is in."""
    if isinstance(signal, RateSignal):
        per = signal.rate.per
        unit = "the rate's `per`" if isinstance(per, str) else {
            1.0: "second", 60.0: "minute", 3600.0: "hour"}.get(per, format_duration(per))
        return f"a rate threshold in the point's unit per {unit}"
    return ("a threshold in % of the rating" if isinstance(signal, LoadSignal) else
            "a threshold in %" if signal == "unbalance" else
            "a dew-point threshold in °C" if signal == "dew_point" else
            "a threshold in the point's unit")


_WHAT: dict[tuple[str, str], str] = {
    ("Compare", "deadband"): "a deadband in the threshold's unit",
    ("LoadSpec", "rating"): "a current rating in A",
    ("RateSpec", "confidence"): "the rate's confidence, in standard errors",
    ("FlatlineSpec", "epsilon"): "the flatline's epsilon, in the point's unit",
    ("AtLeastSpec", "count"): "how many, a whole number",
    ("FlatlineSpec", "window"): "the flatline's window",
    ("RateSpec", "window"): "the rate's window",
    ("RateSpec", "per"): "the rate's time unit, per",
    ("RateSpec", "min_span"): "the rate's min_span",
}
_THRESHOLDS = frozenset({"above", "at_or_above", "below", "at_or_below", "outside"})


def _slots(node: Any) -> Iterator[tuple[str, ParamKind]]:
    """(parameter, kind) for every `$name` in `node` and the sections under it."""
    model = type(node)
    for f in fields(model):
        field = f.name
        value = getattr(node, field)
        for item in value if isinstance(value, tuple) else (value,):
            if is_dataclass(item):
                yield from _slots(item)
            elif isinstance(item, str) and item.startswith("$"):
                kind = _field_kind(model, field)
                if kind is None:
                    continue  # a slot that takes no parameter's value (`equals: $x` is text)
                what = (_threshold(node.signal) if isinstance(node, Compare)
                        and field in _THRESHOLDS else _WHAT.get((model.__name__, field), field))
                yield item[1:], ParamKind(kind, what)


def parameter_kinds(rule: Rule) -> dict[str, ParamKind]:
    """What kind of value each parameter of `rule` is, from where its condition refers to it
    (the first place, if more than one). One referred to only where no kind applies is a
    flag if its default is true/false, else not listed."""
    kinds: dict[str, ParamKind] = {}
    for name, kind in _slots(rule.condition):
        kinds.setdefault(name, kind)
    for name, default in rule.parameters.items():
        if name not in kinds and isinstance(default, bool):
            kinds[name] = ParamKind("flag")
    return kinds


def _kind_problems(rule: Rule) -> Iterator[tuple[YamlPath, str]]:
    """(path under the rule, reason) for every parameter used as two kinds and every default
    (the rule's own, or a chemistry's) of the wrong kind."""
    kinds = parameter_kinds(rule)
    for name, kind in _slots(rule.condition):
        first = kinds.get(name)
        if first is not None and first.kind != kind.kind:
            yield (("parameters", name), f"${name} is used as {first.describe()} and as "
                                         f"{kind.describe()}; use two parameters")
            kinds.pop(name)
    where: list[tuple[YamlPath, KeepsWritten, dict[str, ParamValue]]] = [
        (("parameters",), rule, rule.parameters),
        *((("chemistry", c, "set"), d, d.set) for c, d in rule.chemistry.items())]
    for under, model, values in where:
        for name in values:
            known = kinds.get(name)
            problem = known.problem(model.written(name)) if known is not None else None
            if problem is not None:
                yield (*under, name), f"{name} {problem}"


# --- loading --------------------------------------------------------------------------------


def load_pack(path: Path) -> RulePack:
    """Load and validate one pack file; raise ConfigErrors naming file, path, line, reason.
    (The YAML reader is imported here: a running gateway gets its packs checked and never
    reads one itself, issue 15.)"""
    from pydantic import ValidationError

    from gateway.config.yamlfile import pydantic_errors, read_yaml

    name = str(path)
    data, lines = read_yaml(path)
    try:
        pack = validator(RulePack).validate_python(data)
    except ValidationError as exc:
        raise ConfigErrors(pydantic_errors(exc, name, lines, tags=_TAG_PARTS)) from exc
    if pack.pack != path.stem:
        raise ConfigErrors([ConfigError(name, ("pack",), f"pack id {pack.pack!r} must match "
                                        f"its file name {path.stem!r}", lines.line_of(("pack",)))])
    errors = []
    for index, rule in enumerate(pack.rules):
        for quantity in (rule.select.quantity or ()):
            if quantity == "online":
                where: YamlPath = ("rules", index, "select", "quantity")
                errors.append(ConfigError(name, where, f"the online point's quantity is "
                                          f"{DEVICE_ONLINE!r}", lines.line_of(where)))
        for under, reason in _kind_problems(rule):
            where = ("rules", index, *under)
            errors.append(ConfigError(name, where, reason, lines.line_of(where)))
    if errors:
        raise ConfigErrors(errors)
    return pack


_TAG_PARTS = frozenset({*CONDITION_KINDS, "compare", "function-after", "function-before", "str",
              "float", "bool", "int", "tuple[...]", "RateSignal", "LoadSignal", "ExcessSignal",
              "literal['value','spread','unbalance','dew_point','mean','outlier']"})
