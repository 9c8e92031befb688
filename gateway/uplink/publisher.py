"""The MQTT uplink: samples and alarm events → outbox → broker, at least once, live first.

Data path (the event loop never touches the disk):
- `on_samples(batch)` runs the exception filter (pure, in memory) and queues what passed;
  `on_alarm_events(events)` queues the events and wakes the committer at once.
- The committer task drains that queue into the outbox and commits, in `asyncio.to_thread`:
  at least every `commit_interval` (≤ 1 s, what a power cut can lose), at once for alarm
  events. Telemetry sequence numbers come from `Outbox.next_seq` in the same worker, so a
  number is committed together with the batch that carries it (the outbox's lock, and its
  fsync, are only ever taken by worker threads).
- While connected, the pump takes committed messages with `replay.take` (live first, backlog
  paced by `ReplayPacer`; the SELECT runs in a worker thread too), publishes them with QoS 1
  and acknowledges a message in the outbox only when its PUBACK arrives. After a reconnect
  `Outbox.start_session` hands out everything unacknowledged again: at-least-once; a duplicate
  carries the same `seq`, the ingest's duplicate key.

Why paho's own network thread (`loop_start`) rather than aiomqtt: paho-mqtt 2 is the one
dependency (aiomqtt would add a second, and wraps paho anyway); its thread does the socket I/O,
keepalive pings and TLS, so a slow broker or TLS handshake never runs on the event loop. paho's
callbacks (`on_connect`, `on_disconnect`, `on_publish`) only hand their result to the event
loop with `call_soon_threadsafe`; all our state is touched by the event loop alone, so there is
no race between `publish()` returning a mid and its PUBACK. Each connection attempt gets a
fresh client with `reconnect_on_failure=False`: we reconnect ourselves (bounded exponential
backoff with jitter, forever), so paho never re-sends its own in-flight copies behind the
outbox's back, and each connect re-reads the password file and re-arms the last will.

On every connect: last will = retained `offline` GatewayState, then a retained `online` birth,
the PointCatalog and the retained ActiveAlarmsSnapshot (all through the outbox, as snapshots
that replace older unpublished ones). `close()` publishes `offline`, disconnects cleanly and
commits the outbox; a cancelled `run()` (the process dying) drops the connection without a
DISCONNECT, so the broker publishes the last will.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway import __version__
from gateway.alarms.events import AlarmEvent, AlarmView
from gateway.clock import Clock
from gateway.field.sample import Sample
from gateway.uplink.contract import (
    MAX_BATCH_ROWS,
    ActiveAlarm,
    ActiveAlarmsSnapshot,
    AlarmEventMessage,
    Channel,
    ContractError,
    GatewayState,
    Message,
    MessageKind,
    OutboxStatus,
    PointCatalog,
    PointMeta,
    TelemetryBatch,
    Topic,
    encode,
)
from gateway.uplink.exception_filter import ExceptionFilter, ExceptionPolicy
from gateway.uplink.outbox import Outbox, OutboxError
from gateway.uplink.replay import ReplayPacer, take
from gateway.uplink.settings import UplinkSettings

log = logging.getLogger("roomwarden.uplink")

MAX_QUEUED = 20_000
"""Items (batches, events, snapshots) waiting in memory for the committer; beyond this the
oldest telemetry is dropped (only reached if commits keep failing)."""
CLOSE_TIMEOUT = 3.0
"""How long `close()` waits for the offline state's PUBACK."""


@dataclass(frozen=True, slots=True)
class UplinkStatus:
    """For the panel, /metrics and the health view."""

    connected: bool
    outbox: OutboxStatus
    dropped: dict[MessageKind, int]
    """Dropped by the outbox to stay within its disk budget, per kind, since install."""
    published: int
    """Messages the broker acknowledged since start."""
    queued: int
    """Waiting in memory for the next commit."""
    rejected: int
    """Samples and events that broke the contract and were not sent (logged)."""
    connects: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class _Item:
    kind: MessageKind
    payload: list[Sample] | Message
    produced: int


class _Session:
    """One connection attempt: a fresh paho client and what its callbacks report."""

    def __init__(self, client: mqtt.Client, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self.connack: asyncio.Future[str | None] = loop.create_future()
        """None on success, else the broker's refusal."""
        self.lost = asyncio.Event()
        self.inflight: dict[int, int] = {}
        """paho mid → outbox id."""


class Uplink:
    def __init__(self, settings: UplinkSettings, site: str, gateway_id: str, state_dir: Path,
                 clock: Clock, catalog_points: Mapping[str, PointMeta]) -> None:
        """`catalog_points`: point id → PointMeta (device, room, quantity, unit), one entry per
        point the gateway reports — the PointCatalog, and the quantities the per-quantity
        deadbands need."""
        self.settings = settings
        self.site = site
        self.gateway_id = gateway_id
        self.clock = clock
        self.client_id = settings.client_id or f"roomwarden-{gateway_id}"
        self._topics = {ch: str(Topic(site, gateway_id, ch, settings.root)) for ch in Channel}
        path = Path(settings.outbox.path)
        self.outbox = Outbox(state_dir / path if not path.is_absolute() else path, clock=clock,
                             budget_bytes=int(settings.outbox.budget_mb * 1024 * 1024),
                             commit_interval=settings.outbox.commit_interval,
                             immediate=())  # the committer commits alarm events at once
        self._points = dict(catalog_points)
        self._catalog = PointCatalog.build(site=site, gateway=gateway_id,
                                           produced=clock.now_ns(), points=self._points)
        exc = settings.exception
        self.filter = ExceptionFilter(
            ExceptionPolicy(deadband=exc.deadband, max_interval=exc.max_interval,
                            deadband_by_quantity=dict(exc.deadbands),
                            deadband_by_point=dict(exc.point_deadbands)),
            clock, {p: m.quantity for p, m in self._points.items()})
        self.pacer = ReplayPacer(clock, messages_per_s=settings.replay.messages_per_s,
                                 bytes_per_s=settings.replay.bytes_per_s)
        self.boot_ns = clock.now_ns()
        self._queue: list[_Item] = []
        self._qlock = threading.Lock()
        self._drain_lock = threading.RLock()
        self._snapshot: ActiveAlarmsSnapshot | None = None
        self._wake_commit: asyncio.Event | None = None
        self._wake_pump: asyncio.Event | None = None
        self._session: _Session | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._closed = False
        self._published = 0
        self._rejected = 0
        self._connects = 0
        self._last_error: str | None = None
        self._outbox_status = OutboxStatus(depth=0, bytes=0, budget=self.outbox.budget_bytes)
        self._dropped: dict[MessageKind, int] = dict.fromkeys(MessageKind, 0)
        self._refresh_status()

    # ------------------------------------------------------------------ the data path (loop)

    def on_samples(self, batch: list[Sample]) -> None:
        """A poll cycle's samples (a daemon sink). Cheap: filter + append, no I/O."""
        passed = self.filter.filter(batch)
        if passed:
            self._enqueue(_Item(MessageKind.TELEMETRY, passed, self.clock.now_ns()))

    def on_alarm_events(self, events: Iterable[AlarmEvent]) -> None:
        """Alarm-manager events (what `Gateway.evaluate_once` returns); committed at once."""
        queued = False
        for event in events:
            try:
                msg = AlarmEventMessage.from_event(event, site=self.site,
                                                   gateway=self.gateway_id)
            except ContractError as exc:
                self._reject(f"alarm event seq={event.seq}: {exc}")
                continue
            self._enqueue(_Item(MessageKind.ALARM, msg, self.clock.now_ns()))
            queued = True
        if queued and self._wake_commit is not None:
            self._wake_commit.set()

    def set_active_alarms(self, alarms: Iterable[AlarmView], seq: int) -> None:
        """The annunciated alarms now (`core.alarms.active()`) and the last event's seq they
        reflect; published retained, replacing any older unpublished snapshot."""
        items: list[ActiveAlarm] = []
        for view in alarms:
            try:
                items.append(ActiveAlarm.from_view(view))
            except ContractError as exc:
                self._reject(f"active alarm {view.key}: {exc}")
        try:
            snap = ActiveAlarmsSnapshot(site=self.site, gateway=self.gateway_id,
                                        ts=self.clock.now_ns(), seq=seq, alarms=tuple(items))
        except ValueError as exc:  # pydantic ValidationError (e.g. too many alarms)
            self._reject(f"active alarms snapshot: {exc}")
            return
        self._snapshot = snap
        self._enqueue(_Item(MessageKind.STATE, snap, snap.ts))
        if self._wake_commit is not None:
            self._wake_commit.set()

    def _enqueue(self, item: _Item) -> None:
        with self._qlock:
            self._queue.append(item)
            if len(self._queue) > MAX_QUEUED:
                for i, old in enumerate(self._queue):
                    if old.kind is MessageKind.TELEMETRY:
                        del self._queue[i]
                        self._rejected += 1
                        break

    def _reject(self, why: str) -> None:
        self._rejected += 1
        log.warning("event=uplink_rejected reason=%r", why)

    # ------------------------------------------------------------------ committing (thread)

    def _drain(self) -> None:
        """Queue → outbox → commit. Runs in a worker thread (serialized)."""
        with self._drain_lock:
            with self._qlock:
                items, self._queue = self._queue, []
            try:
                for item in items:
                    self._store(item)
                self.outbox.flush()
            except OutboxError as exc:  # the outbox keeps what it could not commit, bounded
                self._last_error = str(exc)
                log.error("event=outbox_commit_failed error=%r", str(exc))
            self._refresh_status()

    def _store(self, item: _Item) -> None:
        if isinstance(item.payload, list):
            samples = item.payload
            for start in range(0, len(samples), MAX_BATCH_ROWS):
                self._store_telemetry(samples[start:start + MAX_BATCH_ROWS], item.produced)
            return
        msg = item.payload
        channel = Channel.ALARMS if isinstance(msg, AlarmEventMessage) else (
            Channel.META if isinstance(msg, PointCatalog) else
            Channel.STATE if isinstance(msg, GatewayState) else Channel.ALARMS_ACTIVE)
        retained = channel in (Channel.STATE, Channel.ALARMS_ACTIVE)
        try:
            payload = encode(msg)
        except ContractError as exc:
            self._reject(f"{channel.value}: {exc}")
            return
        self._put(item.kind, channel, payload, retained, item.produced)

    def _store_telemetry(self, samples: list[Sample], produced: int) -> None:
        try:
            batch = TelemetryBatch.from_samples(site=self.site, gateway=self.gateway_id,
                                                seq=0, produced=produced, samples=samples,
                                                catalog=self._catalog.catalog)
        except ContractError:  # find the offending samples, send the rest
            good = []
            for s in samples:
                try:
                    TelemetryBatch.from_samples(site=self.site, gateway=self.gateway_id, seq=0,
                                                produced=produced, samples=[s])
                    good.append(s)
                except ContractError as exc:
                    self._reject(f"sample {s.point!r}: {exc}")
            if not good:
                return
            samples = good
        seq = self.outbox.next_seq("telemetry")
        batch = TelemetryBatch.from_samples(site=self.site, gateway=self.gateway_id, seq=seq,
                                            produced=produced, samples=samples,
                                            catalog=self._catalog.catalog)
        self._put(MessageKind.TELEMETRY, Channel.TELEMETRY, encode(batch), False, produced)

    def _put(self, kind: MessageKind, channel: Channel, payload: bytes, retained: bool,
             created: int) -> None:
        try:
            self.outbox.put(kind, self._topics[channel], payload, qos=1, retain=retained,
                            replace=retained, created_ns=created)
        except OutboxError as exc:  # queued in the outbox's memory; the next commit retries
            self._last_error = str(exc)

    def _refresh_status(self) -> None:
        try:
            self._outbox_status = self.outbox.status()
            self._dropped = self.outbox.dropped()
        except Exception as exc:  # status must never break the data path
            self._last_error = f"status: {exc}"

    async def _committer(self) -> None:
        wake = self._wake_commit
        assert wake is not None
        interval = self.settings.outbox.commit_interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), interval)
            wake.clear()
            try:
                await asyncio.to_thread(self._drain)
            except Exception:
                log.exception("event=uplink_commit_failed")
            if self._wake_pump is not None:
                self._wake_pump.set()

    # ------------------------------------------------------------------ connection (loop)

    async def run(self) -> None:
        """Commit and publish forever, reconnecting with bounded backoff. Raises only
        CancelledError (cancel = the process dying: no flush; use `close()` to stop cleanly)."""
        self._run_task = asyncio.current_task()
        self._wake_commit = asyncio.Event()
        self._wake_pump = asyncio.Event()
        committer = asyncio.create_task(self._committer(), name="uplink-commit")
        try:
            delay = self.settings.reconnect_min
            while not self._closed:
                try:
                    up = await self._connect_and_pump()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    up = False
                    self._last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("event=uplink_error error=%r", self._last_error)
                if self._closed:
                    break
                if up:
                    delay = self.settings.reconnect_min
                wait = delay * random.uniform(0.8, 1.2)
                log.info("event=uplink_reconnect_wait seconds=%.2f", wait)
                await asyncio.sleep(wait)
                delay = min(self.settings.reconnect_max, delay * 2)
        finally:
            committer.cancel()
            session, self._session = self._session, None
            if session is not None:
                _drop(session.client)

    def _new_client(self, loop: asyncio.AbstractEventLoop, password: str | None) -> _Session:
        s = self.settings
        v5 = s.protocol == "5"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=MQTTProtocolVersion.MQTTv5 if v5
                             else MQTTProtocolVersion.MQTTv311,
                             clean_session=None if v5 else True,
                             reconnect_on_failure=False)
        session = _Session(client, loop)
        client.max_inflight_messages_set(s.max_inflight)
        offline = GatewayState(site=self.site, gateway=self.gateway_id, status="offline",
                               ts=self.clock.now_ns())
        client.will_set(self._topics[Channel.STATE], encode(offline), qos=1, retain=True)
        if s.username is not None:
            client.username_pw_set(s.username, password)
        if s.tls is not None:
            client.tls_set(ca_certs=s.tls.ca_file, certfile=s.tls.cert_file,
                           keyfile=s.tls.key_file)
            client.tls_insecure_set(s.tls.insecure)

        def on_connect(_c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
            result = None if not rc.is_failure else str(rc)
            loop.call_soon_threadsafe(_resolve, session.connack, result)

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
            loop.call_soon_threadsafe(session.lost.set)
            loop.call_soon_threadsafe(_resolve, session.connack, f"disconnected: {rc}")

        def on_publish(_c: mqtt.Client, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
            loop.call_soon_threadsafe(self._on_puback, session, mid, rc.is_failure, str(rc))

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        return session

    def _read_password(self) -> str | None:
        if self.settings.password_file is None:
            return None
        return Path(self.settings.password_file).read_text(encoding="utf-8").strip()

    async def _connect_and_pump(self) -> bool:
        """One connection: returns whether it got as far as a CONNACK."""
        s = self.settings
        loop = asyncio.get_running_loop()
        password = await asyncio.to_thread(self._read_password)
        session = self._new_client(loop, password)
        self._session = session
        client = session.client
        try:
            await asyncio.to_thread(client.connect, s.broker, s.port, round(s.keepalive))
            client.loop_start()
            refused = await asyncio.wait_for(asyncio.shield(session.connack),
                                             max(10.0, s.keepalive))
            if refused is not None:
                raise ConnectionError(f"broker refused: {refused}")
            self._connects += 1
            self._last_error = None
            log.info("event=uplink_connected broker=%s port=%d client_id=%s", s.broker, s.port,
                     self.client_id)
            await asyncio.to_thread(self._start_session)
            await self._pump(session)
            log.warning("event=uplink_disconnected broker=%s", s.broker)
            return True
        finally:
            if self._session is session:
                self._session = None
            if not session.lost.is_set():
                _drop(client)
            await asyncio.to_thread(_join, client)

    def _start_session(self) -> None:
        """On connect (worker thread): everything stored becomes backlog, then birth,
        catalog and the active-alarm snapshot go out live."""
        with self._drain_lock:
            self.outbox.start_session()
            self._refresh_status()
            self._queue_births()
            self._drain()

    def _queue_births(self) -> None:
        now = self.clock.now_ns()
        birth = GatewayState(site=self.site, gateway=self.gateway_id, status="online", ts=now,
                             software=__version__, catalog=self._catalog.catalog,
                             boot=self.boot_ns, outbox=self._outbox_status,
                             dropped=self._dropped)
        catalog = self._catalog.model_copy(update={"produced": now})
        items = [_Item(MessageKind.STATE, birth, now), _Item(MessageKind.STATE, catalog, now)]
        if self._snapshot is not None:
            items.append(_Item(MessageKind.STATE, self._snapshot, now))
        with self._qlock:
            self._queue[:0] = items

    async def _pump(self, session: _Session) -> None:
        wake = self._wake_pump
        assert wake is not None
        client = session.client
        window_max = self.settings.max_inflight
        while not session.lost.is_set():
            wake.clear()
            window = window_max - len(session.inflight)
            batch = await asyncio.to_thread(take, self.outbox, self.pacer, window) \
                if window > 0 else []
            if session.lost.is_set():
                return
            for m in batch:
                info = client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:  # connection gone: re-sent next session
                    return
                session.inflight[info.mid] = m.id
            if batch and len(batch) == window:
                timeout = 0.5  # window full: a PUBACK wakes us
            elif batch:
                continue  # more may be ready at once
            else:
                timeout = min(0.5, max(0.01, self.pacer.delay()))
            lost = asyncio.create_task(session.lost.wait())
            woken = asyncio.create_task(wake.wait())
            try:
                await asyncio.wait((lost, woken), timeout=timeout,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                lost.cancel()
                woken.cancel()

    def _on_puback(self, session: _Session, mid: int, failed: bool, reason: str) -> None:
        outbox_id = session.inflight.pop(mid, None)
        if outbox_id is None:
            return
        if failed:  # MQTT 5 refusal (e.g. not authorized): kept, re-sent next session
            self._last_error = f"publish refused: {reason}"
            log.warning("event=uplink_publish_refused reason=%s", reason)
        else:
            self.outbox.ack([outbox_id])
            self._published += 1
        if self._wake_pump is not None:
            self._wake_pump.set()

    # ------------------------------------------------------------------ status and close

    def status(self) -> UplinkStatus:
        """Never blocks: the outbox figures are refreshed by the committer."""
        session = self._session
        with self._qlock:
            queued = len(self._queue)
        return UplinkStatus(
            connected=session is not None and session.connack.done()
            and session.connack.result() is None and not session.lost.is_set(),
            outbox=self._outbox_status, dropped=dict(self._dropped),
            published=self._published, queued=queued, rejected=self._rejected,
            connects=self._connects, last_error=self._last_error)

    async def close(self) -> None:
        """Stop cleanly: retained `offline` state (waits briefly for its PUBACK), DISCONNECT,
        then commit everything queued and close the outbox."""
        if self._closed:
            return
        self._closed = True
        session = self._session
        if session is not None and not session.lost.is_set() and session.connack.done() \
                and session.connack.result() is None:
            offline = GatewayState(site=self.site, gateway=self.gateway_id, status="offline",
                                   ts=self.clock.now_ns())
            info = session.client.publish(self._topics[Channel.STATE], encode(offline),
                                          qos=1, retain=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.to_thread(info.wait_for_publish, CLOSE_TIMEOUT),
                                       CLOSE_TIMEOUT + 1)
            session.client.disconnect()
        task = self._run_task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.to_thread(self._close_outbox)

    def _close_outbox(self) -> None:
        self._drain()
        with self._drain_lock:
            self.outbox.close()


def _resolve(future: asyncio.Future[str | None], result: str | None) -> None:
    if not future.done():
        future.set_result(result)


def _drop(client: mqtt.Client) -> None:
    """Close the socket without a DISCONNECT: the broker publishes the last will, and paho's
    thread (which does not reconnect) ends."""
    sock = client.socket()
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _join(client: mqtt.Client) -> None:
    thread = client._thread  # paho's network thread; ends by itself once the socket is gone
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout=5.0)
