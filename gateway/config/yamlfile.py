"""One YAML file into a validated model, with errors a technician can act on.

The generic half of config loading, shared by the gateway's site configs and profiles, rule
packs and the central ingest's settings: `ConfigError` (file, line, YAML path, reason:
gateway.config.errors), reading a YAML file within the limits of gateway.config.yamlsafe
(and of gateway.config.bounded) while recording each path's line, and pydantic's errors
turned into ConfigErrors. It imports no schema, so the ingest can use it without loading the
gateway's site config (tests/test_layering.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gateway.config.bounded import FileTooLarge, NotARegularFile, read_bounded
from gateway.config.errors import ConfigError, ConfigErrors, PathPart, YamlPath, format_path
from gateway.config.section import model_message
from gateway.config.yamllimits import DEFAULT_LIMITS, YamlLimits
from gateway.records import dataclass, field

__all__ = ["ConfigError", "ConfigErrors", "FileTooLarge", "LineMap", "NotARegularFile",
           "PathPart", "YamlPath", "format_path", "parse_yaml", "pydantic_errors",
           "read_bounded", "read_text", "read_yaml", "syntax_reason", "validate"]

M = TypeVar("M", bound=BaseModel)


# --- YAML with line numbers --------------------------------------------------------------


@dataclass
class LineMap:
    """Line (1-based) of every node of a YAML document, keyed by its path."""

    lines: dict[YamlPath, int] = field(default_factory=dict)

    def line_of(self, path: YamlPath) -> int | None:
        """The line of `path`, or of its nearest ancestor that exists in the document."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


def read_yaml(path: Path, name: str | None = None,
              limits: YamlLimits = DEFAULT_LIMITS) -> tuple[Any, LineMap]:
    """Parse one YAML file; raise ConfigErrors for unreadable, oversized or malformed files
    and for files past the limits of gateway.config.yamlsafe."""
    name = name or str(path)
    return parse_yaml(read_text(path, name, limits), name, limits)


def read_text(path: Path, name: str, limits: YamlLimits = DEFAULT_LIMITS) -> str:
    """The text of a YAML file (UTF-8, at most `limits.max_bytes`), or ConfigErrors."""
    try:
        data = read_bounded(path, limits.max_bytes)
    except OSError as exc:
        raise ConfigErrors([ConfigError(name, (), f"cannot read: {exc.strerror or exc}")]) from exc
    except (FileTooLarge, NotARegularFile) as exc:
        raise ConfigErrors([ConfigError(name, (), str(exc))]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigErrors([ConfigError(name, (), f"not UTF-8 text: {exc.reason}")]) from exc


def parse_yaml(text: str, name: str, limits: YamlLimits = DEFAULT_LIMITS,
               ) -> tuple[Any, LineMap]:
    """The data of one YAML document and the line of each of its paths; ConfigErrors with
    `file:line` for malformed YAML, duplicate keys or a document past `limits`. (PyYAML is
    imported here, at the first file read: gateway.config.yamllimits.)"""
    import yaml

    from gateway.config.yamlsafe import YamlLimitError, compose_limited, walk_lines

    lines = LineMap()
    try:
        node, loader = compose_limited(text, limits)
        if node is None:
            raise ConfigErrors([ConfigError(name, (), "file is empty")])
        problems: list[tuple[YamlPath, str]] = []
        walk_lines(node, (), lines.lines, problems, set())
        if problems:
            raise ConfigErrors(
                ConfigError(name, p, reason, lines.line_of(p)) for p, reason in problems
            )
        data = loader.construct_document(node)
    except (ValueError, OverflowError) as exc:  # an integer of more digits than Python
        # converts (4,300); a sexagesimal float (1:1:…:1.0) past a float's range
        raise ConfigErrors([ConfigError(name, (), f"refused: {exc}")]) from None
    except YamlLimitError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise ConfigErrors([ConfigError(name, (), f"refused: {exc.reason}", line)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        path: YamlPath = getattr(exc, "yaml_path", ())
        raise ConfigErrors(
            [ConfigError(name, path, f"not valid YAML{syntax_reason(exc, text)}", line)]
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigErrors([ConfigError(name, (), f"not valid YAML: {exc}")]) from exc
    return data, lines


def syntax_reason(exc: Any, text: str) -> str:
    """`: …` after "not valid YAML": the column of a syntax error and the parser's reason, a
    tab said plainly (PyYAML and libyaml call it "a character that cannot start any token"),
    and where the parser had started what it could not finish when that is an earlier line
    (`could not find expected ':'` is found on the line after the one missing it)."""
    from gateway.config.yamlsafe import text_line

    mark = exc.problem_mark
    problem = str(exc.problem or exc)
    if mark is None:
        return f": {problem}"
    row = text_line(text, mark.line)
    at = row[mark.column:mark.column + 1]
    where = f" at column {mark.column + 1}"
    if at == "\t":
        if not row[:mark.column].strip(" \t"):
            return (f"{where}: a tab in the indentation: YAML indents with spaces, never tabs; "
                    f"replace the tab with spaces")
        return f"{where}: a tab: YAML separates with spaces here; replace the tab with a space"
    context, context_mark = exc.context, exc.context_mark
    if context and context_mark is not None and context_mark.line < mark.line:
        problem += (f" ({context} that starts at line {context_mark.line + 1}, column "
                    f"{context_mark.column + 1})")
    return f"{where}: {problem}"


def pydantic_errors(exc: ValidationError, name: str, lines: LineMap, prefix: YamlPath = (),
                    tags: frozenset[str] = frozenset()) -> list[ConfigError]:
    """pydantic's errors as ConfigErrors with file, line, YAML path and a readable reason.

    A config section that is a dataclass (gateway.config.section) is told what a model would
    be: its unknown and missing keys and a value that is no mapping have other error types.
    pydantic puts the names of union members in error paths (`buses[0].modbus_rtu.port`,
    `expect[2].ExpectAlarm.alarm`); they are dropped (`tags` adds model-specific ones). One
    reason is kept per place (the first alternative of a union), and a list that is "too
    short" only because one of its items failed is not reported besides that item."""
    known = _TAGS | tags
    seen: set[YamlPath] = set()
    errors: list[ConfigError] = []
    for err in exc.errors(include_url=False):
        path = prefix + _strip_tags(tuple(err["loc"]), lines, prefix, known)
        reason = str(err["msg"])
        if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            reason = "unknown key (not part of the schema; check its spelling)"
        elif err["type"] in ("missing", "missing_keyword_argument"):
            reason = "required key is missing"
        elif err["type"] == "dataclass_type":  # a section that is a dataclass: a model's words
            reason = model_message(err)
        elif reason.startswith("Value error, "):
            reason = reason.removeprefix("Value error, ")
        elif err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            ctx = err.get("ctx", {})
            key = str(ctx.get("discriminator", "")).strip("'") or "type"
            path = (*path, key)
            reason = (f"{ctx.get('tag')!r} is not one of {ctx.get('expected_tags')}"
                      if err["type"] == "union_tag_invalid" else "required key is missing")
        if path in seen:
            continue
        seen.add(path)
        errors.append(ConfigError(name, path, reason, lines.line_of(path)))
    return [e for e in errors if not (e.reason.startswith(("Tuple should have at least",
                                                           "List should have at least"))
                                      and any(o.path[:len(e.path)] == e.path and o is not e
                                              for o in errors))]


def _strip_tags(loc: tuple[Any, ...], lines: LineMap, prefix: YamlPath,
                tags: frozenset[str]) -> YamlPath:
    out: list[PathPart] = []
    for part in loc:
        if isinstance(part, str) and (*prefix, *out, part) not in lines.lines and (
                part in tags or part[:1].isupper() or "[" in part
                or part.startswith(("function-", "literal["))):
            continue  # a union member's name, not a key of the file
        out.append("in" if part == "in_" else part)
    return tuple(out)


_TAGS = frozenset({"modbus_rtu", "modbus_tcp", "serial_text", "modbus", "str", "float", "bool",
                   "int"})


def validate(model: type[M], data: Any, name: str, lines: LineMap) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigErrors(pydantic_errors(exc, name, lines)) from exc
