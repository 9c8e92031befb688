"""The `rules:` section of a gateway config: which packs, disabled rules, parameter overrides.

A leaf module (no loader imports), so the gateway config model can hold it. Its sections are
plain dataclasses (gateway.config.section) that pydantic validates in the config check's
child: a running gateway imports this module without pydantic (issue 15)."""

import math
import re
from typing import Annotated, Literal

from gateway.config.duration import DURATION_PATTERN, parse_duration
from gateway.config.names import Id, Name
from gateway.config.section import Check, Limits, default_factory, defaults, section
from gateway.config.section_markers import KeepsWritten, before
from gateway.records import dataclass

RoomType = Literal["equipment", "data_center", "battery", "energy_storage", "distribution",
                   "ups", "other"]
ROOM_TYPES: tuple[str, ...] = ("equipment", "data_center", "battery", "energy_storage",
                               "distribution", "ups", "other")


ParamValue = float | bool | None
"""A parameter's value: a number (durations in seconds), a flag, or None = not configured."""


_DURATION = re.compile(DURATION_PATTERN)
_LEADING_NUMBER = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)")


def parse_param_value(value: object) -> ParamValue:
    """A parameter default or override: a number, a duration (`10m`), true/false, or null.

    What kind of value a parameter takes (a number, a duration, a flag) depends on where the
    rule's condition uses it, which this model does not see: `ParamKind.problem` judges the
    value as written once the rule is known (gateway.rules.model.parameter_kinds)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("a parameter must be a finite number")
        return float(value)
    if isinstance(value, str):
        if _DURATION.match(value) is None:  # not `5m`: say nothing of a kind not known here
            raise ValueError(f"{value!r} is neither a number nor a duration; write a number "
                             f"without a unit (60), a duration with one (500ms, 5s, 2m, 1h), "
                             f"true/false or null")
        return parse_duration(value)
    raise ValueError("a parameter is a number, a duration (5s, 10m), true/false or null")


def _yaml_text(value: object) -> str:
    """A scalar as a YAML file has it: true, 60, '60C'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float | str):
        return repr(value) if isinstance(value, str) else str(value)
    return "a list" if isinstance(value, list | tuple) else "a mapping" \
        if isinstance(value, dict) else repr(value)


@dataclass(frozen=True)
class ParamKind:
    """What a rule's parameter is, from where its condition refers to it (`$limit` in
    `at_or_above` is a number, `$delay` in `on_delay` a duration)."""

    kind: Literal["number", "duration", "flag"]
    what: str = ""
    """Where the condition uses it: `a threshold in the point's unit`, `on_delay`."""

    def describe(self) -> str:
        noun = {"number": "a number", "duration": "a duration", "flag": "true or false"}
        return f"{noun[self.kind]} ({self.what})" if self.what else noun[self.kind]

    def problem(self, written: object) -> str | None:
        """Why `written` — a value as the file has it, before conversion (`5m`, not 300.0) —
        is not a value of this kind (`is a number (…), not a duration '5m'`), or None.
        null (not configured) is every kind's."""
        if written is None:
            return None
        kind = self.describe()
        if self.kind == "number":
            if isinstance(written, bool) or not isinstance(written, int | float | str):
                return f"is {kind}, not {_yaml_text(written)}"
            if isinstance(written, int | float):
                return None if math.isfinite(written) else f"is {kind}, not {written}"
            if _DURATION.match(written):
                return f"is {kind}, not a duration {written!r}"
            number = _LEADING_NUMBER.match(written)
            if number is not None:
                return f"is {kind}; write {number.group(1).strip()}, not {written!r}"
            return f"is {kind}; write a number, not {written!r}"
        if self.kind == "duration":
            if isinstance(written, bool) or not isinstance(written, int | float | str):
                return (f"is {kind}: a number with a unit (500ms, 5s, 2m, 1h) or a number of "
                        f"seconds, not {_yaml_text(written)}")
            if isinstance(written, str) and _DURATION.match(written) is None:
                return (f"is {kind}; write a number with a unit (500ms, 5s, 2m, 1h) or a "
                        f"number of seconds, not {written!r}")
            try:
                parse_duration(written)
            except ValueError as exc:  # negative, or longer than any a gateway waits
                return f"is {kind}: {exc}"
            return None
        if isinstance(written, bool):
            return None
        return f"is {kind}, not {_yaml_text(written)}"


RuleId = Annotated[str, Limits(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$", max_length=129)]
"""A full rule id, `<pack>.<rule>`."""

MAX_RESPONSE = 400


def _one_paragraph(text: str) -> str:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError("a response is one paragraph of plain text: no line breaks, tabs or "
                         "control characters (YAML's `>-` folds lines into one)")
    return text


Response = Annotated[str, Limits(min_length=10, max_length=MAX_RESPONSE),
                     Check(_one_paragraph)]
"""What the person on site does when an alarm sounds: one paragraph of plain text (no line
breaks: a card shows it as it is), at most `MAX_RESPONSE` characters."""


Params = dict[Name, Annotated[ParamValue, before(parse_param_value)]]
"""Parameter values by name, each parsed by `parse_param_value`."""


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class ParameterOverride(KeepsWritten):
    rule: RuleId
    """The rule whose parameters change (`fire.heat_fixed`)."""
    device: Id | None = None
    """Only for this device."""
    room: Id | None = None
    """Only for this room."""
    room_type: RoomType | None = None
    """Only for rooms of this type."""
    set: Annotated[Params, Limits(min_length=1)]
    """Parameter values (`{limit: 60}`; durations with units)."""

    def __post_init__(self) -> None:
        scopes = [s for s in ("device", "room", "room_type") if getattr(self, s) is not None]
        if len(scopes) > 1:
            raise ValueError(f"give at most one scope (device, room or room_type), not "
                             f"{' and '.join(scopes)}")

    @property
    def rank(self) -> int:
        """Specificity: site 0 < room type 1 < room 2 < device 3."""
        if self.device is not None:
            return 3
        if self.room is not None:
            return 2
        return 1 if self.room_type is not None else 0


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class RulesSection:
    """The `rules:` section of a gateway config."""

    packs: tuple[Name, ...] | None = None
    """Pack ids to load; None = every pack in the rules directory."""
    disabled: tuple[RuleId, ...] = ()
    """Rule ids that do not run at this site."""
    parameters: tuple[ParameterOverride, ...] = ()
    """Site overrides of rule parameters, most specific scope wins (device > room > room type >
    site)."""
    responses: Annotated[dict[RuleId, Response], Limits(max_length=1000)] = \
        default_factory(dict)
    """The site's own response text for rules (`fire.smoke_coincidence: "Call the guard room,
    ext. 2100, then …"`), shown on the panel instead of the pack's."""

    @classmethod
    def model_construct(cls) -> "RulesSection":
        """The default section, unvalidated (`defaults(RulesSection)`): what the config model
        (gateway.config.site) gives as the default of its `rules:`."""
        return defaults(cls)
