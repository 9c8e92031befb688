"""The ingest's writer thread: received messages from a queue into the database, in batches,
each acknowledged only once the database accepted it (DESIGN principle 5).

Messages wait in one queue per gateway, served round-robin with alarm events and states first
and bounded per gateway (`gateway.ingest.fairqueue`), so one gateway's backlog never delays
another's alarms. It collects items until `batch_size` points or `flush_interval`, resolves
batches that waited
for their point catalog (parking those still waiting, dead-lettering them after
`catalog_wait` or beyond their gateway's share of the park limit: `park_limit`, `shed`),
drops duplicates (`gateway.ingest.dedup`), dead-letters what would take a gateway past its
series budget (`gateway.ingest.budget`), writes the rest and retries (tenacity, exponential
back-off) on 429, 5xx and connection errors for as long as it takes; a 4xx rejection is
narrowed down to the messages at fault, which go to the dead-letter log. Then `done(items,
now)` (the service) moves the watermarks and acknowledges. While the database is down nothing
is acknowledged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from influxdb_client.rest import ApiException
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential

from gateway.ingest.budget import SeriesBudget
from gateway.ingest.catalogs import CatalogStore
from gateway.ingest.deadletter import DeadLetterLog
from gateway.ingest.dedup import SeenKey, SeenStore
from gateway.ingest.fairqueue import FairQueue, gateway_of
from gateway.ingest.incidents import CentralIncidents, IncidentChunkError  # issue 12
from gateway.ingest.items import Delivery, Item, api_reason, retryable, short
from gateway.ingest.metrics import IngestMetrics
from gateway.ingest.parking import park_limit, shed
from gateway.ingest.schema import UnknownCatalog, message_lines
from gateway.ingest.settings import IngestSettings
from gateway.ingest.writers import Writer, make_writer
from gateway.ops.connections import RateLimitFilter

log = logging.getLogger("roomwarden.ingest")
log.addFilter(RateLimitFilter(prefix="event=ingest_qos0_dropped"))  # a line a minute, counted
log.addFilter(RateLimitFilter(prefix="event=ingest_queue_full"))

MAX_QOS0_BYTES = 16 * 2**20
"""QoS 0 payloads and lines queued at most (no gateway sends QoS 0)."""


class Stopping(Exception):
    """The service is stopping while a write is still failing: acknowledge nothing."""


class IngestWriter:
    """`start()` runs the writer thread until `stopping` is set; `put()` hands it an item."""

    def __init__(self, settings: IngestSettings, *, catalogs: CatalogStore,
                 metrics: IngestMetrics, count: Callable[[str, int], None],
                 stopping: threading.Event, generation: Callable[[], int],
                 request_state: Callable[[str, str], bool],
                 done: Callable[[list[Item], int], None], clock: Callable[[], int],
                 delivered: Callable[[Delivery], bool] = lambda delivery: False) -> None:
        self.settings = settings
        self._catalogs = catalogs
        self._metrics = metrics
        self._count = count
        self._stopping = stopping
        self._generation = generation
        self._request_state = request_state
        self._done = done
        self._clock = clock
        self._delivered = delivered
        """Whether a delivery number is done already (the ack store's `covers`)."""
        self._seen = SeenStore(settings.seen_store,
                               retention_ns=int(settings.dedup_retention * 1e9))
        self.dead = DeadLetterLog(settings.dead_letter)
        self.database: Writer = make_writer(settings)  # issue 13: v1 or v2 write API
        self._incidents = CentralIncidents(settings.incident_store, settings.incidents)  # 12
        self._queue = FairQueue(settings.queue, stopping, max_wait=settings.mqtt.keepalive / 2)
        self._budget = SeriesBudget(
            settings.budget_store, settings.series_budget, root=settings.mqtt.root,
            clock=clock, on_refused=self._refused)
        self.refused = 0
        """Messages refused since start: past their gateway's series budget."""
        self._qos0_lock = threading.Lock()
        self._qos0_bytes = 0
        self._parked: list[Item] = []
        self.parked_count = 0
        self._in_writer = 0
        self.heartbeat = time.monotonic()
        """Last time the writer thread made progress (for systemd's watchdog)."""
        self.last_write_ok: bool | None = None
        self.failed = False
        """The writer stopped on a bug (the process should exit non-zero to be restarted)."""
        self._thread: threading.Thread | None = None

    @property
    def seen(self) -> SeenStore:
        """The keys of what was written (and when re-stamped messages were first received)."""
        return self._seen

    @property
    def queue(self) -> FairQueue:
        """The per-gateway queues of what was received and not yet taken by the writer."""
        return self._queue

    @property
    def budget(self) -> SeriesBudget:
        return self._budget

    def _refused(self, site: str, gateway: str, cap: str) -> None:
        self.refused += 1
        self._metrics.series_refused.labels(site=site, gateway=gateway, cap=cap).inc()

    def put(self, item: Item) -> None:
        """Queue `item` for the writer thread (paho's network thread: waits while its gateway's
        queue is full, `gateway.ingest.fairqueue`). A dead one keeps only what its dead-letter
        record will; a QoS 0 one (no gateway sends any) is dropped, counted, past
        MAX_QOS0_BYTES queued: while the database is down nothing leaves the queue, and QoS 0
        is not flow-controlled by the broker (the central audit: 400 junk payloads of 1 MiB
        took the ingest to 670 MB)."""
        if item.dead_reason is not None and item.cut is None:
            item.payload, item.cut = self.dead.cut(item.payload, decoded=item.decoded)
        if item.qos == 0:
            size = len(item.payload) + sum(map(len, item.lines))
            with self._qos0_lock:
                if self._qos0_bytes + size > MAX_QOS0_BYTES:
                    self._metrics.dropped.labels(reason="qos0_queue_full").inc()
                    log.warning("event=ingest_qos0_dropped topic=%s bytes=%d queued=%d (QoS 0 "
                                "beyond the queue bound; gateways publish QoS 1)",
                                item.topic[:200], size, self._qos0_bytes)
                    return
                self._qos0_bytes += size
            item.queued_bytes = size
        who = gateway_of(item.topic, self.settings.mqtt.root)
        waited = self._queue.put(item, who)
        if waited:
            self._metrics.queue_waits.inc()
            log.warning("event=ingest_queue_full site=%s gateway=%s waited_s=%.1f "
                        "let_in_past_bound=%d (the gateway's queued messages reached "
                        "queue.per_gateway_bytes, or all queues queue.total_bytes: nothing was "
                        "read from the broker meanwhile)", who[0], who[1], waited,
                        self._queue.overruns)

    def _taken(self, item: Item) -> Item:
        if item.queued_bytes:
            with self._qos0_lock:
                self._qos0_bytes -= item.queued_bytes
            item.queued_bytes = 0
        return item

    def pending(self) -> int:
        """Received and not yet done."""
        return len(self._queue) + self._in_writer

    def start(self) -> None:
        self._thread = threading.Thread(target=self._write_loop, name="ingest-writer",
                                        daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        self.database.close()
        self._seen.close()
        self._budget.close()
        self._incidents.close()  # issue 12

    def liveness(self) -> str | None:
        """None while the writer makes progress; else why not."""
        if self._thread is None or not self._thread.is_alive():
            return "the ingest writer thread is not running"
        influx = self.settings.influx
        limit = influx.timeout + influx.flush_interval + 10.0
        stalled = time.monotonic() - self.heartbeat
        if stalled > limit:
            return f"the ingest writer stalled for {stalled:.0f}s (limit {limit:.0f}s)"
        return None

    # ------------------------------------------------------------------------------------------

    def _collect(self) -> list[Item]:
        influx = self.settings.influx
        first = self._queue.get(timeout=0.2)
        if first is None:
            return []
        items = [self._taken(first)]
        points = len(first.lines)
        deadline = time.monotonic() + influx.flush_interval
        while points < influx.batch_size and not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            item = self._queue.get(timeout=min(remaining, 0.2))
            if item is None:
                continue
            items.append(self._taken(item))
            points += len(item.lines)
        return items

    def _write_loop(self) -> None:
        while not self._stopping.is_set():
            self.heartbeat = time.monotonic()
            items = self._collect()
            self._in_writer = len(items)
            items = self._unpark() + items
            if not items:
                continue
            try:
                self._process(items)
            except Stopping:
                return
            except Exception:
                log.exception("event=writer_bug")  # unacknowledged: redelivered after restart
                self.failed = True
                self._stopping.set()
                return
            finally:
                self._in_writer = 0

    def _park_limit(self) -> int:
        return park_limit(self.settings)

    def _unpark(self) -> list[Item]:
        """Parked batches whose catalog has arrived (or whose wait is over); batches received
        before a reconnect are forgotten (the broker sends them again)."""
        if not self._parked:
            return []
        out: list[Item] = []
        keep: list[Item] = []
        now = time.monotonic()
        for item in self._parked:
            if item.generation != self._generation():
                continue
            assert item.waiting is not None
            if self._catalogs.get(*item.waiting) is not None or \
                    now - item.received >= self.settings.catalog_wait:
                out.append(item)
            else:
                keep.append(item)
                self._request_state(item.waiting[0], item.waiting[1])
        self._parked = keep
        self.parked_count = len(keep)
        return out

    def _resolve(self, items: list[Item]) -> list[Item]:
        """Lines for batches that waited for their catalog; park those still waiting (or
        dead-letter them when their time is up, or when too many wait and their gateway holds
        more than its share: `shed`)."""
        now = time.monotonic()
        ready: list[Item] = []
        for item in items:
            if item.waiting is None or item.dead_reason is not None:
                ready.append(item)
                continue
            assert item.batch is not None
            try:
                item.lines = [line.to_line_protocol() for line in
                              message_lines(item.batch, self._catalogs.get)]
                item.waiting = None
                item.batch = None
                ready.append(item)
            except UnknownCatalog as exc:
                if now - item.received >= self.settings.catalog_wait:
                    item.dead_reason = (f"{exc} (not received within "
                                        f"{self.settings.catalog_wait:g}s)")
                    item.dead_kind = "unknown_catalog"
                    ready.append(item)
                else:
                    self._count("parked_total", 1)
                    self._parked.append(item)
        self._parked, over = shed(self._parked, self._park_limit())
        ready.extend(over)
        self.parked_count = len(self._parked)
        return ready

    def _process(self, items: list[Item]) -> None:
        items = self._resolve(items)
        keys: set[SeenKey] = set()
        numbers: set[Delivery] = set()
        for item in items:  # by delivery number if it has one (gateway.ingest.dedup), else key
            if item.dead_reason is not None:
                continue
            if item.delivery is not None:
                if item.delivery in numbers or self._delivered(item.delivery):
                    item.duplicate = True
                else:
                    numbers.add(item.delivery)
            elif item.key is not None:
                if item.key in keys or item.key in self._seen:
                    item.duplicate = True
                else:
                    keys.add(item.key)
        todo = [item for item in items if item.dead_reason is None and not item.duplicate]
        if self._budget.admit(todo):  # past a gateway's series budget: dead-lettered
            todo = [item for item in todo if item.dead_reason is None]
        lines = [line for item in todo for line in item.lines]
        if lines:
            try:
                self._write(lines)
            except ApiException as exc:  # rejected (4xx): find the messages at fault
                log.warning("event=write_rejected status=%s reason=%s points=%d",
                            exc.status, api_reason(exc), len(lines))
                for item in todo:
                    if item.lines:
                        try:
                            self._write(item.lines)
                        except ApiException as one:
                            item.dead_reason = (f"database rejected the points: {one.status} "
                                                f"{api_reason(one)}")
                            item.dead_kind = "rejected"
        now = self._clock()
        # --- issue 12: incident chunks into the incident store, durably before the ack ----
        for item in todo:
            if item.incident is not None:
                try:
                    self._incidents.add(item.incident, now)
                except IncidentChunkError as exc:
                    item.dead_reason, item.dead_kind = str(exc), "incident"
        # --- end issue 12 -------------------------------------------------------------------
        self._seen.add([item.key for item in todo if item.key is not None
                        and item.delivery is None and item.dead_reason is None], now)
        self._budget.commit()
        self.dead.add_many([(item.topic, item.payload, item.dead_reason, item.cut, item.decoded)
                            for item in items if item.dead_reason is not None], now)
        for item in items:
            if item.dead_reason is not None:
                self._metrics.dead.labels(reason=item.dead_kind).inc()
                if item.dead_kind != "series_budget":  # logged once per gateway (budget)
                    log.warning("event=dead_letter topic=%s reason=%s", item.topic,
                                item.dead_reason[:300])
            elif item.duplicate:
                self._count("duplicates", 1)
                self._metrics.duplicates.labels(channel=item.channel).inc()
            else:
                self._count("written_points", len(item.lines))
                self._count("written_messages", 1)
                self._metrics.written.labels(channel=item.channel).inc()
                if item.lines:
                    self._metrics.points_written(len(item.lines))
                if item.gateway_ts is not None:  # (gateway.ingest.timecheck)
                    self._metrics.restamped.labels(reason="clock").inc()
        self._done(items, now)

    def _write(self, lines: Sequence[str]) -> None:
        """Write until the database accepts; ApiException for a rejection (not retryable);
        Stopping if the service stops first."""
        influx = self.settings.influx

        def before_sleep(state: RetryCallState) -> None:
            self._count("write_retries", 1)
            self._metrics.write_retries.inc()
            exc = state.outcome.exception() if state.outcome is not None else None
            log.warning("event=write_retry attempt=%d error=%s", state.attempt_number,
                        short(exc))

        def sleep(seconds: float) -> None:
            self.heartbeat = time.monotonic()  # waiting out a database outage is not a hang
            if self._stopping.wait(seconds):
                raise Stopping

        def attempt() -> None:
            began = time.monotonic()
            try:
                self.database.write(lines)  # issue 13: gateway.ingest.writers
            except Exception:
                self.last_write_ok = False
                self._count("write_errors", 1)
                self._metrics.write_errors.inc()
                raise
            self.last_write_ok = True
            self._metrics.write_seconds.observe(time.monotonic() - began)
            self._metrics.last_success.set(time.time())

        retrying = Retrying(
            retry=retry_if_exception(retryable),
            wait=wait_exponential(multiplier=0.2, max=influx.retry_max_wait),
            sleep=sleep, before_sleep=before_sleep, reraise=True)
        retrying(attempt)
