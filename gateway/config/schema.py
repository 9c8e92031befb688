"""The config's JSON Schema (`roomwarden schema`, docs/config-reference.md), with each key's
docstring as its description.

The config models (`gateway.config.profile.Strict` and its subclasses, in every package) write
a key's description as the docstring under it. Pydantic can read those when it builds each
class (`use_attribute_docstrings`), but that parses the source of every model at import — about
a tenth of a CPU-second in every process that loads a config, for text only the schema shows.
So the docstrings are read here, when a schema is generated: the same extraction pydantic uses,
applied to the same fields (a key's description comes from the class that declares it; a
description given in `Field(...)` wins), so the schema is what it was. The same holds for a
config section that is a plain dataclass (gateway.config.section), whose default is written in
the schema as a model's is: through its own serializer (`5m`, not `300.0`).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import fields
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic._internal._docs_extraction import extract_docstrings_from_cls
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from gateway.config.profile import Strict
from gateway.config.section import is_section, validator


@functools.cache
def _docstrings(cls: type) -> dict[str, str]:
    """The docstrings under the fields `cls` itself declares, by field name."""
    return extract_docstrings_from_cls(cls, use_inspect=True)


def field_docstring(model: type, name: str) -> str | None:
    """The docstring of field `name` of `model`: from the class of its MRO that declares it,
    if that class is a config model (`Strict`) or section."""
    for klass in model.__mro__:
        if name in inspect.get_annotations(klass):
            if issubclass(klass, Strict) or is_section(klass):
                return _docstrings(klass).get(name)
            return None
    return None


def _describe(properties: dict[str, Any], cls: type[Any], names: dict[str, str]) -> None:
    """Each property of `names` (its field name → its key) that has no description: its
    field's docstring."""
    for name, key in names.items():
        prop = properties.get(key)
        if isinstance(prop, dict) and "description" not in prop:
            doc = field_docstring(cls, name)
            if doc is not None:
                prop["description"] = doc


class DescribedJsonSchema(GenerateJsonSchema):
    """Pydantic's JSON Schema, with the config models' field docstrings as descriptions."""

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        json_schema = super().model_schema(schema)
        cls = schema["cls"]
        properties = json_schema.get("properties")
        if isinstance(properties, dict) and issubclass(cls, Strict):
            _describe(properties, cls, {name: info.alias or name
                                        for name, info in cls.model_fields.items()
                                        if not info.description})
        return json_schema

    def dataclass_schema(self, schema: core_schema.DataclassSchema) -> JsonSchemaValue:
        json_schema = super().dataclass_schema(schema)
        cls = schema["cls"]
        properties = json_schema.get("properties")
        if isinstance(properties, dict) and is_section(cls):
            _describe(properties, cls, {f.name: f.name for f in fields(cls)})
        return json_schema

    def encode_default(self, dft: Any) -> Any:
        if is_section(type(dft)):  # pydantic would write its fields' Python values
            return validator(type(dft)).dump_python(dft, by_alias=self.by_alias, mode="json")
        return super().encode_default(dft)


def model_schema(model: type[BaseModel] | type[Any]) -> dict[str, Any]:
    """`model.model_json_schema()` with the field docstrings as descriptions (a section's:
    its validator's, e.g. GatewayConfig's)."""
    if is_section(model):
        return adapter_schema(validator(model))
    return model.model_json_schema(schema_generator=DescribedJsonSchema)


def adapter_schema(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    """`adapter.json_schema()` (e.g. the profile union) with the field docstrings."""
    return adapter.json_schema(schema_generator=DescribedJsonSchema)
