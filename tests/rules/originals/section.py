"""gateway/rules/section.py as pydantic models, at 9d61447 (tests/rules/test_rule_sections.py):
its classes verbatim; what has no pydantic in it (ParamKind, parse_param_value …) imported from
the converted module, which kept it unchanged."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    model_validator,
)

from gateway.config.profile import Id, Name, Strict
from gateway.rules.section import (
    MAX_RESPONSE,
    ParamKind,
    ParamValue,
    RoomType,
    _one_paragraph,
    parse_param_value,
)

__all__ = ["KeepsWritten", "ParamKind", "ParamValue", "ParameterOverride", "Response",
           "RoomType", "RuleId", "RulesSection", "parse_param_value"]

class KeepsWritten(Strict):
    """A model with a mapping of parameter values (`WRITTEN`: `set`, a rule's `parameters`)
    that keeps them as the file has them (`5m`, not 300.0) beside the values (numbers of
    seconds, what the engine uses), for the check of their kinds (`ParamKind.problem`)."""

    WRITTEN: ClassVar[str] = "set"
    _written: dict[str, object] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_written(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        model = handler(data)
        values = data.get(cls.WRITTEN) if isinstance(data, dict) else None
        if isinstance(values, dict):
            model._written = dict(values)
        return model

    def written(self, name: str) -> object:
        """The value of parameter `name` as the file has it, else as validated."""
        written = (self.__pydantic_private__ or {}).get("_written") or {}
        values: dict[str, ParamValue] = getattr(self, self.WRITTEN)
        return written.get(name, values.get(name))


RuleId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$", max_length=129)]
"""A full rule id, `<pack>.<rule>`."""

Response = Annotated[str, Field(min_length=10, max_length=MAX_RESPONSE),
                     AfterValidator(_one_paragraph)]
"""What the person on site does when an alarm sounds: one paragraph of plain text (no line
breaks: a card shows it as it is), at most `MAX_RESPONSE` characters."""


class ParameterOverride(KeepsWritten):
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


