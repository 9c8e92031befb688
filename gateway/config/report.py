"""Load a gateway config for a command-line tool: the config, or its errors printed to stderr
(`FAIL <file>: N error(s)` and one `file:line: path: reason` line each) and None."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config.loader import LoadedConfig

CONFIG_HELP = "the gateway config file (YAML)"
"""How every command describes its config file argument."""


def load_or_report(path: Path) -> LoadedConfig | None:
    # the YAML reader and the models: only when a config is read (not for --help)
    from gateway.config.loader import ConfigErrors, load_gateway_config

    try:
        return load_gateway_config(path)
    except ConfigErrors as exc:
        print(f"FAIL {path}: {len(exc.errors)} error(s)", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return None
