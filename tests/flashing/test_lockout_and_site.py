"""Flashes that would cut the flasher off (audit, real Mosquitto, real gateway, real flash
client):

- lock-out by keys: on a fresh gateway, a config whose `flashing.trusted_keys` held only some
  other key, signed with `ops.key` and not forced, was applied; the next flash signed with
  ops.key got `REJECTED [untrusted_key]`. Now it is refused as `lockout`, naming the key;
- site move: a config for another `gateway.site` (or uplink topic root) was applied; every
  topic moved, the "applied" went where the sender does not listen, and the client said "no
  final answer … (is it online and subscribed?)". Now the gateway refuses it (`wrong_site`)
  unless forced, and the client, which reads the gateway's status on every site of its id,
  says before sending that the config moves it — and with --force sends it where the
  gateway listens and follows the answer to the new site."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from gateway.config.loader import LoadedConfig, load_gateway_config
from gateway.config.section import replaced, validator
from gateway.flashing.keys import key_id, load_private_key
from gateway.flashing.trial_terms import refusal_of
from gateway.uplink.settings import UplinkSettings
from tests.apply.conftest import SITE, device
from tests.fixtures.services import Broker
from tests.flashing.live import live_gateway

OTHER_SITE = "gz-other-exchange"


def offset(value: float) -> Any:
    def change(data: dict[str, Any]) -> None:
        device(data, "th-tx-a03").setdefault("points", {})["temperature"] = {"offset": value}
    return change


def test_refusal_of_names_the_signing_key_and_the_move() -> None:
    shipped = load_gateway_config(SITE)
    uplink = validator(UplinkSettings).validate_python({"broker": "127.0.0.1"})
    cfg = replaced(shipped.config, uplink=uplink)
    running = dataclasses.replace(shipped, config=cfg)
    assert cfg.flashing is not None and cfg.flashing.trusted_keys

    def changed(**update: Any) -> LoadedConfig:
        return dataclasses.replace(running, config=replaced(cfg, **update))

    signer = cfg.flashing.trusted()[0].key_id
    assert refusal_of(running, running, force=False, source="flash", key_id=signer) is None
    # the signing key dropped (another one kept): lockout, naming the key
    stranger = "ed25519:" + "A" * 43 + "= someone-else"
    other = changed(flashing=dataclasses.replace(cfg.flashing, trusted_keys=(stranger,)))
    code, reason = refusal_of(running, other, force=False, source="flash", key_id=signer) \
        or ("", "")
    assert code == "lockout" and f"does not trust key {signer}, which signed this" in reason
    assert refusal_of(running, other, force=True, source="flash", key_id=signer) is None
    assert refusal_of(running, other, force=False, source="local", key_id=signer) is None
    # another site: wrong_site, naming both
    moved = changed(gateway=dataclasses.replace(cfg.gateway, site=OTHER_SITE))
    code, reason = refusal_of(running, moved, force=False, source="flash", key_id=signer) \
        or ("", "")
    assert code == "wrong_site" and f"'{cfg.gateway.site}' to '{OTHER_SITE}'" in reason
    assert refusal_of(running, moved, force=True, source="flash", key_id=signer) is None
    assert refusal_of(running, moved, force=False, source="local") is None  # at the gateway
    # another topic root: wrong_site too
    rooted = changed(uplink=dataclasses.replace(uplink, root="acme/roomwarden"))
    code, reason = refusal_of(running, rooted, force=False, source="flash", key_id=signer) \
        or ("", "")
    assert code == "wrong_site" and "from root 'roomwarden' to 'acme/roomwarden'" in reason


async def test_a_config_that_no_longer_trusts_the_signing_key_is_a_lockout(
        tmp_path: Path, broker: Broker) -> None:
    async with live_gateway(tmp_path, broker) as live:
        gw = live.run.service.gateway
        ops_id = key_id(load_private_key(live.ops).public_key())
        others = live.line_of(live.other, "other")

        def trusts_only_other(data: dict[str, Any]) -> None:
            offset(0.3)(data)
            data["flashing"]["trusted_keys"] = [others]

        locking = live.write("locking.yaml", trusts_only_other)
        code, out, err = await live.flash(locking)
        assert code == 1, (out, err)
        assert f"REJECTED [lockout]: the config does not trust key {ops_id}, which signed " \
               "this flash" in out
        assert gw.config_version == 0
        # the key still flashes
        code, out, err = await live.flash(live.write("fine.yaml", offset(0.4)))
        assert code == 0, (out, err)
        assert gw.config_version == 2  # (version 1 was used up by the refused flash)
        # forced, it is done on purpose: then the ops key is no longer trusted
        code, out, err = await live.flash(locking, ("force", True))
        assert code == 0, (out, err)
        code, out, err = await live.flash(live.write("after.yaml", offset(0.5)))
        assert code == 1 and "REJECTED [untrusted_key]" in out


async def test_a_config_for_another_site_is_refused_before_and_at_the_gateway(
        tmp_path: Path, broker: Broker) -> None:
    async with live_gateway(tmp_path, broker) as live:
        gw = live.run.service.gateway
        home = live.site
        code, out, err = await live.flash(live.write("first.yaml", offset(0.3)))
        assert code == 0, (out, err)  # the gateway's status is now retained at its site

        def elsewhere(data: dict[str, Any]) -> None:
            offset(0.4)(data)
            data["gateway"]["site"] = OTHER_SITE

        moving = live.write("moving.yaml", elsewhere)
        # the client sees the gateway at its site and says so; nothing is sent
        code, out, err = await live.flash(moving, timeout=10)
        assert code == 2, (out, err)
        assert (f"this config moves the gateway from site {home} (where it reports its "
                f"config/status) to site {OTHER_SITE}") in err
        assert "Nothing was sent" in err and "(wrong_site)" in err
        # the gateway refuses the envelope itself, sent where it listens
        got = await live.send(moving.read_text(), 2)
        assert got["state"] == "rejected" and got["code"] == "wrong_site", got
        assert f"from site '{home}' to '{OTHER_SITE}'" in got["error"]

        def acme(data: dict[str, Any]) -> None:
            offset(0.5)(data)
            data["uplink"]["root"] = "acme/roomwarden"

        rooted = live.write("rooted.yaml", acme)
        got = await live.send(rooted.read_text(), 3)
        assert got["code"] == "wrong_site", got
        assert "from root 'roomwarden' to 'acme/roomwarden'" in got["error"]
        code, out, err = await live.flash(rooted, ("root", "roomwarden"), timeout=10)
        assert code == 2 and "from topic root roomwarden (--root) to acme/roomwarden" in err
        assert (gw.config_version, gw.loaded.config.gateway.site) == (1, home)
        # forced: sent where the gateway listens, the answer followed to the new site
        code, out, err = await live.flash(moving, ("force", True))
        assert code == 0, (out, err)
        assert "sent version 4 (forced) signed by ops (key " in out
        assert f"to roomwarden/{home}/{live.gateway_id}/config/set" in out
        assert "applied: version 4 is running" in out
        assert gw.loaded.config.gateway.site == OTHER_SITE
