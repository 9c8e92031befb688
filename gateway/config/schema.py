"""The config's JSON Schema (`roomwarden schema`, docs/config-reference.md), with each key's
docstring as its description.

The config models (`gateway.config.profile.Strict` and its subclasses, in every package) write
a key's description as the docstring under it. Pydantic can read those when it builds each
class (`use_attribute_docstrings`), but that parses the source of every model at import — about
a tenth of a CPU-second in every process that loads a config, for text only the schema shows.
So the docstrings are read here, when a schema is generated: the same extraction pydantic uses,
applied to the same fields (a key's description comes from the class that declares it; a
description given in `Field(...)` wins), so the schema is what it was.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic._internal._docs_extraction import extract_docstrings_from_cls
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from gateway.config.profile import Strict


@functools.cache
def _docstrings(cls: type[Any]) -> dict[str, str]:
    """The docstrings under the fields `cls` itself declares, by field name."""
    return extract_docstrings_from_cls(cls, use_inspect=True)


def field_docstring(model: type[BaseModel], name: str) -> str | None:
    """The docstring of field `name` of `model`: from the class of its MRO that declares it,
    if that class is a config model (`Strict`)."""
    for klass in model.__mro__:
        if name in inspect.get_annotations(klass):
            if isinstance(klass, type) and issubclass(klass, Strict):
                return _docstrings(klass).get(name)
            return None
    return None


class DescribedJsonSchema(GenerateJsonSchema):
    """Pydantic's JSON Schema, with the config models' field docstrings as descriptions."""

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        json_schema = super().model_schema(schema)
        cls = schema["cls"]
        properties = json_schema.get("properties")
        if not (isinstance(properties, dict) and issubclass(cls, Strict)):
            return json_schema
        for name, info in cls.model_fields.items():
            prop = properties.get(info.alias or name)
            if not isinstance(prop, dict) or "description" in prop or info.description:
                continue
            doc = field_docstring(cls, name)
            if doc is not None:
                prop["description"] = doc
        return json_schema


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model.model_json_schema()` with the field docstrings as descriptions."""
    return model.model_json_schema(schema_generator=DescribedJsonSchema)


def adapter_schema(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    """`adapter.json_schema()` (e.g. the profile union) with the field docstrings."""
    return adapter.json_schema(schema_generator=DescribedJsonSchema)
