"""Version exhaustion (audit, real Mosquitto, real gateway, real flash client): a forged retained
`config/status` with `active_version` 9223372036854775806 made `roomwarden flash` sign version
2^63 - 1, which the gateway applied; every later flash then failed (an envelope that could not
be built at 2^63, or `downgrade` forever), and `roomwarden config apply` crashed ("internal
error: 1 validation error for ConfigStatus"), leaving state.json with a staged config and
`applying: true`.

Now the gateway refuses a version more than MAX_VERSION_STEP above the highest it accepted
(`version_jump`, unless forced), reports that highest in every status (`highest_accepted`),
which the client numbers from; the client refuses to sign an absurd version; and a local apply
with no version left is refused cleanly, leaving nothing staged."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.contract.wire import ConfigSet, ConfigStatus
from gateway.flashing.envelope import EnvelopeRejected, sign_config
from gateway.flashing.keys import load_private_key
from gateway.flashing.link import FlashError
from gateway.flashing.store import ConfigStore
from tests.apply.conftest import ask, device, until
from tests.apply.test_flash_mqtt import statuses
from tests.fixtures.services import Broker
from tests.flashing.conftest import GATEWAY
from tests.flashing.live import live_gateway

TOP = 2**63 - 1


def envelope(key: Ed25519PrivateKey, text: str, version: int, *, force: bool = False
             ) -> ConfigSet:
    return sign_config(text, gateway=GATEWAY, version=version, author="li", private_key=key,
                       force=force)


def offset(value: float) -> Any:
    def change(data: dict[str, Any]) -> None:
        device(data, "th-tx-a03").setdefault("points", {})["temperature"] = {"offset": value}
    return change


def test_a_version_far_above_the_highest_accepted_is_a_version_jump(
        tmp_path: Path, signer: Ed25519PrivateKey) -> None:
    from gateway.flashing.seen import MAX_VERSION, MAX_VERSION_STEP

    store = ConfigStore(tmp_path / "config")
    first = envelope(signer, "a: 3\n", 3)
    store.check_fresh(first)
    store.remember(first)
    store.stage(first)
    store.commit()
    assert MAX_VERSION == TOP and MAX_VERSION_STEP == 10_000
    store.check_fresh(envelope(signer, "a: 10003\n", 3 + 10_000))  # the bound itself: fine
    for version in (3 + 10_001, TOP):
        with pytest.raises(EnvelopeRejected) as caught:
            store.check_fresh(envelope(signer, "a: far\n", version))
        assert caught.value.code == "version_jump"
        assert (f"version {version} is more than 10000 above the highest accepted (3)"
                in caught.value.message)
        assert "send version 4" in caught.value.message
    store.check_fresh(envelope(signer, "a: far\n", TOP, force=True))  # on purpose: signed


def test_the_client_numbers_from_the_highest_accepted_and_refuses_absurd_versions() -> None:
    from gateway.flashing.target import pick_version

    def status(**fields: Any) -> ConfigStatus:
        return ConfigStatus.model_validate({"site": "s-1", "gateway": GATEWAY, "ts": 1,
                                            "state": "rejected", **fields})

    # a rejected version_jump's own status names the refused version: not a basis
    refused = status(version=TOP, active_version=7, highest_accepted=9)
    assert pick_version(None, refused, force=False)[0] == 10
    with pytest.raises(FlashError, match="forged or damaged"):  # the audit's forged status
        pick_version(None, status(state="applied", active_version=TOP - 1), force=False)
    with pytest.raises(FlashError, match="forged or damaged"):  # forced, too
        pick_version(None, status(active_version=1, highest_accepted=TOP), force=True)
    with pytest.raises(FlashError, match=r"version_jump.*--version 10"):
        pick_version(10_010, refused, force=False)
    assert pick_version(10_009, refused, force=False)[0] == 10_009
    assert pick_version(10_010, refused, force=True)[0] == 10_010
    with pytest.raises(FlashError, match="beyond the largest config version"):
        pick_version(TOP + 1, None, force=True)


async def test_a_forged_status_cannot_use_up_the_versions(tmp_path: Path,
                                                           broker: Broker) -> None:
    async with live_gateway(tmp_path, broker) as live:
        gw = live.run.service.gateway
        good = live.write("good.yaml", offset(0.3))
        # 1. the audit's forged retained status: the client refuses to number from it
        live.forge_status(active_version=TOP - 1)
        code, out, err = await live.flash(good, timeout=10)
        assert code == 2, (out, err)
        assert "forged or damaged" in err and "Nothing was sent" in err
        assert gw.config_version == 0
        assert [s for s in statuses(live.sub, live.status_topic) if s["ts"] != 1] == []
        # 2. the envelope the old client signed: the gateway refuses it, naming both numbers
        got = await live.send(good.read_text(), TOP)
        assert got["state"] == "rejected" and got["code"] == "version_jump", got
        assert (f"version {TOP} is more than 10000 above the highest accepted (0)"
                in got["error"])
        assert got["highest_accepted"] == 0 and got["active_version"] == 0
        # 3. the next flash numbers from what the gateway accepted (the retained status is
        # that refusal, whose own version is 2^63 - 1) and is applied
        code, out, err = await live.flash(good)
        assert code == 0, (out, err)
        assert "sending version 1" in out
        assert gw.config_version == 1
        # the flash client returns on its own copy of the status; this subscriber's may still
        # be on its way, and the forged retained one (an `applied` without the field) came first
        def applied() -> list[dict[str, Any]]:
            return [s for s in statuses(live.sub, live.status_topic)
                    if s["state"] == "applied" and s.get("version") == 1]

        await until(lambda: bool(applied()), 10, "the applied status")
        assert applied()[-1]["highest_accepted"] == 1
        # 4. a --version beyond the bound is not signed at all
        code, out, err = await live.flash(live.write("next.yaml", offset(0.4)),
                                          ("version", 10_002))
        assert code == 2 and "would refuse it (version_jump)" in err, (out, err)
        assert "send --version 2" in err
        assert gw.config_version == 1


async def test_a_local_apply_with_no_version_left_is_refused_cleanly(
        tmp_path: Path, broker: Broker) -> None:
    async with live_gateway(tmp_path, broker) as live:
        gw, store = live.run.service.gateway, live.run.service.store
        # the state the audit's applied 2^63 - 1 left behind (burnt: remembered)
        store.remember(sign_config("a: 1\n", gateway=live.gateway_id, version=TOP,
                                   author="x", private_key=load_private_key(live.ops)))
        text = live.write("local.yaml", offset(-0.2)).read_text()
        answers = await ask(live.run.control, {"op": "apply", "config": text,
                                               "author": "alice"})
        final = answers[-1]
        assert final["ok"] is False and "internal error" not in str(final), final
        assert final["result"]["state"] == "rejected"
        assert final["result"]["code"] == "version_exhausted"
        assert "no config version is left above the highest accepted" in (
            final["result"]["error"])
        assert final["result"]["highest_accepted"] == TOP
        state = live.store_state()
        assert state["staged"] is None and state["applying"] is False, state
        assert gw.config_version == 0
        # the way out the message names: a signed, forced, lower version
        env = sign_config(text, gateway=live.gateway_id, version=5, author="alice",
                          private_key=load_private_key(live.ops), force=True)
        answers = await ask(live.run.control, {"op": "apply",
                                               "envelope": env.model_dump(mode="json")})
        assert answers[-1]["ok"] is True, answers[-1]
        assert gw.config_version == 5
        assert gw.config_sha256 == hashlib.sha256(text.encode()).hexdigest()
        assert live.store_state()["applying"] is False
