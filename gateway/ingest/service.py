"""The ingest service: contract messages from MQTT into InfluxDB, nothing lost, nothing doubled.

Flow (DESIGN principle 5):

* A paho-mqtt 2 client with a persistent session (MQTT 3.1.1 `clean_session=False`, MQTT 5
  `clean_start=False` plus a session expiry) subscribes at QoS 1 to `telemetry`, `meta`,
  `alarms` and `state` of every gateway. With MQTT 5 and a `shared_group`, `telemetry`,
  `alarms` and `state` go through shared subscriptions `$share/<group>/<root>/+/+/<channel>`,
  so several ingest instances split the stream, while `meta` is subscribed plainly by every
  instance: each one needs every point catalog, as a batch naming one may reach any instance.
* `manual_ack=True`: paho does not acknowledge a PUBLISH on its own. The network thread decodes
  each message (`contract.decode`), remembers catalogs (`meta`) and turns the rest into line
  protocol (`schema`); per-gateway queues (`gateway.ingest.fairqueue`: alarms and states
  first, gateways in turn, bounded per gateway) hand them to one writer thread.
* The writer collects messages until `batch_size` points or `flush_interval`, drops those
  already written (`gateway.ingest.dedup`: the contract's duplicate keys, so a redelivery is
  acknowledged, not written again), writes the rest with influxdb-client's synchronous write
  API and retries (tenacity, exponential backoff) on 429, 5xx and connection errors for as long
  as it takes. Only when the database accepted the batch are its keys recorded and its messages
  acknowledged. While the database is down nothing is acknowledged: the broker keeps the
  messages (and redelivers them after a reconnect).
* A telemetry batch naming a catalog this instance has not seen is *parked*, unacknowledged,
  and the ingest asks the gateway for its catalog (`request_state` on `<root>/<site>/<gw>/cmd`,
  at most every `request_state_interval`); when the catalog arrives the batch is written. Only
  after `catalog_wait` (or when its gateway holds more than its share of the park limit:
  `writer.shed`) does it go to the dead-letter log, payload included, for a replay.
* Malformed messages, a batch with a point twice at one time, points the database rejects
  (4xx), messages past a gateway's series budget (`gateway.ingest.budget`) and the telemetry of
  a gateway clock before 2020, 5 min ahead or far back (`gateway.ingest.timeline`; its alarm
  events and states are written at receipt) are dead-lettered, acknowledged: no stream blocks.
* A message received before a disconnect is never acknowledged after it (its packet id may
  name another message by then); the broker redelivers it and the duplicate is recognised.
* End-to-end acknowledgement: after the database accepted a batch or event (or it was a
  duplicate, or was dead-lettered) its delivery sequence counts as done; per gateway and
  outbox stream the ingest publishes the highest contiguous one, retained, QoS 1, as a
  `DeliveryAck` on `<root>/<site>/<gateway>/ack` (`gateway.ingest.watermark`), and publishes
  every gateway's latest watermark again on each connect (a broker without persistence forgets
  retained messages). The gateway keeps each outbox entry until the watermark covers it.
* The writer side (batching, catalogs, duplicates, retries, dead letters) is
  `gateway.ingest.writer`; this module is the MQTT side, the acknowledgements, the lifecycle
  and the optional `/healthz` and `/metrics` (`http:`, `gateway.ingest.opshttp`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.contract.wire import (
    Channel,
    ContractError,
    DeliveryAck,
    GatewayState,
    IncidentChunk,
    PointCatalog,
    RequestState,
    TelemetryBatch,
    Topic,
    decode,
    encode,
    topic_filter,
)
from gateway.ingest.catalogs import CatalogStore
from gateway.ingest.dedup import seen_key
from gateway.ingest.eventlabels import shaper
from gateway.ingest.gatewaywatch import GatewayWatch
from gateway.ingest.items import Item, delivery_of, repeated_row
from gateway.ingest.metrics import IngestMetrics
from gateway.ingest.opshttp import OpsEndpoint
from gateway.ingest.schema import UnknownCatalog, message_lines, restamped
from gateway.ingest.settings import IngestSettings
from gateway.ingest.staterequests import RequestThrottle
from gateway.ingest.timeline import Timeline
from gateway.ingest.watermark import AckStore, Watermark
from gateway.ingest.writer import IngestWriter
from gateway.mqtt_client import ClientOptions, TlsOptions, build_client

log = logging.getLogger("roomwarden.ingest")

CHANNELS = (Channel.TELEMETRY, Channel.META, Channel.ALARMS, Channel.STATE,
            Channel.INCIDENTS)  # incidents: issue 12
"""What the ingest subscribes to (`alarms/active` is a dashboard's business, not history's)."""
UNSHARED = frozenset({Channel.META, Channel.INCIDENTS})
"""Subscribed plainly by every instance even with a shared group: every instance needs every
point catalog, and every chunk of an incident record must meet its other chunks in one store
(issue 12: each instance keeps every record; instances on one host may share the file)."""

def subscriptions(settings: IngestSettings) -> list[str]:
    m = settings.mqtt
    shared = m.protocol == "5" and m.shared_group
    return [f"$share/{m.shared_group}/{topic_filter(ch, root=m.root)}"
            if shared and ch not in UNSHARED else topic_filter(ch, root=m.root)
            for ch in CHANNELS]


class IngestService:
    """`run()` blocks until `stop()`; `start()`/`stop()` for embedding (and tests)."""

    def __init__(self, settings: IngestSettings, *,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.settings = settings
        self._clock = clock
        self._catalogs = CatalogStore(settings.catalog_store)
        self._acks = AckStore(settings.watermark_store)
        self._stopping = threading.Event()
        self._ack_lock = threading.Lock()
        self._generation = 0
        self._connected = False
        self._subscribed = False
        """The broker granted this connection's subscriptions (SUBACK)."""
        self._requests = RequestThrottle(settings.request_state_interval)
        self._counters = {"received": 0, "written_points": 0, "written_messages": 0,
                          "acked": 0, "write_retries": 0, "write_errors": 0,
                          "not_acked_reconnected": 0, "catalogs_added": 0, "duplicates": 0,
                          "requested_state": 0, "parked_total": 0, "acks_published": 0}
        self._count_lock = threading.Lock()
        self.metrics = IngestMetrics(
            queue_depth=lambda: float(self._writer.pending()),
            parked=lambda: float(self._writer.parked_count),
            connected=lambda: float(self._connected),
            catalogs=lambda: float(len(self._catalogs)))
        self._watch = GatewayWatch(self.metrics)
        self._writer = IngestWriter(
            settings, catalogs=self._catalogs, metrics=self.metrics, count=self._count,
            stopping=self._stopping, generation=lambda: self._generation,
            request_state=self.request_state, done=self._done, clock=clock,
            delivered=self._acks.covers)
        self._timeline = Timeline(settings, self._writer.seen.received_at)  # gateway clocks
        self._http: OpsEndpoint | None = None
        if settings.http is not None:
            self._http = OpsEndpoint(settings.http.bind, settings.http.port,
                                     health=self.health, metrics=self.metrics.exposition,
                                     content_type=self.metrics.content_type)
        self._shape = shaper(settings.influx.store)  # issue 13: the store's shape of events
        self._client = self._make_client()

    # ------------------------------------------------------------------------ lifecycle

    def _make_client(self) -> mqtt.Client:
        m = self.settings.mqtt
        tls = None if m.tls is None else TlsOptions(
            str(m.tls.ca_file) if m.tls.ca_file else None,
            str(m.tls.cert_file) if m.tls.cert_file else None,
            str(m.tls.key_file) if m.tls.key_file else None, m.tls.insecure)
        client = build_client(ClientOptions(
            client_id=m.client_id, protocol=m.protocol, clean_session=False,
            username=m.username,
            password=self.settings.mqtt_password() if m.username is not None else None,
            tls=tls, manual_ack=True, reconnect=(1.0, 30.0)))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    @property
    def http_port(self) -> int | None:
        """The port of /healthz and /metrics (None without `http:`)."""
        return self._http.port if self._http is not None else None

    @property
    def failed(self) -> bool:
        """The writer stopped on a bug (the process should exit non-zero to be restarted)."""
        return self._writer.failed

    def start(self) -> None:
        m = self.settings.mqtt
        if self._http is not None:
            self._http.start()
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
        log.info("event=ingest_start broker=%s:%s protocol=%s client_id=%s database=%r"
                 " http=%s", m.host, m.port, m.protocol, m.client_id,
                 self._writer.database.describe(), self.http_port)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop without acknowledging anything unwritten (the broker keeps it for next time)."""
        self._stopping.set()
        self._writer.join(timeout)
        with self._ack_lock:
            self._generation += 1  # nothing received so far is acknowledged any more
        self._client.disconnect()
        self._client.loop_stop()
        if self._http is not None:
            self._http.stop()
        self._writer.close()
        self._catalogs.close()
        self._acks.close()
        self._timeline.close()
        log.info("event=ingest_stop %s", " ".join(f"{k}={v}" for k, v in self.status().items()))

    def run(self) -> None:
        self.start()
        try:
            self._stopping.wait()
        finally:
            self.stop()

    @property
    def stopping(self) -> threading.Event:
        """Set when the service is asked to stop (or its writer failed)."""
        return self._stopping

    def liveness(self) -> str | None:
        """None while the service makes progress; else why not (systemd's watchdog is then
        withheld and the service restarted)."""
        return self._writer.liveness()

    def request_stop(self) -> None:
        """Ask `run()` to return (from a signal handler or another thread)."""
        self._stopping.set()

    def status(self) -> dict[str, int | bool]:
        with self._count_lock:
            counters: dict[str, int | bool] = dict(self._counters)
        counters["dead_lettered"] = self._writer.dead.count
        counters["series_refused"] = self._writer.refused
        counters["pending"] = self._writer.pending()
        counters["parked"] = self._writer.parked_count
        counters["catalogs"] = len(self._catalogs)
        counters["connected"] = self._connected
        counters["subscribed"] = self._subscribed
        return counters

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy: connected to the broker, and the last database write succeeded (or there
        is nothing to write)."""
        status = self.status()
        pending = int(status["pending"])
        last_write_ok = self._writer.last_write_ok
        ok = bool(self._connected) and (last_write_ok is not False or pending == 0)
        return ok, {"connected": self._connected, "last_write_ok": last_write_ok,
                    "pending": pending, "parked": self._writer.parked_count, "status": status}

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
        self._subscribed = False
        filters = subscriptions(self.settings)
        client.subscribe([(f, 1) for f in filters])
        log.info("event=mqtt_connected session_present=%s subscriptions=%s",
                 flags.session_present, ",".join(filters))
        try:  # a broker without persistence forgot the retained watermarks: publish them again
            self._publish_acks(self._acks.latest())
        except Exception:
            log.exception("event=ack_republish_failed")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any,
                       flags: mqtt.DisconnectFlags, reason: ReasonCode,
                       properties: Properties | None) -> None:
        with self._ack_lock:
            self._generation += 1
        self._connected = self._subscribed = False
        if not self._stopping.is_set():
            log.warning("event=mqtt_disconnected reason=%s", reason)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reasons: list[ReasonCode], properties: Properties | None) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.warning("event=mqtt_subscribe_refused reasons=%s", ",".join(refused))
        else:
            log.info("event=mqtt_subscribed filters=%d", len(reasons))
        self._subscribed = not refused

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._count("received")
        payload = bytes(msg.payload)
        item = Item(msg.mid, msg.qos, self._generation, msg.topic, payload, time.monotonic())
        with contextlib.suppress(ContractError):
            item.channel = Topic.parse(msg.topic, self.settings.mqtt.root).channel.value
        try:
            message = decode(msg.topic, payload, root=self.settings.mqtt.root)
            if isinstance(message, PointCatalog):
                if self._catalogs.add(message):
                    self._count("catalogs_added")
                    log.info("event=catalog site=%s gateway=%s catalog=%s points=%d",
                             message.site, message.gateway, message.catalog,
                             len(message.points))
            else:
                item.key = seen_key(message)
                item.delivery, item.floor = delivery_of(message)
                now_ns = time.time_ns()
                if isinstance(message, GatewayState):
                    self._watch.observe(message, msg.retain, now_ns)  # clock, duplicate ids
                    if item.floor is not None and message.boot is not None:  # (restored?)
                        self._publish_acks(self._acks.booted(item.floor, message.boot, now_ns))
                again = self._acks.resent(item.delivery, item.key)  # after a watermark reset
                if again is False and item.delivery is not None:  # a number reused: the
                    self._timeline.order.forget(*item.delivery[:2])  # journal went back too
                elif again:  # sent again: a duplicate
                    item.duplicate = True
                    raise _NotWritten
                twice = repeated_row(message)
                placed = twice or self._timeline.place(message, item.key, msg.retain, now_ns)
                if isinstance(placed, str):  # a gateway clock wrong (timecheck), a row twice
                    item.dead_reason, item.dead_kind = placed, "contract" if twice else "clock"
                    raise _NotWritten
                message, item.gateway_ts = placed  # (or at its receive time, in its order)
                if isinstance(message, IncidentChunk):  # issue 12: for the incident store
                    item.incident = message
                try:
                    lines = restamped(message_lines(message, self._catalogs.get), item.gateway_ts)
                    item.lines = [line.to_line_protocol() for line in self._shape(lines)]  # 13
                except UnknownCatalog:
                    assert isinstance(message, TelemetryBatch) and message.catalog is not None
                    item.waiting = (message.site, message.gateway, message.catalog)
                    item.batch = message
                    self.request_state(message.site, message.gateway)
        except _NotWritten:
            pass
        except ContractError as exc:
            item.dead_reason = str(exc)
        except Exception as exc:  # a bug must not stop the stream; keep the evidence
            log.exception("event=ingest_bug topic=%s", msg.topic)
            item.dead_reason = f"internal error: {type(exc).__name__}: {exc}"
            item.dead_kind = "internal"
        self.metrics.received.labels(channel=item.channel).inc()
        self._writer.put(item)

    def request_state(self, site: str, gateway: str) -> bool:
        """Ask a gateway to publish its state, active alarms and point catalog again
        (`request_state` on its `cmd` topic), at most every `request_state_interval`."""
        n = self._requests.take(site, gateway, time.monotonic())
        if n is None:
            return False
        ts = self._clock()
        command = RequestState(id=f"{self.settings.mqtt.client_id}-{n}"[:64], ts=ts,
                               expires=ts + int(self.settings.catalog_wait * 1e9),
                               actor="ingest", action="request_state")
        topic = str(Topic(site, gateway, Channel.CMD, self.settings.mqtt.root))
        self._client.publish(topic, encode(command), qos=1)
        self._count("requested_state")
        log.info("event=request_state site=%s gateway=%s id=%s", site, gateway, command.id)
        return True

    # ------------------------------------------------------------------------ acknowledging

    def _done(self, items: list[Item], now: int) -> None:
        """The writer is done with `items` (written, duplicates or dead-lettered)."""
        self._acknowledge_delivery(items, now)
        self._ack(items)

    def _acknowledge_delivery(self, items: list[Item], now: int) -> None:
        """Everything in `items` is done (written, a duplicate, or dead-lettered): move the
        gateways' watermarks and publish those that moved."""
        done = [item.delivery for item in items if item.delivery is not None]
        floors = [item.floor for item in items if item.floor is not None]
        sent = {item.delivery: item.key for item in items if item.delivery is not None
                and item.key is not None and not item.duplicate}  # (what a reset recognises)
        if done or floors:
            self._publish_acks(self._acks.record(done, floors, now, sent))

    def _publish_acks(self, marks: list[Watermark]) -> None:
        root = self.settings.mqtt.root
        for m in marks:
            ack = DeliveryAck(site=m.site, gateway=m.gateway, ts=self._clock(), stream=m.stream,
                              upto=m.upto, highest=m.highest)
            self._client.publish(str(Topic(m.site, m.gateway, Channel.ACK, root)), encode(ack),
                                 qos=1, retain=True)
            self._count("acks_published")

    def _ack(self, items: list[Item]) -> None:
        with self._ack_lock:
            for item in items:
                if item.generation != self._generation:
                    self._count("not_acked_reconnected")
                    continue
                self._client.ack(item.mid, item.qos)
                self._count("acked")


class _NotWritten(Exception):
    """A message not written: a dead letter as it is (its reason already set), a duplicate."""
