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
DISCONNECT, so the broker publishes the last will. The retained GatewayState is refreshed every
`state_interval` and at once when the devices online or the config identity change (each one a
snapshot too: only the newest unpublished state is kept).

Inbound (subscribed with QoS 1 on every connect, since each connect is a fresh clean session):
- `cmd`: every payload goes to the command inbox (`gateway.operator.inbox`), which checks it
  and carries it out; its `CommandResult` goes on `cmd/result` through the outbox, and a
  `request_state` makes the uplink publish state, catalog and active alarms again.
- `config/set`: the raw payload goes to `on_config_set` on the event loop (verifying the signed
  envelope is its job); `publish_config_status()` answers on the retained `config/status`.
paho's `on_message` only copies topic and payload and hops to the event loop; nothing that
arrives can raise in paho's thread or in the loop.

Publish latency (produced → PUBACK) is kept as a count, a sum and a fixed-bucket histogram in
`UplinkStatus`, O(1) per message, for a Prometheus endpoint.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import random
import re
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
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
from gateway.operator.inbox import CommandInbox
from gateway.uplink.contract import (
    CHANNELS,
    MAX_BATCH_ROWS,
    ActiveAlarm,
    ActiveAlarmsSnapshot,
    AlarmEventMessage,
    Channel,
    CommandResult,
    ConfigStatus,
    ContractError,
    GatewayState,
    Message,
    MessageKind,
    OutboxStatus,
    PointCatalog,
    PointMeta,
    TelemetryBatch,
    Topic,
    channel_of,
    encode,
)
from gateway.uplink.exception_filter import ExceptionFilter, ExceptionPolicy
from gateway.uplink.outbox import Outbox, OutboxError
from gateway.uplink.replay import ReplayPacer, take
from gateway.uplink.settings import UplinkSettings

log = logging.getLogger("roomwarden.uplink")

ALARM_MARK = "alarm_events"
"""Outbox mark: the last alarm event (journal seq) committed to the outbox."""
MAX_QUEUED = 20_000
"""Items (batches, events, snapshots) waiting in memory for the committer; beyond this the
oldest telemetry is dropped (only reached if commits keep failing)."""
CLOSE_TIMEOUT = 3.0
"""How long `close()` waits for the offline state's PUBACK."""
LATENCY_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                                      300.0)
"""Upper bounds (s) of the publish-latency histogram (produced → PUBACK); +Inf is `count`."""
STATE_CHECK = 1.0
"""How often the devices-online figure is compared with the last published state (s)."""

_SHA256 = re.compile(r"[0-9a-f]{64}")


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
    latency_count: int = 0
    """Messages whose PUBACK arrived, with their publish latency (produced → PUBACK)."""
    latency_sum_s: float = 0.0
    latency_buckets: tuple[tuple[float, int], ...] = ()
    """(upper bound s, messages with latency ≤ it) — cumulative, as Prometheus wants."""
    latency_last_s: float | None = None
    commands_received: int = 0
    """Payloads that arrived on `cmd` (every one, good or bad)."""
    commands_bad: int = 0
    """…of them that broke the contract (logged; answered when their id was readable)."""
    commands_duplicate: int = 0
    """…of them already seen (same id): answered again, not applied again."""
    commands_refused: int = 0
    """…answered ok=false (expired, retained, refused by the handler, failed)."""
    config_sets: int = 0
    """Payloads that arrived on `config/set` (handed on unparsed)."""


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
        self.inflight: dict[int, tuple[int, int]] = {}
        """paho mid → (outbox id, when the message was produced, ns)."""


class Uplink:
    def __init__(self, settings: UplinkSettings, site: str, gateway_id: str, state_dir: Path,
                 clock: Clock, catalog_points: Mapping[str, PointMeta], *,
                 devices: Callable[[], tuple[int, int]] | None = None,
                 on_config_set: Callable[[bytes], None] | None = None,
                 inbox: CommandInbox | None = None) -> None:
        """`catalog_points`: point id → PointMeta (device, room, quantity, unit), one entry per
        point the gateway reports — the PointCatalog, and the quantities the per-quantity
        deadbands need.

        `devices`: returns (devices online, devices total), for GatewayState; called on the
        event loop. `inbox`: checks and carries out what arrives on `cmd` (default: one that
        refuses every alarm command and answers `request_state`).
        `on_config_set`: receives the raw payload of every `config/set` message on the event
        loop."""
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
        self._devices = devices
        self._on_config_set = on_config_set
        self._devices_now: tuple[int, int] | None = None
        self._devices_failed = False
        self._config_identity: tuple[str, str] | None = None
        self._state_published: tuple[object, ...] | None = None
        """What the last queued state said about devices and config (a change re-queues)."""
        self._wake_state: asyncio.Event | None = None
        self._inbox = inbox or CommandInbox(site, gateway_id, clock, root=settings.root)
        self._counts = dict.fromkeys(("received", "bad", "duplicate", "refused", "config"), 0)
        self._lat_buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket; the last is > 300 s
        self._lat_sum = 0.0
        self._lat_last: float | None = None
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

    def alarm_events_stored(self) -> int | None:
        """The journal sequence number of the last alarm event this outbox ever committed
        (None: none yet). Events the journal holds beyond it were lost between the journal's
        commit and the outbox's (the process died in those milliseconds): hand them to
        `on_alarm_events` again."""
        return self.outbox.mark(ALARM_MARK)

    def note_alarm_events_stored(self, seq: int) -> None:
        """Start the mark at `seq` (a fresh outbox: older journal history is not sent)."""
        self.outbox.set_mark(ALARM_MARK, seq)

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
        channel = channel_of(msg)
        retained = CHANNELS[channel].retain
        try:
            payload = encode(msg)
        except ContractError as exc:
            self._reject(f"{channel.value}: {exc}")
            return
        if isinstance(msg, AlarmEventMessage):  # committed together with the event
            self.outbox.set_mark(ALARM_MARK, max(msg.seq, self.outbox.mark(ALARM_MARK) or 0))
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
            batch = TelemetryBatch.from_samples(site=self.site, gateway=self.gateway_id, seq=0,
                                                produced=produced, samples=good,
                                                catalog=self._catalog.catalog)
        # validated once: the real sequence number is only copied in (seq ≥ 1 as validated)
        batch = batch.model_copy(update={"seq": self.outbox.next_seq("telemetry")})
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
        self._wake_state = asyncio.Event()
        committer = asyncio.create_task(self._committer(), name="uplink-commit")
        stater = asyncio.create_task(self._stater(), name="uplink-state")
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
            stater.cancel()
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

        inbound = [(self._topics[Channel.CMD], 1), (self._topics[Channel.CONFIG_SET], 1)]

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
            result = None if not rc.is_failure else str(rc)
            if result is None:  # a fresh clean session each time: subscribe on every connect
                c.subscribe(inbound)
            loop.call_soon_threadsafe(_resolve, session.connack, result)

        def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode],
                         _p: Any) -> None:
            refused = [str(rc) for rc in codes if rc.is_failure]
            if refused:
                loop.call_soon_threadsafe(self._on_suback_refused, refused)

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            try:  # never raise in paho's thread: it would end the network loop
                topic, payload, retained = msg.topic, bytes(msg.payload), bool(msg.retain)
                loop.call_soon_threadsafe(self._on_inbound, topic, payload, retained)
            except Exception as exc:
                log.error("event=uplink_inbound_dropped error=%r", f"{type(exc).__name__}")

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
            loop.call_soon_threadsafe(session.lost.set)
            loop.call_soon_threadsafe(_resolve, session.connack, f"disconnected: {rc}")

        def on_publish(_c: mqtt.Client, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
            loop.call_soon_threadsafe(self._on_puback, session, mid, rc.is_failure, str(rc))

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        client.on_subscribe = on_subscribe
        client.on_message = on_message
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
            birth = self._gateway_state()
            await asyncio.to_thread(self._start_session, birth)
            await self._pump(session)
            log.warning("event=uplink_disconnected broker=%s", s.broker)
            return True
        finally:
            if self._session is session:
                self._session = None
            if not session.lost.is_set():
                _drop(client)
            await asyncio.to_thread(_join, client)

    def _start_session(self, birth: GatewayState | None) -> None:
        """On connect (worker thread): everything stored becomes backlog, then birth,
        catalog and the active-alarm snapshot go out live."""
        with self._drain_lock:
            self.outbox.start_session()
            self._refresh_status()
            if birth is not None:
                birth = birth.model_copy(update={"outbox": self._outbox_status,
                                                 "dropped": dict(self._dropped)})
            self._queue_births(birth)
            self._drain()

    def _queue_births(self, state: GatewayState | None) -> None:
        """State (if any), catalog and active-alarm snapshot, ahead of everything queued."""
        now = self.clock.now_ns()
        catalog = self._catalog.model_copy(update={"produced": now})
        items = [_Item(MessageKind.STATE, catalog, now)]
        if state is not None:
            items.insert(0, _Item(MessageKind.STATE, state, state.ts))
        if self._snapshot is not None:
            items.append(_Item(MessageKind.STATE, self._snapshot, now))
        with self._qlock:
            if state is not None:  # an older state queued behind it must not replace it
                self._queue = [i for i in self._queue if not isinstance(i.payload, GatewayState)]
            self._queue[:0] = items

    # ------------------------------------------------------------------ gateway state (loop)

    def set_config_identity(self, version: int, sha256: str) -> None:
        """The running config's version and SHA-256 (hex); shown in GatewayState, which is
        re-published at once when they change."""
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise ValueError("config version must be a non-negative integer")
        if not isinstance(sha256, str) or _SHA256.fullmatch(sha256) is None:
            raise ValueError("config sha256 must be 64 lowercase hex digits")
        self._config_identity = (str(version), sha256)
        if self._wake_state is not None:
            self._wake_state.set()

    def _poll_devices(self) -> tuple[int, int] | None:
        """Ask the daemon for (online, total); a failing provider is logged once, not fatal."""
        if self._devices is None:
            return None
        try:
            online, total = self._devices()
            value = (max(0, int(online)), max(0, int(total)))
        except Exception as exc:
            if not self._devices_failed:
                log.error("event=uplink_devices_provider_failed error=%r",
                          f"{type(exc).__name__}: {exc}")
            self._devices_failed = True
            return self._devices_now
        self._devices_failed = False
        self._devices_now = value
        return value

    def _state_key(self) -> tuple[object, ...]:
        return (self._devices_now, self._config_identity)

    def _gateway_state(self) -> GatewayState | None:
        """The `online` GatewayState now (None if it cannot be built: logged)."""
        self._poll_devices()
        version, digest = self._config_identity or (None, None)
        online, total = self._devices_now or (None, None)
        try:
            state = GatewayState(site=self.site, gateway=self.gateway_id, status="online",
                                 ts=self.clock.now_ns(), software=__version__,
                                 config_version=version, config_hash=digest,
                                 catalog=self._catalog.catalog, boot=self.boot_ns,
                                 outbox=self._outbox_status, dropped=dict(self._dropped),
                                 devices_online=online, devices_total=total)
        except ValueError as exc:
            self._reject(f"state: {exc}")
            return None
        self._state_published = self._state_key()
        return state

    def _queue_state(self) -> None:
        state = self._gateway_state()
        if state is None:
            return
        self._enqueue(_Item(MessageKind.STATE, state, state.ts))
        if self._wake_commit is not None:
            self._wake_commit.set()

    async def _stater(self) -> None:
        """Re-queue the retained state every `state_interval`, and at once when the devices
        online or the config identity changed (checked every STATE_CHECK seconds)."""
        wake = self._wake_state
        assert wake is not None
        interval = self.settings.state_interval
        last = self.clock.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), min(STATE_CHECK, interval))
            wake.clear()
            try:
                self._poll_devices()
                now = self.clock.monotonic()
                if self._state_key() != self._state_published or now - last >= interval:
                    last = now
                    self._queue_state()
            except Exception:  # the state must never stop the uplink
                log.exception("event=uplink_state_failed")

    # ------------------------------------------------------------------ inbound (loop)

    def _on_suback_refused(self, refused: list[str]) -> None:
        self._last_error = f"subscription refused: {', '.join(refused)}"
        log.error("event=uplink_subscribe_refused topics=%s,%s reasons=%s",
                  self._topics[Channel.CMD], self._topics[Channel.CONFIG_SET],
                  ",".join(refused))

    def _on_inbound(self, topic: str, payload: bytes, retained: bool) -> None:
        """A message on a subscribed topic, on the event loop. Never raises."""
        try:
            if topic == self._topics[Channel.CMD]:
                self._on_cmd(payload, retained)
            elif topic == self._topics[Channel.CONFIG_SET]:
                self._on_config(payload)
            else:
                log.warning("event=uplink_unexpected_message topic=%r", topic[:200])
        except Exception:
            log.exception("event=uplink_inbound_failed topic=%r", topic[:200])

    def _on_config(self, payload: bytes) -> None:
        self._counts["config"] += 1
        log.info("event=uplink_config_set bytes=%d", len(payload))
        if self._on_config_set is None:
            log.warning("event=uplink_config_set_ignored reason=%r", "no handler")
            return
        try:
            self._on_config_set(payload)
        except Exception:
            log.exception("event=uplink_config_set_handler_failed")

    def _on_cmd(self, payload: bytes, retained: bool) -> None:
        """Everything on `cmd` is the command inbox's to judge; publish its answer."""
        delivery = self._inbox.receive(payload, retained)
        self._counts["received"] += 1
        if delivery.outcome != "applied":
            self._counts[delivery.outcome] += 1
        if delivery.republish:
            self._queue_births(self._gateway_state())
        if delivery.result is not None:
            self._send(delivery.result)

    def _send(self, message: CommandResult | ConfigStatus) -> None:
        self._enqueue(_Item(MessageKind.STATE, message, self.clock.now_ns()))
        if self._wake_commit is not None:
            self._wake_commit.set()

    def publish_config_status(self, payload: ConfigStatus) -> None:
        """Publish a ConfigStatus (retained, through the outbox, replacing an older unpublished
        one). Call on the event loop."""
        if not isinstance(payload, ConfigStatus):
            raise TypeError("publish_config_status takes a ConfigStatus")
        if (payload.site, payload.gateway) != (self.site, self.gateway_id):
            raise ValueError(f"ConfigStatus names {payload.site}/{payload.gateway}, "
                             f"this gateway is {self.site}/{self.gateway_id}")
        self._send(payload)

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
                session.inflight[info.mid] = (m.id, m.created_ns)
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
        entry = session.inflight.pop(mid, None)
        if entry is None:
            return
        outbox_id, produced = entry
        if failed:  # MQTT 5 refusal (e.g. not authorized): kept, re-sent next session
            self._last_error = f"publish refused: {reason}"
            log.warning("event=uplink_publish_refused reason=%s", reason)
        else:
            self.outbox.ack([outbox_id])
            self._published += 1
            self._observe_latency(max(0.0, (self.clock.now_ns() - produced) / 1e9))
        if self._wake_pump is not None:
            self._wake_pump.set()

    def _observe_latency(self, seconds: float) -> None:
        self._lat_buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._lat_sum += seconds
        self._lat_last = seconds

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
            connects=self._connects, last_error=self._last_error,
            latency_count=sum(self._lat_buckets), latency_sum_s=self._lat_sum,
            latency_buckets=tuple(zip(LATENCY_BUCKETS, _cumulative(self._lat_buckets),
                                      strict=False)),
            latency_last_s=self._lat_last, commands_received=self._counts["received"],
            commands_bad=self._counts["bad"], commands_duplicate=self._counts["duplicate"],
            commands_refused=self._counts["refused"], config_sets=self._counts["config"])

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


def _cumulative(counts: list[int]) -> list[int]:
    out, total = [], 0
    for n in counts:
        total += n
        out.append(total)
    return out


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
