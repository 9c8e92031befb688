"""The refusal codes of a flashed config mean what the README says: `replayed` is an envelope
seen before, `downgrade` a version at or below the highest accepted. A different config flashed
under the running config's version was refused as `replayed: version 1 is already the active
config`; it is a `downgrade` (refused even with --force: no other config takes the running
one's number), and the identical envelope sent again is `replayed`."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.contract.wire import ConfigSet
from gateway.flashing.envelope import DOWNGRADE, REPLAYED, EnvelopeRejected, sign_config
from gateway.flashing.store import ConfigStore
from tests.flashing.conftest import GATEWAY


def envelope(key: Ed25519PrivateKey, text: str, version: int, *, force: bool = False
             ) -> ConfigSet:
    return sign_config(text, gateway=GATEWAY, version=version, author="li", private_key=key,
                       force=force)


def applied(store: ConfigStore, env: ConfigSet) -> None:
    """What the gateway does with an envelope that passed verification."""
    store.check_fresh(env)
    store.remember(env)
    store.stage(env)
    store.commit()


def refusal(store: ConfigStore, env: ConfigSet) -> tuple[str, str]:
    with pytest.raises(EnvelopeRejected) as caught:
        store.check_fresh(env)
    return caught.value.code, caught.value.message


def test_another_config_under_the_active_version_is_a_downgrade(
        tmp_path: Path, signer: Ed25519PrivateKey) -> None:
    store = ConfigStore(tmp_path / "config")
    first = envelope(signer, "a: 1\n", 1)
    applied(store, first)
    code, message = refusal(store, envelope(signer, "a: other\n", 1))  # flash --version 1
    assert code == DOWNGRADE
    assert message.startswith("version 1 is not above the highest accepted (1)"), message
    assert "send version 2" in message
    # the same file signed again is a new envelope: not seen before either
    assert refusal(store, envelope(signer, "a: 1\n", 1))[0] == DOWNGRADE
    # with --force too: the running config's number is never reused
    code, message = refusal(store, envelope(signer, "a: other\n", 1, force=True))
    assert code == DOWNGRADE and "even with --force" in message
    # the identical envelope re-sent is the replay
    code, message = refusal(store, first)
    assert code == REPLAYED and f"envelope {first.id} (version 1) was already processed" in (
        message)
    applied(store, envelope(signer, "a: other\n", 2))  # what the message says to do


def test_below_the_highest_accepted_is_a_downgrade_and_force_allows_it(
        tmp_path: Path, signer: Ed25519PrivateKey) -> None:
    store = ConfigStore(tmp_path / "config")
    applied(store, envelope(signer, "a: 3\n", 3))
    code, message = refusal(store, envelope(signer, "a: 2\n", 2))
    assert (code, message) == (DOWNGRADE, "version 2 is not above the highest accepted (3); a "
                                          "downgrade needs --force")
    forced = envelope(signer, "a: 2\n", 2, force=True)
    applied(store, forced)
    assert refusal(store, forced)[0] == REPLAYED  # the forced envelope, once only
