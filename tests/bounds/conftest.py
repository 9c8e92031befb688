"""Real Mosquitto and VictoriaMetrics on free loopback ports (tests/fixtures/services.py) and a
publishing gateway stand-in (the ingest tests' own)."""

from collections.abc import Iterator

import pytest

from tests.fixtures.services import Broker, broker, victoria
from tests.ingest.test_service import Gateway


@pytest.fixture
def gateway(broker: Broker) -> Iterator[Gateway]:
    gw = Gateway(broker)
    yield gw
    gw.close()


__all__ = ["broker", "gateway", "victoria"]
