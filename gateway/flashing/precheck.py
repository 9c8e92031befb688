"""`roomwarden check` of one gateway config, as `check` prints it; `flash` and `config apply`
check a file with it before anything is sent or applied, so their errors read as `check`'s
(list items named by id, the nearest names suggested) and `check`'s warnings come with them.

(The check itself is gateway.config.check_all's; this is its report. It lives apart from
gateway.cli so that the flash client and the `config apply` command can use it without
importing the command line they are part of.)"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.records import dataclass

if TYPE_CHECKING:
    from gateway.config.loader import LoadedConfig
    from gateway.rules.model import RulePack


def _counted(n: int, what: str) -> str:
    """`1 bus`, `3 buses`, `1 device`, `2 devices`."""
    if n == 1:
        return f"{n} {what}"
    return f"{n} {what}es" if what.endswith("s") else f"{n} {what}s"


def config_summary(loaded: LoadedConfig, packs: Mapping[str, RulePack]) -> str:
    """`check`'s line for a valid gateway config and the rule packs it loads."""
    from gateway.field.points import bind_points

    cfg = loaded.config
    points = sum(len(bind_points(d, loaded.profile_of(d))) for d in cfg.devices)
    rules = sum(len(p.rules) for p in packs.values())
    return (f"gateway {cfg.gateway.id} at {cfg.gateway.site}, {_counted(len(cfg.buses), 'bus')}, "
            f"{_counted(len(cfg.devices), 'device')}, {_counted(points, 'point')}, "
            f"{_counted(len(cfg.outputs), 'output')}, {_counted(rules, 'rule')} in the rule packs")


@dataclass(frozen=True)
class ConfigCheck:
    """`roomwarden check` of one gateway config: what it prints, and the config as loaded
    when it has no error."""

    lines: list[str]
    """`ok   PATH: summary` and `  warning: …` lines, or `FAIL PATH: N error(s)` and the
    errors, each `  FILE:LINE: PATH: reason`."""
    loaded: LoadedConfig | None
    errors: int

    @property
    def ok(self) -> bool:
        return self.errors == 0


def failure_lines(path: Path, errors: Sequence[object]) -> list[str]:
    """`check`'s lines for a file with errors."""
    return [f"FAIL {path}: {len(errors)} error(s)", *(f"  {error}" for error in errors)]


def check_gateway_config(path: Path) -> ConfigCheck:
    """A gateway config checked across every layer (gateway.config.check_all), as `check`
    reports it."""
    from gateway.config.check_all import check_config
    from gateway.config.yamlfile import ConfigErrors

    report = check_config(path)
    if report.errors:
        return ConfigCheck(failure_lines(path, report.errors), None, len(report.errors))
    loaded, packs = report.loaded, report.packs
    if loaded is None or packs is None:  # not expected without errors
        from gateway.rules.config import load_checked_config

        try:
            loaded = load_checked_config(path)
        except ConfigErrors as exc:
            return ConfigCheck(failure_lines(path, exc.errors), None, len(exc.errors))
        packs = loaded.packs or {}
    return ConfigCheck([f"ok   {path}: {config_summary(loaded, packs)}",
                        *(f"  warning: {warning}" for warning in report.warnings)], loaded, 0)
