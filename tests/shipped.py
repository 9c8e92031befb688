"""The shipped rule packs and site configs for tests, loaded on first use and once per process.

Every pytest-xdist worker collects (imports) every test module, so a module that loads packs
or sites at import makes each worker pay for it, whether or not it runs that module's tests;
these helpers load when a test first asks, and share one load between the modules of a worker.
Both are immutable (frozen models); `packs()` returns a new dict each time, so a test that
edits its mapping changes nobody else's.
"""

from __future__ import annotations

import functools
from pathlib import Path

from gateway.config.loader import LoadedConfig, load_gateway_config
from gateway.rules.config import default_rules_dir, load_rule_packs
from gateway.rules.model import RulePack

REPO = Path(__file__).resolve().parents[1]
FIRMWARE_CONFIGS = REPO / "firmware_configs"


@functools.cache
def _packs() -> dict[str, RulePack]:
    return load_rule_packs(default_rules_dir())


def packs() -> dict[str, RulePack]:
    """The shipped rule packs (gateway/rules/packs), by name."""
    return dict(_packs())


@functools.cache
def site(name: str) -> LoadedConfig:
    """A shipped site config (`firmware_configs/<name>.yaml`), loaded with its profiles."""
    return load_gateway_config(FIRMWARE_CONFIGS / f"{name}.yaml")


def site_names() -> list[str]:
    """The shipped sites, sorted (cheap: for parametrize at collection)."""
    return sorted(path.stem for path in FIRMWARE_CONFIGS.glob("*.yaml"))
