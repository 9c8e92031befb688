"""A captured `--force` envelope is never applied twice: not after 1,000 other envelopes (it
used to be, once its digest had been pushed out of the last 1,000), not after a restart, and
not after more forced envelopes than the store remembers one by one."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.contract.wire import ConfigSet
from gateway.flashing.envelope import REPLAYED, EnvelopeRejected, sign_config
from gateway.flashing.store import SEEN_DIGESTS, ConfigStore

GATEWAY = "gw-test-01"
KEY = Ed25519PrivateKey.generate()


def envelope(version: int, *, force: bool = False, ts: int, text: str = "a: 1\n") -> ConfigSet:
    return sign_config(text, gateway=GATEWAY, version=version, author="li", private_key=KEY,
                       force=force, request_id=f"r-{version}-{ts}", now_ns=ts)


def apply(store: ConfigStore, env: ConfigSet) -> None:
    """What the applier does with an envelope that passed verification."""
    store.check_fresh(env)
    store.remember(env)
    store.stage(env)
    store.commit()


def refused(store: ConfigStore, env: ConfigSet) -> str:
    with pytest.raises(EnvelopeRejected) as caught:
        store.check_fresh(env)
    assert caught.value.code == REPLAYED
    return caught.value.message


@pytest.mark.slow
def test_a_forced_envelope_stays_refused_after_a_thousand_others(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "config")
    apply(store, envelope(5, ts=1))
    forced = envelope(3, force=True, ts=2, text="a: 3\n")  # a signed downgrade
    apply(store, forced)
    refused(store, forced)
    for i in range(SEEN_DIGESTS + 5):  # other envelopes processed (each refused later on)
        store.remember(envelope(6 + i, ts=10 + i), accepted=False)
    apply(store, envelope(2000, ts=5000, text="a: 2000\n"))  # the gateway moved on
    assert "already processed" in refused(store, forced)
    assert "already processed" in refused(ConfigStore(tmp_path / "config"), forced)  # restart


def test_forced_envelopes_forgotten_one_by_one_are_refused_by_their_age(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.flashing.seen.SEEN_FORCED", 5)
    monkeypatch.setattr("gateway.flashing.seen.SEEN_DIGESTS", 3)
    store = ConfigStore(tmp_path / "config")
    apply(store, envelope(100, ts=1))
    first = envelope(50, force=True, ts=10, text="a: 50\n")
    apply(store, first)
    for i in range(8):
        apply(store, envelope(60 + i, force=True, ts=20 + i, text=f"a: {60 + i}\n"))
    message = refused(store, first)
    assert "older than a forced envelope already processed" in message
    # a newly signed forced envelope still goes through
    apply(store, envelope(40, force=True, ts=1000, text="a: 40\n"))
    assert store.active_meta() is not None and store.active_meta().version == 40  # type: ignore[union-attr]


@pytest.mark.slow
def test_an_unforced_replay_is_still_caught_by_the_version(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "config")
    old = envelope(1, ts=1)
    apply(store, old)
    for i in range(SEEN_DIGESTS + 1):
        store.remember(envelope(2 + i, ts=10 + i), accepted=False)
    with pytest.raises(EnvelopeRejected) as caught:
        store.check_fresh(old)
    assert caught.value.code in (REPLAYED, "downgrade")
