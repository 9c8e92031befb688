"""Markers for config sections (gateway.config.section) beyond `Limits` and `Check`: a union
told apart by one key (`Discriminated`) and a section that prepares its input before its
fields are validated (`prepared`). Like the others, each is defined without pydantic and hands
pydantic what it stood for when pydantic builds a validator or a schema, so the errors, the
JSON schema and the dumps are those of the model they replace (tests/config/
test_profile_sections.py compares them with the device profiles' pydantic originals)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, get_type_hints

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler
    from pydantic_core import CoreSchema

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Discriminated:
    """A union of sections told apart by the value of one of their keys, each member's
    `Literal`: pydantic's `Field(discriminator=key)` (`Annotated[A | B, Discriminated("kind")]`),
    with its errors (`union_tag_invalid`, `union_tag_not_found`) and JSON schema
    (`oneOf` with a `discriminator` mapping)."""

    key: str

    def __get_pydantic_core_schema__(self, source: Any,
                                     handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic import Field

        return handler(Annotated[source, Field(discriminator=self.key)])


def prepared(prepare: Callable[[object], object]) -> Callable[[type[T]], type[T]]:
    """A section whose input goes through `prepare` before its fields are validated (a model's
    `model_validator(mode="before")`): `@prepared(func)` above `@section`. `prepare` takes the
    raw input (a dict from YAML, or anything else) and returns what is validated."""

    def hook(cls: type[Any], source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic_core import core_schema

        return core_schema.no_info_before_validator_function(prepare, handler(source))

    def decorate(cls: type[T]) -> type[T]:
        setattr(cls, "__get_pydantic_core_schema__", classmethod(hook))  # noqa: B010
        return cls

    return decorate


def section_hints(cls: type) -> dict[str, Any]:
    """A section's fields (its bases' first), each with its annotation and the markers in it
    (`Annotated[float, DurationText()]`): what a walk of its values needs to write them as
    pydantic would (gateway.rules.warm's fingerprints of a device's profile)."""
    found = _HINTS.get(cls)
    if found is None:
        hints = get_type_hints(cls, include_extras=True)
        found = _HINTS[cls] = {f.name: hints[f.name] for f in fields(cls)}
    return found


_HINTS: dict[type, dict[str, Any]] = {}
