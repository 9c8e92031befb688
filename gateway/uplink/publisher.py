"""The MQTT uplink, composed: samples and alarm events → committer → outbox → session →
broker, delivered once the ingest confirms it (DESIGN principle 5), live first.

The parts, one job each:
- `ExceptionFilter` (report by exception, pure) on every poll's samples;
- `Committer` (gateway.uplink.committer): the one buffer in front of the SQLite outbox and the
  one writer thread that encodes, commits (≤ `commit_interval`, at once for alarm events;
  telemetry only if not acknowledged within `telemetry_hold`: gateway.uplink.hold), hands out
  publish windows (live first, backlog paced by `ReplayPacer`) and removes what was delivered;
- `Session` (gateway.uplink.session): one MQTT connection per attempt, reconnected here with
  `Backoff` (bounded exponential with jitter, forever);
- `DeliveryTracker` (gateway.uplink.delivery, pure) and `Redelivery` (its loop side): PUBACK →
  in flight or delivered, the ingest's `ack` watermark → covered, holes and timeouts → again;
- `StatePublisher` (gateway.uplink.state): GatewayState, point catalog, active alarms.

This module wires them and runs the event-driven publish pump: the writer hands a window of
messages (committed, or telemetry held in memory) to the loop (`_on_window`), the loop
publishes them and tells the writer how many in-flight slots are free (`Committer.want`).
Nothing polls: an idle uplink sleeps until a sample, a PUBACK, an ack or a deadline (commit,
pacing, ack timeout, state) is due.

On every connect: last will = retained `offline` GatewayState, then a retained `online` birth,
the PointCatalog and the retained ActiveAlarmsSnapshot (all through the outbox, as snapshots
that replace older unpublished ones), and everything the outbox holds is handed out again
(at-least-once; a duplicate carries the same `seq`, the ingest's duplicate key). `close()`
publishes `offline`, disconnects cleanly and commits the outbox; a cancelled `run()` (the
process dying) drops the connection without a DISCONNECT, so the broker publishes the will.

Inbound (subscribed with QoS 1 on every connect, since each connect is a fresh clean session;
a filter the broker refuses is asked for again with back-off while everything else goes on, and
`status().refused` names it: gateway.uplink.subscriptions):
- `cmd`: every payload goes, in turn, to the command inbox, its replay memory's writes off the
  loop (`gateway.operator.command_queue`); its `CommandResult` goes on `cmd/result` through the
  outbox; a `request_state` republishes state, catalog and alarms, spaced (state_requests).
- `config/set`: the raw payload to `on_config_set` (it verifies); answers on `config/status`.
- `ack` (`delivery: ingest` only): the ingest's DeliveryAck for this gateway.
paho's `on_message` only queues the message for the loop (bounded: gateway.uplink.session).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.alarms.events import AlarmEvent, AlarmView
from gateway.clock import Clock
from gateway.contract.channels import Channel, Topic
from gateway.contract.outbound import CatalogReport, DeliveryTerms, StateReport
from gateway.contract.points import PointTagged
from gateway.contract.vocab import ContractError, MessageKind
from gateway.field.sample import Sample
from gateway.mqtt_client import SHORT_CONNECTION, STABLE_AFTER, Backoff
from gateway.operator.command_queue import CommandQueue
from gateway.operator.inbox import CommandInbox, Delivery, prepare_commands
from gateway.uplink.committer import Committer, Window
from gateway.uplink.delivery import Sent
from gateway.uplink.items import ALARM_MARK, Item
from gateway.uplink.parts import filter_of, outbox_of, pacer_of, tracker_of
from gateway.uplink.records import event_report
from gateway.uplink.redelivery import Redelivery
from gateway.uplink.session import Handlers, Session, client_options
from gateway.uplink.settings import UplinkSettings
from gateway.uplink.state import StatePublisher
from gateway.uplink.state_requests import StateRequests
from gateway.uplink.status import LATENCY_BUCKETS, LatencyHistogram, UplinkStatus

if TYPE_CHECKING:
    from gateway.contract.commands import CommandResult
    from gateway.contract.configmsg import ConfigStatus

__all__ = ["LATENCY_BUCKETS", "Uplink", "UplinkStatus"]

log = logging.getLogger("roomwarden.uplink")

CLOSE_TIMEOUT = 3.0
"""How long `close()` waits for the offline state's PUBACK."""


class Uplink:
    def __init__(self, settings: UplinkSettings, site: str, gateway_id: str, state_dir: Path,
                 clock: Clock, catalog_points: Mapping[str, PointTagged], *,
                 devices: Callable[[], tuple[int, int]] | None = None,
                 on_config_set: Callable[[bytes], None] | None = None,
                 inbox: CommandInbox | None = None) -> None:
        """`catalog_points`: point id → its tags (device, room, quantity, unit: a `PointTags`
        or a `PointMeta`) of every point the gateway reports: the PointCatalog, and the
        quantities the deadbands need.
        `devices`: (devices online, devices total) for GatewayState, called on the loop.
        `inbox`: checks and carries out what arrives on `cmd` (default: one that refuses every
        alarm command and answers `request_state`). `on_config_set`: the raw payload of every
        `config/set` message, on the event loop."""
        self.settings = settings
        self.site = site
        self.gateway_id = gateway_id
        self.clock = clock
        self.client_id = settings.client_id or f"roomwarden-{gateway_id}"
        self._topics = {ch: str(Topic(site, gateway_id, ch, settings.root)) for ch in Channel}
        self.outbox = outbox_of(settings, state_dir, clock)
        self._stream = self.outbox.stream
        catalog = CatalogReport.build(site=site, gateway=gateway_id, produced=clock.now_ns(),
                                      points=dict(catalog_points))  # (the filter reads it too)
        self.filter = filter_of(settings, clock, catalog.points)
        self.pacer = pacer_of(settings, clock)
        self.delivery = tracker_of(settings, clock)
        self.committer = Committer(self.outbox, self.pacer, clock, site=site,
                                   gateway=gateway_id, topics=self._topics,
                                   catalog=catalog.catalog,
                                   numbered=settings.delivery == "ingest",
                                   on_reject=self._reject)
        self.state = StatePublisher(
            site, gateway_id, clock, catalog, interval=settings.state_interval,
            send=self._send_item, devices=devices, on_reject=self._reject,
            outbox=lambda: (self.committer.status, self.committer.dropped),
            delivery=self._delivery_info)
        self.redelivery = Redelivery(self.delivery, self.committer, clock, stream=self._stream,
                                     ack_topic=self._topics[Channel.ACK], root=settings.root,
                                     tell_floor=self.state.queue_state)
        self._session: Session | None = None
        self._epoch = 0
        self._inflight: dict[int, Sent] = {}
        """paho mid → what it carries, for the current session."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._closed = False
        self._published = self._rejected = self._connects = 0
        self._counted: Session | None = None  # the last session whose start was handled
        self._last_error: str | None = None
        self._on_config_set = on_config_set
        self.commands = CommandQueue(
            inbox or CommandInbox(site, gateway_id, clock, root=settings.root), self._answered)
        self._counts = dict.fromkeys(("received", "bad", "duplicate", "refused", "config"), 0)
        self.state_requests = StateRequests(
            clock, lambda: self._queue_births(self.state.state()), self._send)
        self.committer.on_fresh_outbox = lambda: self.state_requests.request(None)
        self._latency = LatencyHistogram()

    # ------------------------------------------------------------------ the data path (loop)

    def on_samples(self, batch: list[Sample]) -> None:
        """A poll cycle's samples (a daemon sink). Cheap: filter, encode the rows, append; no
        I/O."""
        passed = self.filter.filter(batch)
        if passed and not self.committer.add_samples(passed, self.clock.now_ns()):
            self._rejected += 1
        if self._loop is not None:
            self.state.on_samples()

    def on_alarm_events(self, events: Iterable[AlarmEvent]) -> None:
        """Alarm-manager events (what `Gateway.evaluate_once` returns); committed at once."""
        for event in events:
            try:
                msg = event_report(event, site=self.site, gateway=self.gateway_id)
            except ContractError as exc:
                self._reject(f"alarm event seq={event.seq}: {exc}")
                continue
            self.committer.add(Item(MessageKind.ALARM, msg, self.clock.now_ns()), urgent=True)

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
        self.state.set_active_alarms(alarms, seq)

    def set_config_identity(self, version: int, sha256: str) -> None:
        """The running config's version and SHA-256 (hex); shown in GatewayState, which is
        re-published at once when they change."""
        self.state.set_config_identity(version, sha256)

    def _send_item(self, item: Item) -> None:
        self.committer.add(item, urgent=True)

    def _reject(self, why: str) -> None:
        self._rejected += 1
        log.warning("event=uplink_rejected reason=%r", why)

    def _queue_births(self, state: StateReport | None) -> None:
        """State (if any), catalog and active-alarm snapshot, committed at once."""
        for item in self.state.births(state):
            self._send_item(item)

    def _delivery_info(self) -> DeliveryTerms:
        if self.settings.delivery == "puback":
            return DeliveryTerms(mode="puback")
        return DeliveryTerms(mode="ingest", stream=self._stream, floor=self.committer.floor)

    # ------------------------------------------------------------------ inbound (loop)

    def _prepare_inbound(self, topic: str) -> None:
        """In paho's thread, before a `cmd` message goes to the loop (`prepare_commands`)."""
        if topic == self._topics[Channel.CMD]:
            prepare_commands()

    def _on_inbound(self, topic: str, payload: bytes, retained: bool) -> None:
        """A message on a subscribed topic, on the event loop. Never raises."""
        try:
            if topic == self._topics[Channel.CMD]:
                self._on_cmd(payload, retained)
            elif topic == self._topics[Channel.CONFIG_SET]:
                self._on_config(payload)
            elif topic == self._topics[Channel.ACK]:
                self.redelivery.on_ack(payload)
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
        """Everything on `cmd` is the command inbox's to judge, in turn (`_answered`)."""
        self._counts["received"] += 1
        self.commands.submit(payload, retained)

    def _answered(self, delivery: Delivery) -> None:
        """A `cmd` message's answer, in the order of arrival: publish it."""
        if delivery.outcome != "applied":
            self._counts[delivery.outcome] += 1
        if delivery.republish:  # request_state: unsigned, so spaced (state_requests.py)
            self.state_requests.request(delivery.result)
        elif delivery.result is not None:
            self._send(delivery.result)

    def _send(self, message: CommandResult | ConfigStatus) -> None:
        self._send_item(Item(MessageKind.STATE, message, self.clock.now_ns()))

    def publish_config_status(self, payload: ConfigStatus) -> None:
        """Publish a ConfigStatus (retained, through the outbox, replacing an older unpublished
        one). Call on the event loop."""
        from gateway.contract.configmsg import ConfigStatus  # (loaded: the caller made one)

        if not isinstance(payload, ConfigStatus):
            raise TypeError("publish_config_status takes a ConfigStatus")
        if (payload.site, payload.gateway) != (self.site, self.gateway_id):
            raise ValueError(f"ConfigStatus names {payload.site}/{payload.gateway}, "
                             f"this gateway is {self.site}/{self.gateway_id}")
        self._send(payload)

    # ------------------------------------------------------------------ the pump (loop)

    def _on_window(self, window: Window) -> None:
        """Messages from the writer (committed, or held telemetry): publish them (QoS 1)."""
        session = self._session
        if session is None or window.epoch != self._epoch or not session.connected:
            return  # they stay in the outbox: the next session hands them out again
        for m in window.messages:
            mid = session.publish(m.topic, m.payload, m.qos, m.retain)
            if mid is None:  # the connection is gone: re-sent next session
                return
            self._inflight[mid] = Sent(m.id, m.kind, m.dseq, m.created_ns)
        self.committer.want(self.settings.max_inflight - len(self._inflight))

    def _on_puback(self, mid: int, reason: int, text: str) -> None:
        sent = self._inflight.pop(mid, None)
        if sent is None:
            return
        if reason >= 0x80:  # MQTT 5 refusal (e.g. not authorized): kept, re-sent next session
            self._last_error = f"publish refused: {text}"
            log.warning("event=uplink_publish_refused reason=%s", text)
        else:
            self._published += 1
            self._latency.observe(max(0.0, (self.clock.now_ns() - sent.produced) / 1e9))
            self.redelivery.on_puback(sent, reason)
        self.committer.want(self.settings.max_inflight - len(self._inflight))

    # ------------------------------------------------------------------ connection (loop)

    async def run(self) -> None:
        """Commit and publish forever, reconnecting with bounded backoff. Raises only
        CancelledError (cancel = the process dying: no flush; use `close()` to stop cleanly)."""
        self._run_task = asyncio.current_task()
        self._loop = asyncio.get_running_loop()
        self.committer.start(self._loop, self._on_window)
        self.state.start(self._loop)
        self.redelivery.start(self._loop)
        backoff = Backoff(self.settings.reconnect_min, self.settings.reconnect_max)
        try:
            while not self._closed:
                try:
                    lasted = await self._connect_and_publish()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    lasted = None
                    self._last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("event=uplink_error error=%r", self._last_error)
                if self._closed:
                    break
                backoff.ended(lasted)
                wait = backoff.delay()
                log.info("event=uplink_reconnect_wait seconds=%.2f", wait)
                await asyncio.sleep(wait)
        finally:
            self.state.stop()
            self.redelivery.stop()
            session, self._session = self._session, None
            if session is not None:
                session.drop()

    async def _connect_and_publish(self) -> float | None:
        """One connection: how long it stayed up after its CONNACK (None: none came)."""
        s = self.settings
        loop = asyncio.get_running_loop()
        options = await asyncio.to_thread(client_options, s, self.client_id)
        inbound = [self._topics[Channel.CMD], self._topics[Channel.CONFIG_SET]]
        if s.delivery == "ingest":
            inbound.append(self._topics[Channel.ACK])
        session = Session(options, loop,
                          will=(self._topics[Channel.STATE], self.state.offline().encode()),
                          subscriptions=inbound,
                          handlers=Handlers(self._on_puback, self._on_inbound,
                                            prepare=self._prepare_inbound),
                          resubscribe=Backoff(s.reconnect_min, s.reconnect_max))
        self._session = session
        try:
            await session.open(s.broker, s.port, s.keepalive, max(10.0, s.keepalive))
            self._connects += 1
            self._counted = session
            self._last_error = None
            log.info("event=uplink_connected broker=%s port=%d client_id=%s delivery=%s",
                     s.broker, s.port, self.client_id, s.delivery)
            self._inflight = {}
            self.redelivery.new_session()
            self._epoch = self.committer.start_session(self.state.births(self.state.state()))
            self.committer.want(s.max_inflight)
            began = loop.time()
            await session.lost.wait()
            lasted = loop.time() - began
            log.warning("event=uplink_disconnected broker=%s lasted_s=%.1f%s", s.broker, lasted,
                        "" if lasted >= STABLE_AFTER else SHORT_CONNECTION)
            return lasted
        finally:
            if self._session is session:
                self._session = None
            self.committer.disconnected()  # held telemetry: committed soon
            await session.end()

    # ------------------------------------------------------------------ status and close

    def status(self) -> UplinkStatus:
        """Never blocks: the outbox figures are refreshed by the writer at each commit."""
        # connected once counted, births queued (not a loop turn earlier, at the CONNACK)
        session = self._session if self._session is self._counted else None
        c, d = self._counts, self.delivery
        return UplinkStatus(
            connected=session is not None and session.connected,
            subscribed=session is not None and session.subscribed,
            refused={} if session is None else session.refused,
            outbox=self.committer.status, dropped=dict(self.committer.dropped),
            published=self._published, queued=self.committer.buffered(),
            rejected=self._rejected, connects=self._connects,
            last_error=self._last_error or self.committer.last_error,
            latency_count=self._latency.count, latency_sum_s=self._latency.sum,
            latency_buckets=self._latency.cumulative(), latency_last_s=self._latency.last,
            commands_received=c["received"], commands_bad=c["bad"],
            commands_duplicate=c["duplicate"], commands_refused=c["refused"],
            config_sets=c["config"], delivery=self.settings.delivery, awaiting=d.awaiting,
            covered=d.covered, delivered=d.delivered, resent=d.resent,
            unconfirmed_s=d.unconfirmed_for())

    async def close(self) -> None:
        """Stop cleanly: retained `offline` state (waits briefly for its PUBACK), DISCONNECT,
        the operator commands' queue, then commit everything buffered and close the outbox."""
        if self._closed:
            return
        self._closed = True
        self.state_requests.close()
        session = self._session
        if session is not None:
            await session.goodbye(self._topics[Channel.STATE], self.state.offline().encode(),
                                  CLOSE_TIMEOUT)
        task = self._run_task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.commands.close()  # the command under way; the waiting ones answered
        await asyncio.to_thread(self.committer.close)
