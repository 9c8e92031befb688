"""The bounds of a YAML file (`YamlLimits`), apart from the reader that enforces them
(gateway.config.yamlsafe), so that what names a limit loads no YAML parser: a running gateway
parses no YAML (its configs are checked by a child process, gateway.isolated_check), and PyYAML
is 0.8 MiB of it (issue 15)."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.records import dataclass, field

MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 200_000
MAX_ALIASES = 10_000
MAX_ITEMS = 50_000


@dataclass(frozen=True)
class YamlLimits:
    max_bytes: int = MAX_BYTES
    max_depth: int = MAX_DEPTH
    max_nodes: int = MAX_NODES
    max_aliases: int = MAX_ALIASES
    max_items: int = MAX_ITEMS
    top_level_items: Mapping[str, int] = field(default_factory=dict)
    """Lower item caps for the values of some top-level keys (e.g. {"points": 2000})."""
    top_level_what: str = "entries"
    """What those items are called in the error (e.g. "points")."""


DEFAULT_LIMITS = YamlLimits()
