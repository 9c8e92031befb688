"""A checked gateway config as the gateway runs it: `LoadedConfig`, the config with the device
profiles (and rule packs) it was checked with.

Apart from loading (gateway.config.loader re-exports it): a running gateway gets its config
from the child that checked it (gateway.isolated_check) and never loads one itself, so it
holds neither the YAML reader nor the cross-checks (issue 15).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gateway.records import dataclass, field

if TYPE_CHECKING:
    from gateway.config.profile import ModbusProfile, SerialTextProfile
    from gateway.config.site import Device, GatewayConfig
    from gateway.rules.model import RulePack


@dataclass(frozen=True)
class LoadedConfig:
    """A validated gateway config with the profiles its devices use."""

    path: Path
    config: GatewayConfig
    profiles: dict[str, ModbusProfile | SerialTextProfile]
    packs: dict[str, RulePack] | None = None
    """The rule packs its `rules:` section was checked against (`load_checked_config`), which
    the safety core runs; None if loaded without them (`load_gateway_config`)."""
    profile_texts: dict[str, str] = field(default_factory=dict)
    """Profile id → the text it was loaded from: kept with a last-known-good config, so a
    profile file broken later cannot stop the gateway booting it (gateway.supervisor)."""

    def profile_of(self, device: Device) -> ModbusProfile | SerialTextProfile:
        return self.profiles[device.profile]
