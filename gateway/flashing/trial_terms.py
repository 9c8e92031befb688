"""What a candidate config is held to besides being valid: the changes a flash must not make
on its own (refused before it runs), and what its trial needs besides its devices and rules
(gateway.flashing.health_check's `needs`). Driven by gateway.flashing.apply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from gateway.config.loaded import LoadedConfig
from gateway.flashing.health_check import Need, panel_listening, uplink_connected

if TYPE_CHECKING:
    from gateway.daemon import Gateway

Source = Literal["flash", "local", "reload"]


def refusal_of(running: LoadedConfig, loaded: LoadedConfig, *, force: bool,
               source: Source, key_id: str | None = None) -> tuple[str, str] | None:
    """(code, reason) if `loaded` makes a change a remote flash must not make on its own
    (`key_id`: the key that signed the envelope, if it came signed):

    - `wrong_gateway`: it is another gateway's config (even forced);
    - `lockout`: it trusts no signing key any more; or, flashed: it no longer trusts the key
      that signed it (the next flash signed with it would be `untrusted_key`), or it has no
      uplink;
    - `wrong_site`, flashed: it moves the gateway to another site or topic root — every topic
      moves, this flash's answer included, to where its sender does not listen.

    All but `wrong_gateway` are allowed when the envelope was signed with `force` (on
    purpose); a local apply or SIGHUP (the technician at the gateway) may move the site."""
    current, new = running.config, loaded.config
    if new.gateway.id != current.gateway.id:
        return ("wrong_gateway", f"the config is for gateway {new.gateway.id!r}, this is "
                                 f"{current.gateway.id!r}")
    if force:
        return None
    had_keys = bool(current.flashing and current.flashing.trusted_keys)
    trusted = new.flashing.trusted() if new.flashing else ()
    if had_keys and not trusted:
        return ("lockout", "the config trusts no signing key: remote flashing would be "
                           "locked out (sign it with force to do this on purpose)")
    if source != "flash":
        return None
    if key_id is not None and all(k.key_id != key_id for k in trusted):
        return ("lockout", f"the config does not trust key {key_id}, which signed this "
                           "flash: the next flash signed with it would be refused "
                           "(untrusted_key) — add the key to flashing.trusted_keys, or sign "
                           "it with force to do this on purpose")
    if new.uplink is None:
        return ("lockout", "the config has no uplink: remote flashing would be locked out "
                           "(sign it with force to do this on purpose)")
    if new.gateway.site != current.gateway.site:
        return ("wrong_site", f"the config moves the gateway from site "
                              f"{current.gateway.site!r} to {new.gateway.site!r}: all its "
                              "topics would move, this flash's answer included (sign it with "
                              "force to do this on purpose)")
    old_root = current.uplink.root if current.uplink is not None else new.uplink.root
    if new.uplink.root != old_root:
        return ("wrong_site", f"the config moves the gateway's topics from root "
                              f"{old_root!r} to {new.uplink.root!r}: this flash's answer "
                              "would go where its sender does not listen (sign it with force "
                              "to do this on purpose)")
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
