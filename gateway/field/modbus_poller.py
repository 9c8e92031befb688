"""Poll one Modbus device: run its planned reads, decode, learn splits around illegal ranges."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gateway.clock import Clock
from gateway.config.profile import ModbusProfile
from gateway.config.site import Device
from gateway.field.block import BlockDecoder
from gateway.field.modbus_link import (
    ILLEGAL_ADDRESS,
    ILLEGAL_VALUE,
    CommFailure,
    ExceptionReply,
    ModbusLink,
)
from gateway.field.planner import Barrier, ReadRequest, plan_requests, split_request
from gateway.field.poll import DevicePollerBase, PollResult
from gateway.field.readings import bit_samples, failed_samples, register_samples
from gateway.field.sample import Quality, Sample

log = logging.getLogger("roomwarden.field")

SPLITTABLE = (ILLEGAL_ADDRESS, ILLEGAL_VALUE)

MERGE_RETRY_POLLS = 100
"""Clean polls in a row (no read refused with exception 2 or 3) after which a device's learned
splits are dropped for one poll and its merged reads tried again. A device that refused a read
once (booting, a converter's firmware hiccup) was otherwise read in parts for good: about one
request per point on a slow RS-485 line, where each costs the turnaround. A device that keeps
refusing a point even alone never has a clean poll and keeps its splits."""
MERGE_RETRY_MAX_POLLS = 64 * MERGE_RETRY_POLLS
"""The longest wait between retries: each retry refused again (a real gap in the register
map) doubles the wait up to this, so a real gap costs the refused reads that find it (one,
unless the split has to be searched for) once per 6,400 polls at most."""


class ModbusDevicePoller(DevicePollerBase[ModbusProfile, ModbusLink]):
    def __init__(self, device: Device, profile: ModbusProfile, link: ModbusLink, clock: Clock,
                 *, max_gap: int) -> None:
        super().__init__(device, profile, link, clock)
        self.max_gap = max_gap
        self.barriers: set[Barrier] = set()
        self.clean_polls = 0
        """Polls in a row with no read refused (exception 2 or 3) since the splits were last
        learned or retried; a poll cut short by a lost link neither counts nor breaks the row."""
        self.merge_retry_polls = MERGE_RETRY_POLLS
        """Clean polls after which the merged reads are tried again (doubles, see above)."""
        self.unreadable: set[str] = set()
        """Points the device refuses even when read alone (reported `invalid`)."""
        self.plan: list[ReadRequest] = []
        self._decoders: dict[int, tuple[ReadRequest, BlockDecoder]] = {}
        """id(request) → the planned register request and its compiled decoder."""
        self._replan()

    def _replan(self) -> None:
        self.plan = plan_requests(
            self.points, max_registers=self.profile.max_registers_per_request,
            max_bits=self.profile.max_bits_per_request, max_gap=self.max_gap,
            barriers=self.barriers)
        self._decoders = {id(r): (r, BlockDecoder(r)) for r in self.plan
                          if not r.register.is_bit}

    @property
    def worst_poll_seconds(self) -> float:
        """A (re)connect and every planned request answered just inside the bus timeout, with
        the RTU silence before each."""
        timeout = self.link.bus.timeout
        return timeout + len(self.plan) * (timeout + self.link.frame_gap)

    def hold_off(self) -> float:
        """Seconds before this device may be asked again: after a failed exchange on RTU, a
        bus timeout (gateway.field.rtu_line.UnitGuard)."""
        guard = self.link.guard
        return guard.wait_before(self.device.unit) if guard is not None else 0.0

    def _begin_retry(self) -> set[Barrier] | None:
        """Splits are learned, not configured: after `merge_retry_polls` clean polls, drop them
        for this poll and read merged again. A read still refused is split in this poll as any
        refused read is, so no point loses its sample. Returns the splits dropped, if any."""
        if not self.barriers or self.clean_polls < self.merge_retry_polls:
            return None
        kept, self.barriers = self.barriers, set()
        self._replan()
        return kept

    def _count_poll(self, kept: set[Barrier] | None, refused: bool, learned: bool,
                    cut_short: bool) -> None:
        """After a poll: count it clean, or settle a retry. Splits a retry learns again (a real
        gap) are kept twice as long as before; a new split resets the wait."""
        if kept is None:
            if refused:
                self.clean_polls = 0
                if learned:
                    self.merge_retry_polls = MERGE_RETRY_POLLS
            elif self.barriers and not cut_short:
                self.clean_polls += 1
        elif learned:
            if cut_short:  # the parts not read yet proved nothing
                self.barriers |= kept
                self._replan()
            self.clean_polls = 0
            self.merge_retry_polls = min(2 * self.merge_retry_polls, MERGE_RETRY_MAX_POLLS)
            log.info("event=merge_retry_refused device=%s splits=%d next_retry_polls=%d",
                     self.device_id, len(self.barriers), self.merge_retry_polls)
        elif cut_short:
            # the link failed before every read was made: keep the splits, try again next poll
            self.barriers |= kept
            self._replan()
        else:
            self.clean_polls = 0
            self.merge_retry_polls = MERGE_RETRY_POLLS
            log.info("event=splits_forgotten device=%s splits=%d requests=%d",
                     self.device_id, len(kept), len(self.plan))

    async def poll(self) -> PollResult:
        kept = self._begin_retry()
        samples: list[Sample] = []
        pending = list(self.plan)
        answered = delivered = False
        error: str | None = None
        requests = 0
        refused = learned = cut_short = False
        link, unit, decoders, now_ns = self.link, self.device.unit, self._decoders, \
            self.clock.now_ns
        while pending:
            request = pending.pop(0)
            requests += 1
            # a planned register read has its compiled decoder, which reads the reply's bytes;
            # a bit read, or a part of a request split in this poll (planned and compiled
            # after it), is read as values and decoded point by point
            compiled = decoders.get(id(request))
            decoder = compiled[1] if compiled is not None and compiled[0] is request else None
            values: Sequence[int] | Sequence[bool] | bytes
            try:
                if decoder is not None:
                    values = await link.read_words(request, unit)
                else:
                    values = await link.read(request, unit)
            except ExceptionReply as exc:
                answered = True  # the device is alive; it refused this range
                if exc.code in SPLITTABLE:
                    refused = True
                    split = split_request(request)
                    if split is not None:
                        barrier, parts = split
                        self.barriers.add(barrier)
                        learned = True
                        pending[0:0] = parts
                        log.info("event=request_split device=%s request=%r barrier=%d code=%d",
                                 self.device_id, request.describe(), barrier.address, exc.code)
                        continue
                    new = {p.id for p in request.points} - self.unreadable
                    if new:
                        self.unreadable |= new
                        log.warning("event=points_unreadable device=%s points=%s reason=%s",
                                    self.device_id, ",".join(sorted(new)), exc)
                    failed_samples(request.points, self.clock.now_ns(), Quality.INVALID, samples)
                    delivered = True  # the device said what it refuses: its answer
                else:
                    error = str(exc)
                    failed_samples(request.points, self.clock.now_ns(), Quality.COMM_ERROR,
                                   samples)
                continue
            except CommFailure as exc:
                # A device that does not answer one request will not answer the next: fail the
                # rest of this poll at once so it costs the bus at most one timeout.
                error = str(exc)
                ts = self.clock.now_ns()
                failed_samples(request.points, ts, Quality.COMM_ERROR, samples)
                for rest in pending:
                    failed_samples(rest.points, ts, Quality.COMM_ERROR, samples)
                pending.clear()
                cut_short = True
                break
            answered = delivered = True
            ts = now_ns()
            if decoder is not None:
                decoder.words(values, ts, samples)  # type: ignore[arg-type]
            elif request.register.is_bit:
                bit_samples(request, values, ts, samples)  # type: ignore[arg-type]
            else:
                register_samples(request, values, ts, samples)
        if learned:
            self._replan()
        self._count_poll(kept, refused, learned, cut_short)
        return PollResult(samples, answered=answered, error=error, requests=requests,
                          delivered=delivered)
