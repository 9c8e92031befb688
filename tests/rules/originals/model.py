"""gateway/rules/model.py as pydantic models, at 9d61447 (tests/rules/test_rule_sections.py):
its classes, walks and loader verbatim; its tables imported from the converted module, which
kept them unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.alarms.types import Severity
from gateway.config.duration import format_duration
from gateway.config.errors import ConfigError, ConfigErrors, YamlPath
from gateway.config.profile import Name, Strict
from gateway.rules.model import _TAG_PARTS, _THRESHOLDS, _WHAT, DEVICE_ONLINE
from tests.rules.originals.condition_model import (
    Compare,
    Condition,
    Dur,
    LoadSignal,
    Names,
    Num,
    RateSignal,
    RoomTypes,
    Select,
    Signal,
    condition_refs,
)
from tests.rules.originals.section import (
    KeepsWritten,
    ParamKind,
    ParamValue,
    Response,
    parse_param_value,
)

# --- rules and packs ------------------------------------------------------------------------

ActionRole = Name
"""An output role the actions layer maps to a device output: siren, strobe, exhaust_fan,
alarm_panel, charge_inhibit …"""


Chemistry = Literal["vrla", "vla", "lfp", "nmc"]
"""Battery chemistries a room or device may declare (gateway.config.site.Chemistry)."""


class ChemistryDefaults(KeepsWritten):
    """A rule's parameter defaults for one battery chemistry, with their basis."""

    set: dict[Name, Annotated[ParamValue, BeforeValidator(parse_param_value)]] = \
        Field(min_length=1)
    basis: str = Field(min_length=5)


class Rule(KeepsWritten):
    WRITTEN = "parameters"
    id: Name
    title: str = Field(min_length=3)
    severity: Severity
    basis: str = Field(min_length=5)
    """The standard and clause the threshold rests on, or `vendor default: …`."""
    description: str | None = None
    response: Response | None = None
    """What the person on site does when the alarm sounds, first things first (ISA-18.2's
    alarm response: the corrective action written down with the alarm, not looked up at
    3 a.m.). Shown on the panel's alarm card; a site's `rules: responses:` replaces it."""
    parameters: dict[Name, Annotated[ParamValue, BeforeValidator(parse_param_value)]] = {}
    select: Select
    subject: Literal["point", "device", "room"] = "point"
    condition: Condition
    actions: tuple[ActionRole, ...] = ()
    latching: bool = False
    trouble: bool = False
    """The alarm is about the devices themselves (a detector failed, monitoring lost), not a
    hazard they measure: held while a config is on trial (gateway.flashing.trial), as the
    sensor_health pack's are, so a candidate that misreads its devices costs nothing if it is
    rolled back."""
    chemistry: dict[Chemistry, ChemistryDefaults] = {}
    """Parameter defaults per battery chemistry of the subject's device or room; a site's
    `rules: parameters:` overrides still win."""

    @field_validator("actions")
    @classmethod
    def _unique_actions(cls, actions: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(actions)) != len(actions):
            raise ValueError("an action role is listed twice")
        return actions

    @model_validator(mode="after")
    def _parameters_used(self) -> Rule:
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
        return self


SupervisedAlarm = Literal["output_no_feedback", "output_unexpected_feedback"]


class Escalation(Strict):
    """An output supervision alarm (`actions.output_no_feedback` …) made more severe, with
    more actions, while a hazard is present in a room the output serves: an exhaust fan that
    does not run while hydrogen is above warning is critical and stops the charging."""

    id: Name
    title: str = Field(min_length=3)
    alarm: SupervisedAlarm
    roles: Names
    """Output roles this applies to (`exhaust_fan`)."""
    room_type: RoomTypes | None = None
    """Only outputs serving a room of these types."""
    while_active: tuple[Annotated[str, Field(min_length=3)], ...] = Field(min_length=1)
    """Rule ids (fnmatch patterns) of which an alarm with its condition present in one of
    the output's rooms escalates it."""
    severity: Severity
    basis: str = Field(min_length=5)
    actions: tuple[ActionRole, ...] = ()
    response: Response | None = None
    """What the person on site does (as `Rule.response`)."""


class RulePack(Strict):
    pack: Name
    title: str = Field(min_length=3)
    description: str | None = None
    rules: tuple[Rule, ...] = Field(min_length=1)
    escalations: tuple[Escalation, ...] = ()

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        seen: set[str] = set()
        for rule in rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice in this pack")
            seen.add(rule.id)
        return rules

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


def _field_kind(model: type[BaseModel], field: str) -> Literal["number", "duration"] | None:
    """`number` for a `Num` field of the condition language (`above`, `deadband`, `count`,
    `outside`'s pair …), `duration` for a `Dur` one (`on_delay`, `stale`, `window` …), None
    for others (`equals` …): read from the annotation, so a field added to
    gateway.rules.condition_model is judged by the type it is given."""
    info = model.model_fields[field]

    def metadata(annotation: Any) -> Iterator[Any]:
        yield from getattr(annotation, "__metadata__", ())
        for arg in get_args(annotation):
            yield from metadata(arg)

    found: set[Literal["number", "duration"]] = set()
    for meta in (*info.metadata, *metadata(info.annotation)):
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


def _slots(node: BaseModel) -> Iterator[tuple[str, ParamKind]]:
    """(parameter, kind) for every `$name` in `node` and the models under it."""
    model = type(node)
    for field in model.model_fields:
        value = getattr(node, field)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, BaseModel):
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
    from gateway.config.yamlfile import pydantic_errors, read_yaml

    name = str(path)
    data, lines = read_yaml(path)
    try:
        pack = RulePack.model_validate(data)
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
