"""docs/config-reference.md: every key of a gateway config with its type, default and
description, generated from the schema (`python -m gateway.config.reference > docs/…`); the
descriptions are the config models' own, the same text editors show from the JSON schema."""

from __future__ import annotations

import json
import sys
from typing import Any

from gateway.config.duration import DURATION_PATTERN, format_duration
from gateway.config.schema import model_schema
from gateway.config.site import GatewayConfig

HEAD = """# Gateway config reference

Generated from the config schema by `python -m gateway.config.reference` (a test checks that
this file is current). The same descriptions appear in an editor that reads the schema:
put this line at the top of a config file (after `roomwarden schema > roomwarden.schema.json`):

```yaml
# yaml-language-server: $schema=roomwarden.schema.json
```

Durations are written with a unit: `500ms`, `5s`, `2m`, `1h` (a bare number is seconds).
"""


def _is_duration(prop: dict[str, Any]) -> bool:
    return any(alt.get("pattern") == DURATION_PATTERN for alt in prop.get("anyOf", []))


def _type(prop: dict[str, Any]) -> str:
    if _is_duration(prop):
        return "duration"
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{name.lower()})"
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "anyOf" in prop:
        parts = [_type(p) for p in prop["anyOf"] if p.get("type") != "null"]
        optional = any(p.get("type") == "null" for p in prop["anyOf"])
        return " or ".join(parts) + (" (optional)" if optional else "")
    if "oneOf" in prop:
        return " or ".join(_type(p) for p in prop["oneOf"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if kind == "object" and "additionalProperties" in prop:
        return f"map of {_type(prop['additionalProperties'])}"
    return str(kind)


def _default(prop: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" not in prop:
        return "—"
    value = prop["default"]
    if isinstance(value, dict) and value:
        return "see its section"
    if _is_duration(prop) and isinstance(value, int | float):
        return f"`{format_duration(float(value))}`"
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > 40:
        text = text[:37] + "…"
    return f"`{text}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _table(name: str, model: dict[str, Any]) -> list[str]:
    lines = [f"## {name}", ""]
    if model.get("description"):
        lines += [" ".join(model["description"].split()), ""]
    lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    required = set(model.get("required", []))
    for key, prop in model.get("properties", {}).items():
        lines.append(f"| `{key}` | {_cell(_type(prop))} | {_default(prop, key in required)} "
                     f"| {_cell(prop.get('description', ''))} |")
    return [*lines, ""]


def render() -> str:
    schema = model_schema(GatewayConfig)
    parts = [HEAD]
    parts += _table("GatewayConfig", schema)
    for name, model in sorted(schema.get("$defs", {}).items()):
        if "properties" in model:
            parts += _table(name, model)
    return "\n".join(parts).rstrip() + "\n"


def undescribed() -> list[str]:
    """`Model.key` of every config key that has no description (should be none)."""
    schema = model_schema(GatewayConfig)
    models = [("GatewayConfig", schema), *schema.get("$defs", {}).items()]
    return [f"{name}.{key}" for name, model in models
            for key, prop in model.get("properties", {}).items() if not prop.get("description")]


if __name__ == "__main__":
    sys.stdout.write(render())
