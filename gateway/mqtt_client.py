"""One way to build a paho-mqtt 2 client, shared by the uplink, the ingest and the flash and
command clients: protocol, client id and session, credentials, TLS, and the reconnect policy.

Each user keeps its own callbacks and its own way of running the network loop; what they
share is how a client is configured, so TLS and credentials behave the same everywhere:
- TLS: the broker's certificate is always verified (`CERT_REQUIRED`) against `ca_file` or the
  system's trust store; `cert_file`/`key_file` add a client certificate (mutual TLS);
  `insecure` skips only the host-name check (test benches).
- Credentials: username and password are set when a username is given; a password file is
  read by the caller at each connect (a rotated password needs no restart) and never logged.
- Network thread (`network_timeout`): paho's own thread (`loop_start`) waits at most 1 s in
  select, so an idle connection wakes the process every second to look at its keepalive;
  a client given `network_timeout` waits that long instead (traffic, a publish from another
  thread through paho's socket pair, or a closed socket wake it at once; the keepalive ping
  then goes at most that much late, so keep it well under the keepalive: the uplink uses a
  quarter of it).
- Reconnect policy (`Backoff`): exponential from `minimum` to `maximum` with ±20 % jitter,
  reset after a successful connection. The uplink reconnects itself (a fresh client per
  attempt, paho's own reconnect off); a client that lets paho reconnect (the ingest) gets the
  same bounds through `reconnect_delay_set`.

urllib.request waits for its first use (issue 15): paho imports it at the top of its client
module for one thing, the proxy it looks up at each connect (`Client._get_proxy`), and reads
it only where PySocks (`socks`) is installed; without it paho connects directly. Imported, it
brings http.client, `email` (15 modules) and `calendar`: 0.5 MiB of code objects in every
process with an MQTT client. So before paho is imported, urllib.request is bound to a module
whose code runs at the first look-up of a name it does not have yet (`FirstUse`): whoever
reads it — paho with PySocks, any other caller — gets the whole module, as before; a gateway
without PySocks never runs it. If it was imported already (another library came first), it
stays as it is. (Not `importlib.util.LazyLoader`: its module runs at any attribute access,
`__spec__` included, which every later `import urllib.request` statement reads.) `uuid` waits
the same way: paho imports it for the client ids it makes up when given none and for
websockets' keys; every client here is given its id (0.11 MiB: `uuid`, `_uuid`, libuuid).
"""

from __future__ import annotations

import importlib.util
import random
import socket
import ssl
import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any, Literal

from gateway.records import dataclass

DEFERRED = ("urllib.request", "uuid")
_RUNNING: set[str] = set()
_FIRST_USE = threading.RLock()


class FirstUse(types.ModuleType):
    """A module with only its import attributes (`__spec__`, `__file__`, ...) until a name it
    lacks is looked up: then its code runs, once, in its namespace, and it is a plain module."""

    def __getattr__(self, name: str) -> Any:
        spec = self.__spec__
        assert spec is not None and spec.loader is not None  # as `defer_import` found it
        loader = spec.loader
        with _FIRST_USE:
            if type(self) is FirstUse and spec.name not in _RUNNING:
                _RUNNING.add(spec.name)  # its own code finds what it has defined so far
                try:
                    loader.exec_module(self)
                finally:
                    _RUNNING.discard(spec.name)
                self.__class__ = types.ModuleType  # type: ignore[assignment]
        return types.ModuleType.__getattribute__(self, name)


def defer_import(name: str) -> None:
    """Bind `name` (a submodule not yet imported) to a `FirstUse` module; nothing if it is
    imported already or cannot be found."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    module.__class__ = FirstUse
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)  # as `import urllib.request` binds it


for _name in DEFERRED:
    defer_import(_name)

import paho.mqtt.client as mqtt  # noqa: E402  (after the deferral, which paho's import binds)
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion  # noqa: E402
from paho.mqtt.matcher import MQTTMatcher  # noqa: E402

Protocol = Literal["3.1.1", "5"]


@dataclass(frozen=True, slots=True)
class TlsOptions:
    ca_file: str | None = None
    """CA bundle of the broker's certificate; None: the system's trust store."""
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False
    """Skip the broker host-name check (test benches only)."""


@dataclass(frozen=True, slots=True)
class ClientOptions:
    client_id: str
    protocol: Protocol = "3.1.1"
    clean_session: bool = True
    """MQTT 3.1.1 only (MQTT 5 chooses `clean_start` at connect)."""
    username: str | None = None
    password: str | None = None
    tls: TlsOptions | None = None
    manual_ack: bool = False
    """The caller acknowledges each received PUBLISH itself (`client.ack`)."""
    reconnect: tuple[float, float] | None = None
    """(min, max) seconds for paho's own reconnect; None: paho never reconnects (the caller
    makes a new client per attempt)."""
    max_inflight: int | None = None
    network_timeout: float | None = None
    """Seconds paho's network thread (`loop_start`) waits in select with nothing to do; None:
    paho's 1 s."""


class _NoFilters(MQTTMatcher):
    """paho's matcher of `message_callback_add`'s topic filters, which this project never
    uses, but which paho asks for every message it receives: its `iter_match` builds a closure
    that refers to itself, a reference cycle per message (a function, its cells and the topic's
    parts) that only the cyclic collector frees — and `roomwarden run` lets that run seldom
    (its young generation's threshold is 10,000), so the cycles piled up between collections:
    ~100 KiB in 8 minutes of an ingest's acknowledgements, growth the 10-minute soak saw. With
    no filter added, nothing matches and nothing is built."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def iter_match(self, topic: str) -> Iterator[Any]:
        root = self._root
        if root._children or root._content is not None:  # a filter was added after all
            return super().iter_match(topic)  # type: ignore[no-untyped-call,no-any-return]
        return iter(())


class _Client(mqtt.Client):
    """A paho client that connects over TCP to an ASCII host name or address without the
    `idna` codec: paho hands the host to `socket.create_connection` as a `str`, and Python's
    `getaddrinfo` encodes every `str` host with that codec (even "127.0.0.1"), whose first use
    imports `encodings.idna`, `stringprep` and `unicodedata`: 0.25 MiB of a gateway's RSS
    (issue 15) for the Unicode host names it never has. An ASCII host goes to
    `create_connection` as the same characters in bytes (what the codec makes of an ASCII name
    whose labels are 1-63 characters; longer ones fail to resolve instead of failing to
    encode), the rest as paho does it: a non-ASCII host, a proxy (PySocks), a Unix socket.
    TLS asks the codec for the certificate's host name itself (`ssl`)."""

    def _create_socket_connection(self) -> socket.socket:  # paho 2's own, the host in bytes
        host = self._host
        if not host.isascii() or self._get_proxy():
            return super()._create_socket_connection()
        return socket.create_connection((host.encode("ascii"), self._port),  # type: ignore[arg-type]
                                        timeout=self._connect_timeout,
                                        source_address=(self._bind_address, self._bind_port))


class _PatientClient(_Client):
    """A paho client whose network thread waits `network_timeout` in select, not 1 s."""

    network_timeout = 1.0

    def _thread_main(self) -> None:  # paho 2's own, with the timeout
        try:
            self.loop_forever(timeout=self.network_timeout, retry_first_connection=True)
        finally:
            self._thread = None


def build_client(options: ClientOptions) -> mqtt.Client:
    """A configured client, not yet connected and with no callbacks set."""
    v5 = options.protocol == "5"
    kind = _Client if options.network_timeout is None else _PatientClient
    client = kind(CallbackAPIVersion.VERSION2, client_id=options.client_id,
                         protocol=MQTTProtocolVersion.MQTTv5 if v5
                         else MQTTProtocolVersion.MQTTv311,
                         clean_session=None if v5 else options.clean_session,
                         reconnect_on_failure=options.reconnect is not None,
                         manual_ack=options.manual_ack)
    client._on_message_filtered = _NoFilters()  # (private: see _NoFilters)
    if options.username is not None:
        client.username_pw_set(options.username, options.password)
    tls = options.tls
    if tls is not None:
        client.tls_set(ca_certs=tls.ca_file, certfile=tls.cert_file, keyfile=tls.key_file,
                       cert_reqs=ssl.CERT_REQUIRED)
        client.tls_insecure_set(tls.insecure)
    if options.reconnect is not None:
        low, high = options.reconnect
        client.reconnect_delay_set(max(1, round(low)), max(1, round(high)))
    if options.max_inflight is not None:
        client.max_inflight_messages_set(options.max_inflight)
    if isinstance(client, _PatientClient) and options.network_timeout is not None:
        client.network_timeout = options.network_timeout
    return client


STABLE_AFTER = 30.0
"""Seconds a connection must stay up for its end to start the reconnect back-off again."""
SHORT_CONNECTION = (" reason='lost soon after connecting: another client with this client id "
                    "(a cloned gateway.id?), the broker's limits or ACL; the back-off grows'")


class Backoff:
    """Reconnect delays: `minimum`, doubling up to `maximum`, each with ±`jitter` (so many
    gateways that lost one broker do not all come back in the same second)."""

    def __init__(self, minimum: float, maximum: float, *, jitter: float = 0.2,
                 uniform: Callable[[float, float], float] = random.uniform) -> None:
        if not 0 < minimum <= maximum:
            raise ValueError("need 0 < minimum <= maximum")
        self.minimum = minimum
        self.maximum = maximum
        self.jitter = jitter
        self._uniform = uniform
        self._next = minimum

    def reset(self) -> None:
        """After a connection that got as far as a CONNACK."""
        self._next = self.minimum

    def ended(self, lasted: float | None) -> None:
        """A connection ended `lasted` seconds after its CONNACK (None: it never got one):
        the back-off starts again only after one that stayed up `STABLE_AFTER`. A broker that
        accepts and drops at once (two gateways with one client id take turns throwing each
        other out) otherwise had both reconnecting every 2 s for ever (the idle audit)."""
        if lasted is not None and lasted >= STABLE_AFTER:
            self.reset()

    def delay(self) -> float:
        """The wait before the next attempt (and doubles the one after it)."""
        base = self._next
        self._next = min(self.maximum, base * 2)
        return base * self._uniform(1 - self.jitter, 1 + self.jitter)
