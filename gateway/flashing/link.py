"""The MQTT link of `roomwarden flash` and the operator commands (`ack`, `shelve` …): one paho
client on its own thread, connected with the flash options' broker URL, credentials and TLS,
and what to say when no session comes of it — nothing answers, the connection is refused, TLS
fails, the broker closes the connection during the TLS handshake or before its CONNACK (as one
that requires a client certificate does), or its CONNACK refuses."""

from __future__ import annotations

import contextlib
import queue
import re
import secrets
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from gateway.mqtt_client import ClientOptions, TlsOptions, build_client
from gateway.records import dataclass

if TYPE_CHECKING:
    from gateway.flashing.flash_client import FlashOptions

_SOCKET_FAILURES = ("failed to receive on socket: ", "timeout on socket: ")
"""How paho's network thread logs a failed read or write (then it calls on_disconnect)."""


def _ssl_text(text: str) -> str:
    """An ssl error's text without OpenSSL's source position: `[SSL: X] reason`."""
    return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", text)


class FlashError(Exception):
    """Nothing was sent: the message says why."""


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerUrl:
    """`mqtt://host[:port]` (default 1883) or `mqtts://host[:port]` (TLS, default 8883); a bare
    `host[:port]` means mqtt://."""
    text = url if "://" in url else f"mqtt://{url}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise FlashError(f"broker URL {url!r}: {exc}") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise FlashError(f"broker URL {url!r}: the scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise FlashError(f"broker URL {url!r} names no host")
    if parts.path not in ("", "/") or parts.query or parts.username or parts.password:
        raise FlashError(f"broker URL {url!r}: only mqtt[s]://host:port (give credentials "
                         "with --username and --password-file)")
    tls = parts.scheme == "mqtts"
    return BrokerUrl(parts.hostname, port or (8883 if tls else 1883), tls)


class Link:
    """A paho client run on its own thread; status messages arrive on `inbox`.

    `open` says what went wrong when no session comes of it: nothing answers (a timeout), the
    connection refused, a TLS failure (with the ssl error), the broker closing the connection
    during the TLS handshake or before its CONNACK (a broker that requires a client
    certificate does that: TLS 1.3 sends the client's certificate after the handshake looks
    done to the client, so the broker's refusal arrives as a closed connection), or a CONNACK
    that refuses (with its reason)."""

    def __init__(self, options: FlashOptions, broker: BrokerUrl) -> None:
        self.inbox: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.connected = threading.Event()
        """Set at the CONNACK, or when the connection closes before one."""
        self.subscribed = threading.Event()
        self.refused: str | None = None
        self.closed = False
        """The connection closed (before the CONNACK, if `connected` was set by it)."""
        self.socket_error: str | None = None
        """What paho's network thread last failed with (an ssl error's text, a reset)."""
        self.tls = broker.tls
        self.cert_file = options.cert_file
        self.username = options.username or None
        tls = TlsOptions(options.ca_file, options.cert_file, options.key_file,
                         options.insecure) if broker.tls else None
        client = build_client(ClientOptions(
            client_id=f"roomwarden-flash-{secrets.token_hex(6)}", clean_session=True,
            username=self.username,
            password=options.password if options.username else None, tls=tls))

        def on_connect(_c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
            if rc.is_failure:
                self.refused = str(rc)
            self.connected.set()

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
            self.closed = True
            self.connected.set()
            self.subscribed.set()

        def on_log(_c: mqtt.Client, _u: Any, level: int, text: str) -> None:
            # paho reports a failed read or write only here ("failed to receive on socket:
            # <the OSError or SSLError>"), before it calls on_disconnect
            if level == mqtt.MQTT_LOG_ERR and text.startswith(_SOCKET_FAILURES):
                self.socket_error = _ssl_text(text.partition(": ")[2])

        def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode],
                         _p: Any) -> None:
            if any(code.is_failure for code in codes):
                self.refused = f"subscription refused: {codes[0]}"
            self.subscribed.set()

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            self.inbox.put((msg.topic, bytes(msg.payload), bool(msg.retain)))

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_log = on_log
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        self.client = client

    def open(self, broker: BrokerUrl, timeout: float) -> None:
        """Connect and wait for the CONNACK; FlashError saying what happened otherwise."""
        where = f"{broker.host}:{broker.port}"
        deadline = time.monotonic() + timeout
        self.client.connect_timeout = timeout  # the TCP connect and the TLS handshake
        try:
            self.client.connect(broker.host, broker.port, keepalive=30)
        except ssl.SSLCertVerificationError as exc:
            raise FlashError(f"TLS failure with the broker {where}: its certificate was not "
                             f"accepted: {exc.verify_message or _ssl_text(str(exc))} (the CA "
                             "is --ca-file, else the system's; a certificate for another "
                             "host name needs --insecure on a test bench)") from None
        except ssl.SSLError as exc:
            raise FlashError(self._closed(where, _ssl_text(str(exc)), handshake=True,
                                          failure=True)) from None
        except ConnectionRefusedError:
            raise FlashError(f"cannot connect to {where}: the connection was refused (no "
                             "broker listens on that port: is the address right and the "
                             "broker running?)") from None
        except TimeoutError:
            raise FlashError(self._silent(where, timeout, connecting=True)) from None
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
            raise FlashError(self._closed(where, exc.strerror or str(exc),
                                          handshake=broker.tls)) from None
        except socket.gaierror as exc:
            raise FlashError(f"cannot connect to {where}: the host name {broker.host!r} "
                             f"does not resolve ({exc.strerror})") from None
        except (OSError, ValueError) as exc:
            raise FlashError(f"cannot connect to {where}: {exc}") from None
        self.client.loop_start()
        if not self.connected.wait(max(0.0, deadline - time.monotonic())):
            raise FlashError(self._silent(where, timeout, connecting=False))
        if self.refused:
            raise FlashError(f"the broker {where} refused the connection: CONNACK reason "
                             f"{self.refused!r}{self._login_hint(self.refused)}")
        if self.closed:
            raise FlashError(self._closed(where, self.socket_error, handshake=False))

    def _silent(self, where: str, timeout: float, *, connecting: bool) -> str:
        if connecting:
            doing = "to the TCP connect and TLS handshake" if self.tls else "to the TCP connect"
            return (f"no answer from the broker {where} within {timeout:g}s {doing} (nothing "
                    "answers at that address: a wrong host or port, a firewall, or the broker "
                    "is down)")
        return (f"no answer from the broker {where} within {timeout:g}s: the connection is open "
                "but no CONNACK came back (is it an MQTT broker"
                + ("?)" if self.tls else "? a TLS port needs mqtts://)"))

    def _closed(self, where: str, error: str | None, *, handshake: bool,
                failure: bool = False) -> str:
        """The broker closed the connection (or failed the TLS handshake) before a CONNACK."""
        if failure:
            text = f"TLS failure with the broker {where}: the handshake failed"
        elif handshake or self.tls:
            text = (f"the broker {where} closed the connection during the TLS handshake or "
                    "before answering CONNECT")
        else:
            text = f"the broker {where} closed the connection before answering CONNECT"
        if error:
            text += f" ({error})"
        if not self.tls:
            return text + "; if that port is a TLS listener, use mqtts://"
        if self.cert_file is None:
            return (text + "; the broker may require a client certificate: "
                           "--cert-file/--cert-key-file")
        return (text + f"; the broker may not accept the client certificate {self.cert_file} "
                       "(signed by another CA, expired or revoked?)")

    def _login_hint(self, reason: str) -> str:
        if reason not in ("Not authorized", "Bad user name or password"):
            return ""
        if self.username is None:
            return ("; the broker wants a login: --username and --password-file"
                    + ("" if self.cert_file or not self.tls else ", or a client certificate "
                       "(--cert-file/--cert-key-file)"))
        return f"; check --username {self.username} and --password-file"

    def subscribe(self, topic: str, timeout: float) -> None:
        if not self.closed:  # (a second subscription waits for its own SUBACK)
            self.subscribed.clear()
        self.client.subscribe(topic, qos=1)
        if not self.subscribed.wait(timeout):
            raise FlashError(f"the broker did not confirm the subscription to {topic}")
        if self.closed:
            raise FlashError(f"the broker closed the connection instead of confirming the "
                             f"subscription to {topic}"
                             + (f" ({self.socket_error})" if self.socket_error else ""))
        if self.refused:
            raise FlashError(f"the broker refused {topic}: {self.refused}")

    def publish(self, topic: str, payload: bytes, timeout: float) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=False)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise FlashError(f"could not publish to {topic}: {exc}") from None
        if not info.is_published():
            raise FlashError(f"the broker did not acknowledge the config within {timeout:g}s")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()
