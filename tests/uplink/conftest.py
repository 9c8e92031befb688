"""A real mosquitto on a free loopback port, and a paho subscriber that records what arrives
(tests/fixtures/services.py)."""

from gateway.localservices import free_port
from tests.fixtures.operators import keys
from tests.fixtures.services import (
    MOSQUITTO,
    Broker,
    Received,
    Subscriber,
    broker,
    persistent_broker,
    subscribers,
    victoria,
)

__all__ = ["MOSQUITTO", "Broker", "Received", "Subscriber", "broker", "free_port",
           "keys", "persistent_broker", "subscribers", "victoria"]
