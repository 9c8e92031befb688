"""Real mosquitto (the shipped config and ACL) and VictoriaMetrics on free loopback ports."""

from tests.fixtures.services import subscribers, victoria

__all__ = ["subscribers", "victoria"]
