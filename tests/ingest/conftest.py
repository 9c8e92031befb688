"""Real mosquitto and VictoriaMetrics on free loopback ports (tests/fixtures/services.py)."""

from gateway.localservices import free_port
from tests.fixtures.services import (
    MOSQUITTO,
    VICTORIA,
    Broker,
    Victoria,
    broker,
    victoria,
    wait_for,
)

__all__ = ["MOSQUITTO", "VICTORIA", "Broker", "Victoria", "broker", "free_port", "victoria",
           "wait_for"]
