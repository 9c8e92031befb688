"""Keys and envelopes for the flashing tests (a real mosquitto comes from tests/fixtures)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.flashing.keys import TrustedKey, public_of
from tests.fixtures.services import Broker, broker

__all__ = ["Broker", "broker"]

GATEWAY = "gw-bj-yz-01"
SEED_A = bytes(range(32))
SEED_B = bytes(range(1, 33))


@pytest.fixture(scope="session")
def signer() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(SEED_A)


@pytest.fixture(scope="session")
def other_signer() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(SEED_B)


@pytest.fixture(scope="session")
def trusted(signer: Ed25519PrivateKey) -> list[TrustedKey]:
    return [public_of(signer)]
