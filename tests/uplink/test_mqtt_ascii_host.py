"""A client connects to an ASCII broker host without the `idna` codec
(gateway.mqtt_client._Client): Python's `getaddrinfo` encodes every `str` host with it, and its
first use imports `encodings.idna`, `stringprep` and `unicodedata` (0.25 MiB of a gateway's
RSS). Here fresh interpreters connect clients made as the gateway, the ingest and the flasher
make theirs (paho's thread and a patient one) to a real Mosquitto by address and by name, get
their CONNACK and have not imported the codec — nor run `uuid`, which paho imports for the
client ids it makes up (each client here is given one: it waits for its first use); a host
that is not ASCII is still resolved through the codec (paho's own path), and fails as paho
fails."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.fixtures.services import Broker

CONNECT = """
import sys, threading
from gateway.mqtt_client import ClientOptions, build_client
host, port, patient = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "patient"
client = build_client(ClientOptions(client_id="ascii-host",
                                    network_timeout=5.0 if patient else None))
connected = threading.Event()
client.on_connect = lambda *_: connected.set()
try:
    client.connect(host, port)
except Exception as exc:
    print("failed", type(exc).__name__, "encodings.idna" in sys.modules)
    raise SystemExit(0)
client.loop_start()
assert connected.wait(10), "no CONNACK"
client.disconnect()
client.loop_stop()
print("connected", "encodings.idna" in sys.modules, "unicodedata" in sys.modules,
      "_uuid" in sys.modules, "pydantic" in sys.modules)
from uuid import UUID, uuid4  # (its first use runs it: gateway.mqtt_client.DEFERRED)
assert isinstance(uuid4(), UUID) and "_uuid" in sys.modules
"""


def run(host: str, port: int, kind: str) -> str:
    done = subprocess.run([sys.executable, "-c", CONNECT, host, str(port), kind],
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


@pytest.mark.parametrize("kind", ["plain", "patient"])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_an_ascii_host_connects_without_the_idna_codec(broker: Broker, host: str,
                                                       kind: str) -> None:
    assert run(host, broker.port, kind) == "connected False False False False"


def test_a_unicode_host_goes_through_the_codec_as_paho_does_it(broker: Broker) -> None:
    # (an IDN under .invalid, RFC 2606: the codec encodes it, the resolver finds nothing)
    assert run("bücher.invalid", broker.port, "plain") == "failed gaierror True"
