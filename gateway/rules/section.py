"""The `rules:` section of a gateway config: which packs, disabled rules, parameter overrides.

A leaf module (no loader imports), so the gateway config model can hold it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from gateway.config.duration import parse_duration
from gateway.config.profile import Id, Name, Strict

RoomType = Literal["equipment", "data_center", "battery", "energy_storage", "distribution",
                   "ups", "other"]
ROOM_TYPES: tuple[str, ...] = ("equipment", "data_center", "battery", "energy_storage",
                               "distribution", "ups", "other")


ParamValue = float | bool | None
"""A parameter's value: a number (durations in seconds), a flag, or None = not configured."""


def parse_param_value(value: object) -> ParamValue:
    """A parameter default or override: a number, a duration (`10m`), true/false, or null."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("a parameter must be a finite number")
        return float(value)
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError("a parameter is a number, a duration (5s, 10m), true/false or null")


RuleId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$", max_length=129)]
"""A full rule id, `<pack>.<rule>`."""

MAX_RESPONSE = 400


def _one_paragraph(text: str) -> str:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError("a response is one paragraph of plain text: no line breaks, tabs or "
                         "control characters (YAML's `>-` folds lines into one)")
    return text


Response = Annotated[str, Field(min_length=10, max_length=MAX_RESPONSE),
                     AfterValidator(_one_paragraph)]
"""What the person on site does when an alarm sounds: one paragraph of plain text (no line
breaks: a card shows it as it is), at most `MAX_RESPONSE` characters."""


class ParameterOverride(Strict):
    rule: RuleId
    """The rule whose parameters change (`fire.heat_fixed`)."""
    device: Id | None = None
    """Only for this device."""
    room: Id | None = None
    """Only for this room."""
    room_type: RoomType | None = None
    """Only for rooms of this type."""
    set: dict[Name, Annotated[ParamValue, BeforeValidator(parse_param_value)]] = Field(
        min_length=1)
    """Parameter values (`{limit: 60}`; durations with units)."""

    @model_validator(mode="after")
    def _one_scope(self) -> ParameterOverride:
        scopes = [s for s in ("device", "room", "room_type") if getattr(self, s) is not None]
        if len(scopes) > 1:
            raise ValueError(f"give at most one scope (device, room or room_type), not "
                             f"{' and '.join(scopes)}")
        return self

    @property
    def rank(self) -> int:
        """Specificity: site 0 < room type 1 < room 2 < device 3."""
        if self.device is not None:
            return 3
        if self.room is not None:
            return 2
        return 1 if self.room_type is not None else 0


class RulesSection(Strict):
    """The `rules:` section of a gateway config."""

    packs: tuple[Name, ...] | None = None
    """Pack ids to load; None = every pack in the rules directory."""
    disabled: tuple[RuleId, ...] = ()
    """Rule ids that do not run at this site."""
    parameters: tuple[ParameterOverride, ...] = ()
    """Site overrides of rule parameters, most specific scope wins (device > room > room type >
    site)."""
    responses: dict[RuleId, Response] = Field(default={}, max_length=1000)
    """The site's own response text for rules (`fire.smoke_coincidence: "Call the guard room,
    ext. 2100, then …"`), shown on the panel instead of the pack's."""


