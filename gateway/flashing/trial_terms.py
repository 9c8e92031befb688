"""What a candidate config is held to besides being valid: the changes a flash must not make
on its own (refused before it runs), and what its trial needs besides its devices and rules
(gateway.flashing.health_check's `needs`). Driven by gateway.flashing.apply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from gateway.config.loader import LoadedConfig
from gateway.flashing.health_check import Need, panel_listening, uplink_connected

if TYPE_CHECKING:
    from gateway.daemon import Gateway

Source = Literal["flash", "local", "reload"]


def refusal_of(running: LoadedConfig, loaded: LoadedConfig, *, force: bool,
               source: Source) -> tuple[str, str] | None:
    """(code, reason) if `loaded` makes a change a remote flash must not make on its own."""
    current, new = running.config, loaded.config
    if new.gateway.id != current.gateway.id:
        return ("wrong_gateway", f"the config is for gateway {new.gateway.id!r}, this is "
                                 f"{current.gateway.id!r}")
    had_keys = bool(current.flashing and current.flashing.trusted_keys)
    has_keys = bool(new.flashing and new.flashing.trusted_keys)
    if had_keys and not has_keys and not force:
        return ("lockout", "the config trusts no signing key: remote flashing would be "
                           "locked out (sign it with force to do this on purpose)")
    if source == "flash" and new.uplink is None and not force:
        return ("lockout", "the config has no uplink: remote flashing would be locked out "
                           "(sign it with force to do this on purpose)")
    return None


def trial_needs(gw: Gateway, source: Source, previous: LoadedConfig,
                loaded: LoadedConfig) -> list[Need]:
    """What the candidate `loaded` (running now in `gw`) must achieve within the health
    timeout besides its devices and rules:

    - arrived over MQTT (`flash`): its uplink connected to the broker — a config that cuts
      the gateway off would lock out every later flash, the fix included (a local apply or
      SIGHUP need not: the technician is at the gateway);
    - its panel settings changed: the panel listening (a port in use, an address the machine
      does not have: no panel, /healthz or /metrics)."""
    new = loaded.config
    needs: list[Need] = []
    if source == "flash" and new.uplink is not None:
        needs.append(uplink_connected(lambda: gw.uplink, new.uplink))
    if new.panel != previous.config.panel and gw.panel is not None:
        needs.append(panel_listening(gw.panel_ready, new.panel.bind,
                                     gw.panel_port_override or new.panel.port))
    return needs
