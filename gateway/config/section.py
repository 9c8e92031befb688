"""Config sections as plain frozen dataclasses, defined without pydantic (issue 15).

A running gateway validates no config: `roomwarden run` gets it checked and pickled by a child
(gateway.isolated_check). Yet its config models are pydantic classes, so the gateway holds
pydantic (~8 MiB: its core library, the classes' field infos and mock validators) to read
plain values. A section written as

    @section
    @dataclass(frozen=True, slots=True, kw_only=True)
    class RecorderSettings:
        window: Duration = 900.0
        max_points: Annotated[int, Between(ge=1, le=100_000)] = 20_000
        def __post_init__(self) -> None: ...  # cross-field checks: raise ValueError

is validated by pydantic all the same when it is a field of a pydantic model (or through a
`TypeAdapter`): pydantic reads the config dict `STRICT` from `__pydantic_config__` (unknown
keys are errors), applies `Annotated` metadata through its `__get_pydantic_core_schema__`
(`Duration`, `at_most`: gateway.config.duration; `Between`, `Limits` — pydantic's `Field`
constraints — and `Check` — an after-validator — here; `default_factory` for a mutable
default), and calls `__post_init__`, turning its ValueError into the section's error with
file, line and path like a model's `model_validator(mode="after")`. Only those methods import
pydantic, so a process that validates nothing (a running gateway unpickling its config) never
imports it for a section.

`section` also makes the class's own constructor validate like a pydantic model's:
`RecorderSettings(window=5.0)` raises pydantic's ValidationError (pydantic is imported then, by
a test or a tool; a gateway never constructs a section), while pickling, copying and pydantic
itself build instances without calling `__init__`. A field's default section is
`defaults(Section)`: the dataclass's own constructor, unvalidated (pydantic's
`model_construct()`), so that no validator is built at import. A field's description is the
docstring under it, read when a schema is generated (gateway.config.schema). A section's
module does without `from __future__ import annotations`: pydantic would compile each field's
annotation text when it builds the validator (0.2 ms for the two sections of
gateway.recorder.settings), where a model's are evaluated when its class is made.
docs/performance.md, "Config types without pydantic at run time", says what is measured and
what the other sections need.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from gateway.records import dataclass, field

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler, TypeAdapter
    from pydantic_core import CoreSchema

T = TypeVar("T")

STRICT: dict[str, Any] = {"extra": "forbid"}
"""pydantic's config of every section (a plain dict is a `ConfigDict`): unknown keys are errors.
Instances are immutable by being frozen dataclasses."""

_UNCHECKED: dict[type, Callable[..., None]] = {}
"""Each section's dataclass-made `__init__`, which `section` replaces (see `defaults`)."""


@dataclass(frozen=True, slots=True)
class Between:
    """Inclusive bounds of a number field: pydantic's `Field(ge=..., le=...)`, with the same
    errors ("Input should be greater than or equal to 1") and JSON schema (`minimum`,
    `maximum`), without importing pydantic to declare it."""

    ge: int | float | None = None
    le: int | float | None = None

    def __get_pydantic_core_schema__(self, source: Any,
                                     handler: GetCoreSchemaHandler) -> CoreSchema:
        import annotated_types  # pydantic's own dependency: what `Field(ge=, le=)` becomes

        return handler(Annotated[source, annotated_types.Interval(ge=self.ge, le=self.le)])


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Constraints of a field as pydantic's `Field(...)` takes them (`gt`, `allow_inf_nan`,
    `min_length`, `pattern` …), handed to pydantic's own `Field` when it builds a validator or a
    schema: the same errors ("String should match pattern '^[a-z]+$'") and JSON schema
    (`exclusiveMinimum`, `minItems`, `pattern` …) as that `Field` in the annotation, without
    importing pydantic to declare it (`Annotated[str, Limits(pattern=..., max_length=64)]`)."""

    gt: int | float | None = None
    ge: int | float | None = None
    lt: int | float | None = None
    le: int | float | None = None
    allow_inf_nan: bool | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None

    def __get_pydantic_core_schema__(self, source: Any,
                                     handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic import Field

        given = {f.name: getattr(self, f.name) for f in fields(self)
                 if getattr(self, f.name) is not None}
        return handler(Annotated[source, Field(**given)])


@dataclass(frozen=True, slots=True)
class Check:
    """A field's own check, after its type's: `check(value)` returns the value or raises
    ValueError, reported at the field's key (pydantic's `AfterValidator`, or a model's
    `field_validator(mode="after")`: the same core schema, built when pydantic builds one)."""

    check: Callable[[Any], Any]

    def __get_pydantic_core_schema__(self, source: Any,
                                     handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(self.check, handler(source))


def default_factory(factory: Callable[[], T]) -> T:
    """A field's mutable default, made anew for each instance (pydantic's `Field(default_factory=
    ...)`; a dataclass refuses a `{}` default): `deadbands: dict[str, float] =
    default_factory(dict)`. The JSON schema shows `factory()` as the default, as it showed a
    model's literal `= {}` (pydantic writes no default for a factory)."""
    made: T = field(default_factory=factory,
                    metadata={"json_schema_extra": {"default": factory()}})
    return made


def model_message(error: Mapping[str, Any]) -> str:
    """The message of one of pydantic's errors (`ValidationError.errors()`) as it reads for a
    model: a section's unknown key, missing key and value that is no mapping have other error
    types and words (`Unexpected keyword argument`), which this turns back (the orphaned
    outputs' journal logs them; gateway.config.yamlfile words a config's errors itself)."""
    kind = error["type"]
    if kind == "unexpected_keyword_argument":
        return "Extra inputs are not permitted"
    if kind == "missing_keyword_argument":
        return "Field required"
    if kind == "dataclass_type":
        return ("Input should be a valid dictionary or instance of "
                f"{error.get('ctx', {}).get('class_name')}")
    return str(error["msg"])


def section(cls: type[T]) -> type[T]:
    """Make a `@dataclass(frozen=True, slots=True, kw_only=True)` a config section: strict for
    pydantic, validated when constructed in Python (see the module's docstring)."""
    params = getattr(cls, "__dataclass_params__", None)
    if not (is_dataclass(cls) and params is not None and params.frozen
            and "__slots__" in cls.__dict__ and all(f.kw_only for f in fields(cls))):
        raise TypeError(f"{cls.__qualname__}: a config section is a "
                        "@dataclass(frozen=True, slots=True, kw_only=True)")
    unchecked: Callable[..., None] = cls.__init__

    @functools.wraps(unchecked)  # its signature, for help() and inspect
    def checked(self: T, **values: Any) -> None:
        made = validator(cls).validate_python(values)
        for f in fields(cls):
            object.__setattr__(self, f.name, getattr(made, f.name))

    setattr(cls, "__init__", checked)  # noqa: B010  (mypy: a method cannot be assigned)
    setattr(cls, "__pydantic_config__", STRICT)  # noqa: B010
    _UNCHECKED[cls] = unchecked
    return cls


def defaults(cls: type[T]) -> T:
    """`cls()` unvalidated: a field's default section, made at import without building a
    validator (tests/config/test_lean_imports.py checks it equals `cls()`)."""
    made = object.__new__(cls)
    _UNCHECKED[cls](made)
    return made


def replaced(made: T, **changes: Any) -> T:
    """`made` with `changes`, unvalidated (pydantic's `model_copy(update=...)`): a running
    gateway's own adjustment (the panel's port from the command line) builds no validator,
    where `dataclasses.replace` calls the validating constructor. `__post_init__` runs."""
    cls = type(made)
    values = {f.name: getattr(made, f.name) for f in fields(cls)}  # type: ignore[arg-type]
    values.update(changes)
    new: T = object.__new__(cls)
    _UNCHECKED[cls](new, **values)
    return new


def is_section(cls: object) -> bool:
    """Whether `cls` is a config section made by `section`."""
    return isinstance(cls, type) and cls in _UNCHECKED


def validator(cls: type[T]) -> TypeAdapter[T]:
    """The validator of section `cls` alone (its constructor's), built at its first use."""
    adapter = _VALIDATORS.get(cls)
    if adapter is None:
        from pydantic import TypeAdapter

        import gateway.strict  # noqa: F401  (pydantic without its plugin search: gateway.strict)

        adapter = _VALIDATORS[cls] = TypeAdapter(cls)
    return adapter


_VALIDATORS: dict[type, TypeAdapter[Any]] = {}


def unvalidated(cls: type[T], **values: Any) -> T:
    """Section `cls` of `values` known valid, built without a validator (its dataclass's own
    constructor: `__post_init__` runs): a reader that has checked plain data itself, as
    pydantic would have (gateway.actions.orphans), makes what pydantic would have made."""
    made: T = object.__new__(cls)
    _UNCHECKED[cls](made, **values)
    return made
