"""One poll loop per bus: devices strictly in turn, each at its own interval.

The loop owns the schedule and device health; a `DevicePoller` (Modbus or serial text) owns
the protocol (the contract between them: gateway.field.poll). A poll never raises into the
loop: every failure becomes samples with a bad quality and a failed health record, and the loop
goes on with the next device.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from gateway.clock import Clock, SystemClock
from gateway.config.site import FailurePolicy
from gateway.field.health import DeviceHealth
from gateway.field.poll import (
    BusLink,
    DevicePoller,
    PollResult,
    SampleSink,
    held_off,
    worst_poll_seconds,
)
from gateway.field.sample import Quality, Sample
from gateway.records import dataclass, field
from gateway.wakeup import Wakeup

log = logging.getLogger("roomwarden.field")
_new = tuple.__new__

ONLINE_POINT = "online"
"""Every device reports `<device>.online` (bool) with each poll; null with quality comm_error
while unknown (it never answered and has not yet failed `offline_after` polls)."""

STALL_MARGIN = 10.0
"""Seconds added to a loop's worst legitimate poll before it counts as hung (event-loop
latency, a slow SD card under SQLite, a few queued output writes)."""
SILENT_PROBE = 2.0
"""While the whole bus is silent, some device of it is asked about this often (each failing
device at most every `SILENT_PROBE` × devices): the power back is seen within seconds, not at
the end of back-offs that ran in lockstep to `backoff_max` (60 s by default: the RTU audit)."""
JOB_TURN = 0.5
"""Seconds output writes may hold the bus while a poll is due before the polls due go first
(`BusLoop._run_jobs`): a healthy module's writes take milliseconds and never reach it."""


@dataclass
class BusStats:
    cycles: int = 0
    overruns: int = 0
    """Polls that started later than their due time by more than the device's interval."""
    requests: int = 0
    last_poll_seconds: float = 0.0
    poll_seconds_total: float = 0.0
    device_health: dict[str, DeviceHealth] = field(default_factory=dict)


class BusLoop:
    def __init__(self, bus_id: str, link: BusLink, pollers: list[DevicePoller],
                 sink: SampleSink, policy: FailurePolicy, clock: Clock | None = None) -> None:
        self.bus_id = bus_id
        self.link = link
        self.pollers = pollers
        self.sink = sink
        self.clock = clock or SystemClock()
        self.stats = BusStats()
        for poller in pollers:
            self.stats.device_health[poller.device_id] = DeviceHealth(
                poller.device_id, poller.interval, policy)
        self._progress_mono = self.clock.monotonic()
        self._idle_until: float | None = None
        """While the loop sleeps until its next poll: when that poll is due."""
        self.link_open: bool | None = None
        """None until `run` tried `link.open()`; then whether it returned without raising."""
        self.link_error: str | None = None
        """Why the last `link.open()` raised (None when it did not)."""
        self.stall_allowance = 0.0
        """Seconds of queued jobs (output writes) a stall may also contain; set by whoever
        submits them (see `gateway.service.watchdog.configure_stall_limits`)."""
        self._stall_limit: float | None = None
        self._jobs: deque[Callable[[], Awaitable[None]]] = deque()
        self._turn_began: float | None = None
        """When the jobs' present turn on the bus began (`_run_jobs`)."""
        self._owed: float | None = None
        """When the jobs last gave way to a due poll: the polls due by then go first."""
        self._wake = Wakeup()
        """Wakes the loop asleep until its next poll (a job submitted; gateway.wakeup)."""
        self._policy = policy
        self._quiet: set[str] = set()
        """Devices whose failures began since the bus last answered anyone."""
        self._quiet_polls = 0
        """Their polls since then (none answered)."""
        self._seq = 0
        """Polls seen (`_note_quiet`), the last one answered at `_answered_seq`."""
        self._answered_seq = -1
        self._streak: dict[str, int] = {}
        """Device → the poll (`_seq`) at which its current failures began."""
        self.silent = False
        """The bus fell silent (`_note_quiet`): every device is offline until one answers."""
        self.silent_probe = SILENT_PROBE

    @property
    def alive_mono(self) -> float:
        """Last time the loop made progress (for the watchdog and /healthz): after every poll
        and job, and — while it sleeps until its next poll is due — now, up to that due time.
        So an idle loop needs no wake-up to show it is alive, and one that does not resume
        when its poll is due (a blocked event loop, a lost wake-up) ages from then on."""
        if self._idle_until is None:
            return self._progress_mono
        return max(self._progress_mono, min(self.clock.monotonic(), self._idle_until))

    @alive_mono.setter
    def alive_mono(self, value: float) -> None:
        self._progress_mono = value

    @property
    def alive_until(self) -> float:
        """The time up to which the loop is known to be alive without further progress: the
        due time of the poll it sleeps until, else its last progress. It counts as hung once
        `alive_until + stall_limit` has passed (the watchdog sleeps until then)."""
        return max(self._progress_mono, self._idle_until or 0.0)

    @property
    def stall_limit(self) -> float:
        """How long the loop may go without progress (`alive_mono`) before it counts as hung:
        its worst legitimate single poll (every request answered just inside the timeout,
        after a reconnect) + `stall_allowance` + `STALL_MARGIN`. Recomputed on every read
        (a device's plan grows when it learns a split); assigning a number overrides it."""
        if self._stall_limit is not None:
            return self._stall_limit
        worst = max((worst_poll_seconds(p) for p in self.pollers), default=0.0)
        return worst + self.stall_allowance + STALL_MARGIN

    @stall_limit.setter
    def stall_limit(self, value: float | None) -> None:
        self._stall_limit = value

    def submit(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run `job` (a write to a device of this bus) before the next poll: the bus is used
        strictly in turn, and a waiting alarm output never waits for a poll cycle."""
        self._jobs.append(job)
        self._wake.set()

    async def _run_jobs(self, poll_due: float | None = None) -> None:
        """The writes waiting, in order — but once they have held the bus `JOB_TURN` and a poll
        is due (`poll_due`: the first of the queue), every poll due by then goes first and the
        rest follow them: a dead module's writes, each attempt a job waiting out the timeout,
        cannot keep the bus from its detectors. The turn counts across calls: a poll that is
        held off (the dead unit's own, `held_off`) gives the jobs no new turn while other
        polls are overdue (the output audit: a smoke input alarmed 5.4 s late)."""
        while self._jobs:
            now = self.clock.monotonic()
            if self._owed is not None:
                if poll_due is not None and poll_due <= self._owed:
                    return
                self._owed = self._turn_began = None  # the polls had their turn
            if self._turn_began is None:
                self._turn_began = now
            if poll_due is not None and now - self._turn_began >= JOB_TURN and now >= poll_due:
                self._owed = now
                return
            job = self._jobs.popleft()
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event=bus_job_failed bus=%s", self.bus_id)
            self.alive_mono = self.clock.monotonic()  # a write is progress too
        self._turn_began = self._owed = None

    async def run(self) -> None:
        """Poll forever (until cancelled)."""
        try:
            await self.link.open()
        except Exception as exc:  # the port may appear later; polls will report it
            self.link_open, self.link_error = False, repr(exc)
            log.warning("event=bus_open_failed bus=%s error=%r", self.bus_id, exc)
        else:
            self.link_open, self.link_error = True, None
        start = self.clock.monotonic()
        # (due time, order, poller): the order breaks ties so devices keep their config order
        queue = [(start, order, poller) for order, poller in enumerate(self.pollers)]
        heapq.heapify(queue)
        me = asyncio.current_task()
        try:
            while queue:
                # Python 3.11's wait_for (inside pymodbus) can swallow a cancel that lands as a
                # reply arrives; honour a pending cancel here so the loop always stops.
                if me is not None and me.cancelling():
                    raise asyncio.CancelledError
                await self._run_jobs(queue[0][0])
                due, order, poller = queue[0]
                now = self.clock.monotonic()
                if due > now:  # asleep until the poll is due or a job is submitted
                    self.alive_mono, self._idle_until = now, due
                    try:
                        await self._wake.wait(due - now)
                    finally:
                        self._idle_until = None
                    self.alive_mono = self.clock.monotonic()
                    continue
                heapq.heappop(queue)
                wait = held_off(poller)
                if wait > 0:  # its late reply may still come: the others go first
                    heapq.heappush(queue, (now + wait, order, poller))
                    continue
                health = self.stats.device_health[poller.device_id]
                if now - due > poller.interval:
                    self.stats.overruns += 1
                was_failing = health.consecutive_failures > 0
                await self.poll_once(poller)
                # let the round these samples owe run now (the evaluator is woken, not yet run):
                # an output write it queues goes before the next poll of this bus, not after it
                await asyncio.sleep(0)
                after = self.clock.monotonic()
                if was_failing and not health.consecutive_failures:
                    queue = self._back_together(queue, after)
                if health.consecutive_failures:
                    delay = health.next_delay()
                    if self.silent:  # the bus's power back: seen within seconds
                        delay = min(delay, max(poller.interval,
                                               self.silent_probe * len(self.pollers)))
                    next_due = after + delay
                else:
                    # keep the cadence; if we fell more than one interval behind, restart it
                    next_due = due + poller.interval
                    if next_due < after:
                        next_due = after + poller.interval if after - next_due > \
                            poller.interval else next_due
                heapq.heappush(queue, (next_due, order, poller))
        finally:
            await self.link.close()

    def _back_together(self, queue: list[tuple[float, int, DevicePoller]], now: float
                       ) -> list[tuple[float, int, DevicePoller]]:
        """A device answers again after failing: so may the others of the bus that were
        failing (the power of a whole cabinet, or the line, back), so their backed-off polls
        are due now rather than at the end of their back-off (the storm audit: 21 s for 15
        devices to be online again after a power dip)."""
        health = self.stats.device_health
        moved = [(min(due, now) if health[p.device_id].consecutive_failures else due, o, p)
                 for due, o, p in queue]
        heapq.heapify(moved)
        return moved

    async def poll_once(self, poller: DevicePoller) -> PollResult:
        """Poll one device, update its health, hand its samples on; never raises."""
        health = self.stats.device_health[poller.device_id]
        began = self.clock.monotonic()
        try:
            result = await poller.poll()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or an unexpected driver error: contain it
            log.exception("event=poll_crashed bus=%s device=%s", self.bus_id, poller.device_id)
            result = PollResult([], answered=False, error=f"poll crashed: {exc!r}")
            crashed = True
        else:
            crashed = False
        ended = self.clock.monotonic()
        self._progress_mono = ended  # (`alive_mono`'s setter, without a call)
        self.stats.cycles += 1
        self.stats.requests += result.requests
        self.stats.last_poll_seconds = ended - began
        self.stats.poll_seconds_total += ended - began
        if result.answered:
            if self.link_open is False:
                log.info("event=bus_link_open bus=%s", self.bus_id)
            self.link_open, self.link_error = True, None  # (re)connected by the poll itself
        elif getattr(self.link, "connected", None) is False:  # a TCP peer gone, a port closed
            if self.link_open is not False:
                log.warning("event=bus_link_lost bus=%s error=%s", self.bus_id, result.error)
            self.link_open, self.link_error = False, result.error or "not connected"
        if result.answered and result.delivered:
            was_degraded = health.degraded
            if result.error is None:
                if health.record_success(ended):
                    log.info("event=device_online bus=%s device=%s", self.bus_id,
                             poller.device_id)
                elif was_degraded:
                    log.info("event=device_reads_whole bus=%s device=%s", self.bus_id,
                             poller.device_id)
            else:
                came = health.online is not True
                if health.record_partial(result.error, ended):
                    log.warning("event=device_reads_partial bus=%s device=%s error=%s",
                                self.bus_id, poller.device_id, result.error)
                if came:
                    log.info("event=device_online bus=%s device=%s", self.bus_id,
                             poller.device_id)
        elif health.record_failure(result.error or "no answer"):
            log.warning("event=device_offline bus=%s device=%s failures=%d error=%s",
                        self.bus_id, poller.device_id, health.consecutive_failures,
                        result.error)
        samples = result.samples
        silenced = [] if crashed else self._note_quiet(poller.device_id, result)
        # unknown (never answered, fewer than offline_after failures: e.g. the first polls of a
        # dead device after a config apply) is said as unknown, never as "online" (issue 9)
        online = health.online
        # (the `Sample` made as the block decoder makes them: no Python-level `__new__`)
        samples.append(_new(Sample, (f"{poller.device_id}.{ONLINE_POINT}", online,
                                     self.clock.now_ns(), Quality.GOOD if online is not None
                                     else Quality.COMM_ERROR)))
        if silenced:
            samples.extend(Sample(f"{device}.{ONLINE_POINT}", False, samples[-1].ts,
                                  Quality.GOOD) for device in silenced)
        try:
            self.sink(samples)
        except Exception:
            log.exception("event=sink_failed bus=%s device=%s", self.bus_id, poller.device_id)
        return result

    def _note_quiet(self, device: str, result: PollResult) -> list[str]:
        """Bus silence: devices whose failures all began since the bus last answered anyone —
        at least `offline_after` of their polls and `min(live devices, 2 × offline_after)` of
        them — say it is the bus (its power, its cable, its adapter, a Modbus gateway's serial
        side), not a stray timeout: every device is offline now rather than each after its own
        `offline_after` failures (the storm audit's power dip: 15 devices at a 1 s timeout took
        31-55 s, past the 10 s the offline rule's basis asks for; now 6 s). A device failing
        since before another answered (dead, out for repair) neither counts nor is waited for,
        nor is a device polled every minute; any answer ends the run.
        Returns the devices that went offline here besides `device`, or []."""
        health, seq = self.stats.device_health, self._seq
        self._seq += 1
        if result.answered:
            if self.silent:
                log.info("event=bus_answers bus=%s device=%s", self.bus_id, device)
            self._quiet.clear()
            self._quiet_polls, self.silent, self._answered_seq = 0, False, seq
            return []
        if health[device].consecutive_failures <= 1:
            self._streak[device] = seq
        if self.silent or len(self.pollers) < 2 \
                or self._streak.get(device, seq) <= self._answered_seq:
            return []  # failing since before the bus last answered: says nothing of the bus
        self._quiet.add(device)
        self._quiet_polls += 1
        live = sum(1 for name, one in health.items() if not one.consecutive_failures
                   or self._streak.get(name, seq) > self._answered_seq)
        needed = min(live, 2 * self._policy.offline_after)
        if self._quiet_polls < self._policy.offline_after or len(self._quiet) < needed:
            return []
        self.silent = True
        log.warning("event=bus_silent bus=%s devices=%d silent=%d polls=%d error=%s",
                    self.bus_id, len(self.pollers), len(self._quiet), self._quiet_polls,
                    result.error)
        went = [name for name, one in health.items() if one.declare_offline()]
        for name in went:
            log.warning("event=device_offline bus=%s device=%s failures=%d error=bus silent",
                        self.bus_id, name, health[name].consecutive_failures)
        return [name for name in went if name != device]
