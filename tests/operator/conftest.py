"""Real operator keys, a real mosquitto and a recording subscriber (tests/fixtures)."""

from tests.fixtures.operators import Keys, OperatorKeyPair, keys
from tests.fixtures.services import Broker, Subscriber, broker, subscribers

__all__ = ["Broker", "Keys", "OperatorKeyPair", "Subscriber", "broker", "keys", "subscribers"]
