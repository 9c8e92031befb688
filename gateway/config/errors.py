"""A problem in a config file, as a technician is told it: `ConfigError` (file, line, YAML
path, reason) and `ConfigErrors` (one or more).

Apart from the YAML reader and the schemas (gateway.config.yamlfile re-exports them): a running
gateway gets a config check's errors from the child that checked it (gateway.isolated_check)
and never reads YAML itself (issue 15).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gateway.records import dataclass

PathPart = str | int
YamlPath = tuple[PathPart, ...]


@dataclass(frozen=True)
class ConfigError:
    file: str
    path: YamlPath
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return _shown(f"{where}: {format_path(self.path) or '(top)'}: {self.reason}")


class ConfigErrors(Exception):
    """One or more problems in config files; `errors` lists each with file, path and reason."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def format_path(path: YamlPath) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.startswith("["):  # issue 14: `roomwarden check` names items by id
            text += part
        else:
            text += f".{part}" if text else part
    return text


_UNSHOWN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""Control characters (but a newline and a tab) and bidirectional overrides: a key or value of
a file that holds them would have been printed to the technician's terminal as they are — an
escape sequence that rewrites the screen, or text shown backwards (the config audit)."""


def _shown(text: str) -> str:
    """`text` with the characters a terminal would act on written as escapes (`\\x1b`)."""
    return _UNSHOWN.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)

