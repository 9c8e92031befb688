"""pydantic's own `Annotated` markers for the rule packs' dataclasses, made only when pydantic
builds a validator or a schema (issue 15): `before(f)` is `BeforeValidator(f)`, `tag(t)`
`Tag(t)`, `discriminated(f)` `Discriminator(f)` — the same core schema, so the same errors
and JSON schema —, declared without importing pydantic, so a running gateway that unpickles
its checked rule packs never imports it for them (gateway.config.section says how the
config's sections do the same). For the device profiles: a union told apart by one key
(`Discriminated`, pydantic's `Field(discriminator=key)`) and a section that prepares its input
before its fields are validated (`prepared`, a model's `model_validator(mode="before")`);
tests/config/test_profile_sections.py and tests/rules/test_rule_sections.py compare them with
the pydantic originals.

`KeepsWritten` keeps beside a section's validated parameter values (numbers of seconds) the
values as the file has them (`5m`), for the check of their kinds: what a pydantic model kept
in a `PrivateAttr` through a `model_validator(mode="wrap")`. Here the class's own
`__get_pydantic_core_schema__` wraps its dataclass schema with that validator, and the value
is in a slot of the base class, not a field: no key of the file, of the JSON schema, of a
dump or of `check`'s known keys, left out of equality and repr, kept by pickling and copying.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeVar, get_type_hints

from gateway.records import dataclass

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler
    from pydantic_core import CoreSchema

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Before:
    """`BeforeValidator(function)`: the same core schema, built as pydantic's is (on the
    schema of what precedes it in the `Annotated`, so constraints keep their order)."""

    function: Callable[[Any], Any]

    def __get_pydantic_core_schema__(self, source: Any,
                                     handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic_core import core_schema

        return core_schema.no_info_before_validator_function(self.function, handler(source))


@dataclass(frozen=True, slots=True)
class Pydantic:
    """pydantic's marker `kind(argument)`, handed to the handler when pydantic builds a schema
    (alone in its `Annotated`: a marker after it would see the source it hands on)."""

    kind: Literal["Tag", "Discriminator"]
    argument: Any

    def __get_pydantic_core_schema__(self, source: Any,
                                     handler: GetCoreSchemaHandler) -> CoreSchema:
        import pydantic

        return handler(Annotated[source, getattr(pydantic, self.kind)(self.argument)])


def before(function: Callable[[Any], Any]) -> Before:
    """`BeforeValidator(function)` (an after-validator is gateway.config.section's `Check`)."""
    return Before(function)


def tag(name: str) -> Pydantic:
    """`Tag(name)`: a member of a union `discriminated` by a function."""
    return Pydantic("Tag", name)


def discriminated(function: Callable[[Any], str | None]) -> Pydantic:
    """`Discriminator(function)`: the union's member is the one `tag`ged `function(value)`."""
    return Pydantic("Discriminator", function)


def _rebuilt(cls: type[T], values: tuple[Any, ...], written: dict[str, object]) -> T:
    """An instance of `cls` from its fields' values and its written values (unpickling)."""
    made: T = object.__new__(cls)
    for f, value in zip(fields(cls), values, strict=True):  # type: ignore[arg-type]
        object.__setattr__(made, f.name, value)
    object.__setattr__(made, "_written", written)
    return made


class KeepsWritten:
    """Base of a section (gateway.config.section) with a mapping of parameter values
    (`WRITTEN`: `set`, a rule's `parameters`) that keeps them as the file has them (`5m`, not
    300.0) beside the values (numbers of seconds, what the engine uses), for the check of
    their kinds (gateway.rules.section.ParamKind.problem)."""

    __slots__ = ("__weakref__", "_written")  # a Rule is a key of weak memos (rules.binding)
    WRITTEN: ClassVar[str] = "set"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any,
                                     handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic_core import core_schema

        def keep_written(data: Any, validate: Callable[[Any], Any]) -> Any:
            made = validate(data)
            values = data.get(cls.WRITTEN) if isinstance(data, dict) else None
            if isinstance(values, dict):
                object.__setattr__(made, "_written", dict(values))
            elif not hasattr(made, "_written"):
                object.__setattr__(made, "_written", {})
            return made

        return core_schema.no_info_wrap_validator_function(keep_written, handler(source))

    def written(self, name: str) -> object:
        """The value of parameter `name` as the file has it, else as validated."""
        written: Mapping[str, object] = getattr(self, "_written", None) or {}
        values: dict[str, Any] = getattr(self, self.WRITTEN)
        return written.get(name, values.get(name))

    def __reduce__(self) -> tuple[Any, ...]:
        values = tuple(getattr(self, f.name) for f in fields(self))  # type: ignore[arg-type]
        return _rebuilt, (type(self), values, getattr(self, "_written", {}))


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
