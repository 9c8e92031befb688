"""One MQTT connection of the uplink: a fresh paho client per attempt (built by
gateway.mqtt_client, paho's own reconnect off), paho's network thread, and its callbacks handed
to the event loop.

Why paho's network thread (`loop_start`) rather than aiomqtt: paho-mqtt 2 is the one dependency
(aiomqtt wraps paho anyway); its thread does the socket I/O, keepalive pings and TLS, so a slow
broker or handshake never runs on the event loop; it sleeps in select until traffic, a publish
(paho's socket pair) or a quarter of the keepalive (`NETWORK_TIMEOUT_SHARE`,
gateway.mqtt_client's `network_timeout`). Callbacks only hand their result to the loop with
`call_soon_threadsafe`; inbound messages go as a burst, like PUBACKs, and at most
`MAX_INBOUND_PENDING` wait for the loop (more are dropped and counted); all state is touched by
the loop alone, so there is no race between `publish()` returning a mid and its PUBACK. PUBACKs
go as a burst: paho's thread appends each to a short list under a lock and wakes the loop only
for the first of a burst (a window's PUBACKs usually arrive in one read: one hop, not one per
message); the loop takes the list whole and hands each on in the order received. A fresh client
per attempt means paho never re-sends its own in-flight copies behind the outbox's back, each
connect re-reads the password file and re-arms the last will, and the connection is a clean
session (inbound topics are subscribed on every connect). Topic filters the broker refuses
(SUBACK) are asked for again on the same connection, with back-off (gateway.uplink.subscriptions),
while everything else goes on.

The connect itself (the broker's name looked up, the TCP connect) runs in a daemon thread of
its own (`connect_apart`), so that a lookup no nameserver answers never holds the process's
exit. `end()` closes the socket without a DISCONNECT unless `goodbye()` said goodbye (so the
broker publishes the last will) and waits for paho's thread with the public `loop_stop()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from gateway.mqtt_client import Backoff, ClientOptions, TlsOptions, build_client
from gateway.ops.connections import RateLimitFilter
from gateway.records import dataclass
from gateway.uplink.settings import UplinkSettings
from gateway.uplink.subscriptions import Subscriptions

log = logging.getLogger("roomwarden.uplink")
log.addFilter(RateLimitFilter(prefix="event=uplink_inbound_flood"))  # a line a minute

MAX_INBOUND_PENDING = 256
"""Messages on subscribed topics (commands, config sets, acks) paho's thread holds for the loop
at most; more while the loop has not taken them are dropped, counted and logged at most once
a minute (a flood of `cmd` messages must not queue without bound ahead of the bus loops)."""
MAX_INBOUND_BYTES = 16 * 2**20
"""Their bytes at most (a config set is at most 2 MiB)."""
INBOUND_SLICE = 0.01
"""Seconds of the loop's time the inbound messages get in one turn (`Session._on_inbound`)."""
NETWORK_TIMEOUT_SHARE = 0.25
"""paho's network thread waits up to this share of the keepalive with nothing to do (not
paho's 1 s: an idle uplink's connection does not wake the process every second); a keepalive
ping goes at most that much late, well inside the broker's 1.5 × keepalive."""


@dataclass(frozen=True, slots=True)
class Handlers:
    """What a session reports, each called on the event loop."""

    puback: Callable[[int, int, str], None]
    """(mid, reason code value, reason text) for every PUBACK (a value ≥ 0x80 is a refusal)."""
    message: Callable[[str, bytes, bool], None]
    """(topic, payload, retained) of a message on a subscribed topic."""
    prepare: Callable[[str], None] | None = None
    """Called with a message's topic in the network thread, before the message goes to the
    loop: what handling it needs and is not imported yet is imported there, not on the loop
    the safety core runs on (the contract's models at the first command: gateway.uplink.
    publisher). Must not raise."""


def client_options(settings: UplinkSettings, client_id: str) -> ClientOptions:
    """The options of one connection attempt; reads the password file (blocking: call from a
    thread), so a rotated password needs no restart."""
    s = settings
    password = None if s.password_file is None else \
        Path(s.password_file).read_text(encoding="utf-8").strip()
    tls = None if s.tls is None else TlsOptions(s.tls.ca_file, s.tls.cert_file,
                                               s.tls.key_file, s.tls.insecure)
    return ClientOptions(client_id=client_id, protocol=s.protocol, clean_session=True,
                         username=s.username, password=password, tls=tls,
                         max_inflight=s.max_inflight,
                         network_timeout=s.keepalive * NETWORK_TIMEOUT_SHARE)


class Session:
    def __init__(self, options: ClientOptions, loop: asyncio.AbstractEventLoop, *,
                 will: tuple[str, bytes], subscriptions: list[str],
                 handlers: Handlers, resubscribe: Backoff | None = None) -> None:
        """`resubscribe`: the waits before subscribing again to filters the broker refused
        (default: 1 s doubling up to 60 s, the uplink's reconnect defaults)."""
        self.loop = loop
        self.connack: asyncio.Future[str | None] = loop.create_future()
        """None on success, else the broker's refusal."""
        self.lost = asyncio.Event()
        self._handlers = handlers
        self._waiters: dict[int, asyncio.Future[int]] = {}
        self._started = False
        self._acks: list[tuple[int, int, str]] = []
        """PUBACKs paho's thread received and the loop has not taken yet (in order)."""
        self._acks_lock = threading.Lock()
        self._inbound: list[tuple[str, bytes, bool]] = []
        """Messages paho's thread received and the loop has not taken yet (in order), under
        `_acks_lock`; bounded by MAX_INBOUND_PENDING and MAX_INBOUND_BYTES."""
        self._inbound_bytes = 0
        self.inbound_dropped = 0
        """Messages dropped because the loop had not taken the ones before (a flood)."""
        self._dropped_logged = 0
        client = build_client(options)
        client.will_set(will[0], will[1], qos=1, retain=True)
        self.subscriptions = Subscriptions(tuple(subscriptions),
                                           resubscribe or Backoff(1.0, 60.0))
        """What the broker granted and refused on this connection (touched on the loop)."""
        self._retry: asyncio.TimerHandle | None = None

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
            result = None if not rc.is_failure else str(rc)
            if result is None and subscriptions:  # a fresh clean session: subscribe every time
                _rc, mid = c.subscribe([(topic, 1) for topic in subscriptions])
                if mid is not None:  # (None: the connection is already gone)
                    loop.call_soon_threadsafe(self.subscriptions.sent, mid, tuple(subscriptions))
            loop.call_soon_threadsafe(_resolve, self.connack, result)

        def on_subscribe(_c: mqtt.Client, _u: Any, mid: int, codes: list[ReasonCode],
                         _p: Any) -> None:
            results = [(bool(rc.is_failure), str(rc)) for rc in codes]
            with contextlib.suppress(RuntimeError):  # the loop may be closed at exit
                loop.call_soon_threadsafe(self._on_suback, mid, results)

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            try:  # never raise in paho's thread: it would end the network loop
                if self._handlers.prepare is not None:
                    self._handlers.prepare(msg.topic)
                payload = bytes(msg.payload)
                with self._acks_lock:  # one hop to the loop for a burst, and a bound
                    if len(self._inbound) >= MAX_INBOUND_PENDING or \
                            self._inbound_bytes + len(payload) > MAX_INBOUND_BYTES:
                        self.inbound_dropped += 1
                        return
                    self._inbound.append((msg.topic, payload, bool(msg.retain)))
                    self._inbound_bytes += len(payload)
                    first = len(self._inbound) == 1
                if first:
                    loop.call_soon_threadsafe(self._on_inbound)
            except Exception as exc:
                log.error("event=uplink_inbound_dropped error=%r", type(exc).__name__)

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop may be closed at exit
                loop.call_soon_threadsafe(self.lost.set)
                loop.call_soon_threadsafe(_resolve, self.connack, f"disconnected: {rc}")

        def on_publish(_c: mqtt.Client, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
            reason = int(rc.value)
            with self._acks_lock:  # one hop to the loop for a burst of PUBACKs
                self._acks.append((mid, reason, str(rc) if reason >= 0x80 else ""))
                first = len(self._acks) == 1
            if first:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._on_pubacks)

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        self.client = client

    @property
    def connected(self) -> bool:
        return (self.connack.done() and self.connack.result() is None
                and not self.lost.is_set())

    @property
    def subscribed(self) -> bool:
        """Connected, and the broker granted the inbound subscriptions: commands, config sets
        and the ingest's acknowledgements sent from now on reach this gateway (sent between
        the CONNACK and the SUBACK, they do not: a clean session)."""
        return self.subscriptions.granted and self.connected

    @property
    def refused(self) -> dict[str, str]:
        """Topic filter → the broker's reason, for each it refused on this connection (and
        has not granted since)."""
        return dict(self.subscriptions.refused) if self.connected else {}

    def _on_suback(self, mid: int, results: list[tuple[bool, str]]) -> None:
        """A SUBACK (on the loop): log what it refused and ask again later."""
        refusal = self.subscriptions.suback(mid, results)
        if refusal is None or self.lost.is_set():
            return
        if refusal.retry_in is None:
            if refusal.attempt:
                log.info("event=uplink_subscribed after_refusals=%d", refusal.attempt)
            return
        log.error("event=uplink_subscribe_refused filters=%s reasons=%r attempt=%d "
                  "retry_in_s=%.1f", ",".join(refusal.newly),
                  ",".join(refusal.newly.values()), refusal.attempt, refusal.retry_in)
        if self._retry is not None:
            self._retry.cancel()
        self._retry = self.loop.call_later(refusal.retry_in, self._resubscribe)

    def _resubscribe(self) -> None:
        """Subscribe again to the refused filters (the rest stay granted)."""
        self._retry = None
        filters = self.subscriptions.to_retry()
        if not filters or not self.connected:
            return
        rc, mid = self.client.subscribe([(topic, 1) for topic in filters])
        if rc == mqtt.MQTT_ERR_SUCCESS and mid is not None:  # (else `lost` follows)
            self.subscriptions.sent(mid, filters)

    async def open(self, host: str, port: int, keepalive: float, timeout: float) -> None:
        """Connect and wait for the CONNACK; ConnectionError if refused or unanswered."""
        await connect_apart(lambda: self.client.connect(host, port, round(keepalive)),
                            self.drop_socket)
        self.client.loop_start()
        self._started = True
        try:
            refused = await asyncio.wait_for(asyncio.shield(self.connack), timeout)
        except TimeoutError:
            raise ConnectionError(f"no CONNACK within {timeout:g}s") from None
        if refused is not None:
            raise ConnectionError(f"broker refused: {refused}")

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> int | None:
        """The message's mid, or None if the connection is gone."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return info.mid if info.rc == mqtt.MQTT_ERR_SUCCESS else None

    def _on_inbound(self) -> None:
        """The messages received since the last call, in order (on the loop), for at most
        INBOUND_SLICE seconds: the rest in the loop's next turn, after the polls, rules and
        timers due meanwhile (a burst of 256 costly messages — junk commands the contract
        refuses — was handled in one call and held them for seconds: DESIGN 13). One message
        at least a turn; one taken is no longer counted against the bound."""
        with self._acks_lock:
            dropped = self.inbound_dropped
        if dropped > self._dropped_logged:  # new drops since the last look
            self._dropped_logged = dropped
            log.warning("event=uplink_inbound_flood dropped=%d pending_max=%d", dropped,
                        MAX_INBOUND_PENDING)
        deadline = time.monotonic() + INBOUND_SLICE
        while True:
            with self._acks_lock:
                if not self._inbound:
                    return  # (paho's thread calls again for the next message's arrival)
                topic, payload, retained = self._inbound.pop(0)
                self._inbound_bytes -= len(payload)
            self._handlers.message(topic, payload, retained)
            if time.monotonic() >= deadline:
                with self._acks_lock:
                    more = bool(self._inbound)
                if more:  # (paho's thread calls only when the list was empty)
                    asyncio.get_running_loop().call_soon(self._on_inbound)
                return

    def _on_pubacks(self) -> None:
        """Every PUBACK received since the last call, in order (on the loop)."""
        with self._acks_lock:
            acks, self._acks = self._acks, []
        for mid, reason, text in acks:
            waiter = self._waiters.pop(mid, None)
            if waiter is not None:
                _resolve(waiter, reason)
                continue
            self._handlers.puback(mid, reason, text)

    async def goodbye(self, topic: str, payload: bytes, timeout: float) -> None:
        """Publish a last retained message (the `offline` state), wait briefly for its PUBACK,
        then DISCONNECT cleanly (the broker then drops the last will)."""
        if not self.connected:
            return
        mid = self.publish(topic, payload, 1, True)
        if mid is not None:
            waiter: asyncio.Future[int] = self.loop.create_future()
            self._waiters[mid] = waiter
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, timeout)
        self.client.disconnect()

    def drop(self) -> None:
        """Close the socket without a DISCONNECT: the broker publishes the last will, and
        paho's thread (which does not reconnect) ends."""
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def drop_socket(self) -> None:
        """Shut and close the socket of a connect that ended after its session was given up
        (`connect_apart`): no network thread will ever serve it."""
        self.drop()
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            sock.close()

    async def end(self) -> None:
        """Drop the connection (if still up) and wait for paho's network thread."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if not self.lost.is_set():
            self.drop()
        if self._started:
            self._started = False
            await asyncio.to_thread(self.client.loop_stop)
        self._release()

    def _release(self) -> None:
        """Let go of what paho keeps after its thread ended: the callbacks (closures over this
        session — a cycle that only a full garbage collection broke, keeping the client) and
        the socket pair that woke its thread (paho 2.2 closes it only when the client is
        collected): two descriptors a reconnect otherwise."""
        client = self.client
        client.on_connect = client.on_disconnect = client.on_publish = None
        client.on_subscribe = client.on_message = None
        reset = getattr(client, "_reset_sockets", None)  # paho's own clean-up of the pair
        if callable(reset):
            with contextlib.suppress(OSError):
                reset(sockpair_only=True)


async def connect_apart(connect: Callable[[], object], given_up: Callable[[], None]) -> None:
    """Run `connect` (paho's: the broker's name looked up, the TCP connect, the CONNECT sent)
    in a daemon thread of its own, not the loop's default executor: `asyncio.run` waits at
    exit for every executor thread, and a lookup of a name no nameserver answers blocks in
    getaddrinfo for as long as the resolver's timeouts (23 s after `gateway_stopped` in the
    liveness audit, L3: into systemd's TimeoutStopSec). Cancelled, this returns at once; the
    thread ends on its own, and a connect that succeeds after that is closed (`given_up`)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    abandoned = threading.Event()

    def settle(error: BaseException | None) -> None:  # on the loop
        if done.cancelled():
            if error is None:
                given_up()
        elif error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def work() -> None:
        error: BaseException | None = None
        try:
            connect()
        except BaseException as exc:  # whatever it is, the waiting side hears of it
            error = exc
        if abandoned.is_set() or loop.is_closed():
            if error is None:
                with contextlib.suppress(Exception):
                    given_up()
            return
        try:
            loop.call_soon_threadsafe(settle, error)
        except RuntimeError:  # the loop closed meanwhile
            if error is None:
                with contextlib.suppress(Exception):
                    given_up()

    threading.Thread(target=work, name="uplink-connect", daemon=True).start()
    try:
        await done
    except asyncio.CancelledError:
        abandoned.set()
        raise


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)
