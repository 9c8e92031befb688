"""The ingest service: contract messages from MQTT into InfluxDB, nothing lost, nothing doubled.

Flow (DESIGN principle 5):

* A paho-mqtt 2 client with a persistent session (MQTT 3.1.1 `clean_session=False`, MQTT 5
  `clean_start=False` plus a session expiry) subscribes at QoS 1 to `telemetry`, `meta`,
  `alarms` and `state` of every gateway — with MQTT 5 through a shared subscription
  `$share/<group>/<root>/+/+/<channel>`, so several ingest instances split the stream.
* `manual_ack=True`: paho does not acknowledge a PUBLISH on its own. The network thread decodes
  each message (`contract.decode`), remembers catalogs (`meta`) and turns the rest into line
  protocol (`schema`); a queue hands them to one writer thread.
* The writer collects messages until `batch_size` points or `flush_interval`, writes them with
  influxdb-client's synchronous write API and retries (tenacity, exponential backoff) on 429,
  5xx and connection errors for as long as it takes. Only when the database accepted the batch
  are its messages acknowledged, in the order they arrived. While the database is down nothing
  is acknowledged: the broker keeps the messages (and redelivers them after a reconnect).
* Malformed messages, batches naming a catalog never seen and points the database rejects
  (4xx) go to the dead-letter log and are acknowledged: they never block the stream.
* A message received before a disconnect is never acknowledged after it (its packet id may
  name another message by then); the broker redelivers it and the duplicate collapses onto the
  same series and timestamp.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS, WriteApi
from influxdb_client.rest import ApiException
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    wait_exponential,
)

from gateway.ingest.catalogs import CatalogStore
from gateway.ingest.deadletter import DeadLetterLog
from gateway.ingest.schema import UnknownCatalog, message_lines
from gateway.ingest.settings import IngestSettings
from gateway.uplink.contract import Channel, ContractError, PointCatalog, decode, topic_filter

log = logging.getLogger("roomwarden.ingest")

CHANNELS = (Channel.TELEMETRY, Channel.META, Channel.ALARMS, Channel.STATE)
"""What the ingest subscribes to (`alarms/active` is a dashboard's business, not history's)."""


@dataclass(slots=True)
class _Item:
    mid: int
    qos: int
    generation: int
    topic: str
    payload: bytes
    lines: list[str] = field(default_factory=list)
    dead_reason: str | None = None


class _Stopping(Exception):
    """The service is stopping while a write is still failing: acknowledge nothing."""


def retryable(exc: BaseException) -> bool:
    """Worth another try: 429 and 5xx answers, timeouts and connection errors."""
    if isinstance(exc, ApiException):
        status = exc.status or 0
        return status == 0 or status == 429 or status >= 500
    return isinstance(exc, urllib3.exceptions.HTTPError | OSError)


def subscriptions(settings: IngestSettings) -> list[str]:
    m = settings.mqtt
    filters = [topic_filter(ch, root=m.root) for ch in CHANNELS]
    if m.protocol == "5" and m.shared_group:
        filters = [f"$share/{m.shared_group}/{f}" for f in filters]
    return filters


class IngestService:
    """`run()` blocks until `stop()`; `start()`/`stop()` for embedding (and tests)."""

    def __init__(self, settings: IngestSettings, *,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.settings = settings
        self._clock = clock
        self._catalogs = CatalogStore(settings.catalog_store)
        self._dead = DeadLetterLog(settings.dead_letter)
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._stopping = threading.Event()
        self._ack_lock = threading.Lock()
        self._generation = 0
        self._connected = False
        self._writer: threading.Thread | None = None
        self._counters = {"received": 0, "written_points": 0, "written_messages": 0,
                          "acked": 0, "write_retries": 0, "write_errors": 0,
                          "not_acked_reconnected": 0, "catalogs_added": 0}
        self._count_lock = threading.Lock()
        influx = settings.influx
        self._influx = InfluxDBClient(url=influx.url, token=settings.influx_token(),
                                      org=influx.org, timeout=int(influx.timeout * 1000),
                                      retries=False)
        self._write_api: WriteApi = self._influx.write_api(write_options=SYNCHRONOUS)
        self._client = self._make_client()

    # ------------------------------------------------------------------------ lifecycle

    def _make_client(self) -> mqtt.Client:
        m = self.settings.mqtt
        v5 = m.protocol == "5"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=m.client_id,
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                             clean_session=None if v5 else False, manual_ack=True)
        if m.username is not None:
            client.username_pw_set(m.username, self.settings.mqtt_password())
        if m.tls is not None:
            client.tls_set(ca_certs=str(m.tls.ca_file) if m.tls.ca_file else None,
                           certfile=str(m.tls.cert_file) if m.tls.cert_file else None,
                           keyfile=str(m.tls.key_file) if m.tls.key_file else None,
                           cert_reqs=ssl.CERT_REQUIRED)
            client.tls_insecure_set(m.tls.insecure)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        m = self.settings.mqtt
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer",
                                        daemon=True)
        self._writer.start()
        if m.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = int(m.session_expiry)
            props.ReceiveMaximum = m.receive_maximum
            self._client.connect_async(m.host, m.port, int(m.keepalive), clean_start=False,
                                       properties=props)
        else:
            self._client.connect_async(m.host, m.port, int(m.keepalive))
        self._client.loop_start()
        log.info("event=ingest_start broker=%s:%s protocol=%s client_id=%s influx=%s bucket=%s",
                 m.host, m.port, m.protocol, m.client_id, self.settings.influx.url,
                 self.settings.influx.bucket)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop without acknowledging anything unwritten (the broker keeps it for next time)."""
        self._stopping.set()
        if self._writer is not None:
            self._writer.join(timeout)
        with self._ack_lock:
            self._generation += 1  # nothing received so far is acknowledged any more
        self._client.disconnect()
        self._client.loop_stop()
        self._influx.close()  # type: ignore[no-untyped-call]
        self._catalogs.close()
        log.info("event=ingest_stop %s", " ".join(f"{k}={v}" for k, v in self.status().items()))

    def run(self) -> None:
        self.start()
        try:
            self._stopping.wait()
        finally:
            self.stop()

    def request_stop(self) -> None:
        """Ask `run()` to return (from a signal handler or another thread)."""
        self._stopping.set()

    def status(self) -> dict[str, int | bool]:
        with self._count_lock:
            counters: dict[str, int | bool] = dict(self._counters)
        counters["dead_lettered"] = self._dead.count
        counters["pending"] = self._queue.qsize()
        counters["catalogs"] = len(self._catalogs)
        counters["connected"] = self._connected
        return counters

    def _count(self, key: str, n: int = 1) -> None:
        with self._count_lock:
            self._counters[key] += n

    # ------------------------------------------------------------------------ MQTT side

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            log.warning("event=mqtt_connect_failed reason=%s", reason)
            return
        self._connected = True
        filters = subscriptions(self.settings)
        client.subscribe([(f, 1) for f in filters])
        log.info("event=mqtt_connected session_present=%s subscriptions=%s",
                 flags.session_present, ",".join(filters))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any,
                       flags: mqtt.DisconnectFlags, reason: ReasonCode,
                       properties: Properties | None) -> None:
        with self._ack_lock:
            self._generation += 1
        self._connected = False
        if not self._stopping.is_set():
            log.warning("event=mqtt_disconnected reason=%s", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._count("received")
        payload = bytes(msg.payload)
        item = _Item(msg.mid, msg.qos, self._generation, msg.topic, payload)
        try:
            message = decode(msg.topic, payload, root=self.settings.mqtt.root)
            if isinstance(message, PointCatalog):
                if self._catalogs.add(message):
                    self._count("catalogs_added")
                    log.info("event=catalog site=%s gateway=%s catalog=%s points=%d",
                             message.site, message.gateway, message.catalog,
                             len(message.points))
            else:
                item.lines = [line.to_line_protocol()
                              for line in message_lines(message, self._catalogs.get)]
        except (ContractError, UnknownCatalog) as exc:
            item.dead_reason = str(exc)
        except Exception as exc:  # a bug must not stop the stream; keep the evidence
            log.exception("event=ingest_bug topic=%s", msg.topic)
            item.dead_reason = f"internal error: {type(exc).__name__}: {exc}"
        self._queue.put(item)

    # ------------------------------------------------------------------------ writer side

    def _collect(self) -> list[_Item]:
        influx = self.settings.influx
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        items = [first]
        points = len(first.lines)
        deadline = time.monotonic() + influx.flush_interval
        while points < influx.batch_size and not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                item = self._queue.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            items.append(item)
            points += len(item.lines)
        return items

    def _write_loop(self) -> None:
        while not self._stopping.is_set():
            items = self._collect()
            if not items:
                continue
            try:
                self._process(items)
            except _Stopping:
                return
            except Exception:
                log.exception("event=writer_bug")  # unacknowledged: redelivered after restart
                self._stopping.set()
                return

    def _process(self, items: list[_Item]) -> None:
        lines = [line for item in items if item.dead_reason is None for line in item.lines]
        if lines:
            try:
                self._write(lines)
            except ApiException as exc:  # rejected (4xx): find the messages at fault
                log.warning("event=write_rejected status=%s reason=%s points=%d",
                            exc.status, _api_reason(exc), len(lines))
                for item in items:
                    if item.dead_reason is None and item.lines:
                        try:
                            self._write(item.lines)
                        except ApiException as one:
                            item.dead_reason = (f"database rejected the points: {one.status} "
                                                f"{_api_reason(one)}")
        now = self._clock()
        for item in items:
            if item.dead_reason is not None:
                self._dead.add(item.topic, item.payload, item.dead_reason, now)
                log.warning("event=dead_letter topic=%s reason=%s", item.topic,
                            item.dead_reason[:300])
            else:
                self._count("written_points", len(item.lines))
                self._count("written_messages")
        self._ack(items)

    def _write(self, lines: Sequence[str]) -> None:
        """Write until the database accepts; ApiException for a rejection (not retryable);
        _Stopping if the service stops first."""
        influx = self.settings.influx

        def before_sleep(state: RetryCallState) -> None:
            self._count("write_retries")
            exc = state.outcome.exception() if state.outcome is not None else None
            log.warning("event=write_retry attempt=%d error=%s", state.attempt_number,
                        _short(exc))

        def sleep(seconds: float) -> None:
            if self._stopping.wait(seconds):
                raise _Stopping

        retrying = Retrying(
            retry=retry_if_exception(retryable),
            wait=wait_exponential(multiplier=0.2, max=influx.retry_max_wait),
            sleep=sleep, before_sleep=before_sleep, reraise=True)
        retrying(self._write_api.write, bucket=influx.bucket, org=influx.org, record=list(lines))

    def _ack(self, items: list[_Item]) -> None:
        with self._ack_lock:
            for item in items:
                if item.generation != self._generation:
                    self._count("not_acked_reconnected")
                    continue
                self._client.ack(item.mid, item.qos)
                self._count("acked")


def _api_reason(exc: ApiException) -> str:
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body)
    return body[:300].replace("\n", " ")


def _short(exc: BaseException | None) -> str:
    return "" if exc is None else f"{type(exc).__name__}: {str(exc)[:200]}".replace("\n", " ")
