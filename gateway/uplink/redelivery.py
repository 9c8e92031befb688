"""Re-delivery on the event loop: the ingest's acknowledgements in (covered entries leave the
outbox), and what they do not cover out again — at once for a hole, after the ack timeout
otherwise — with one timer at the earliest deadline (gateway.uplink.delivery decides, this
module acts). A watermark stuck below the lowest number this gateway still holds (its floor:
the numbers below were dropped to stay within the disk budget, or skipped after an unclean
stop: gateway.uplink.outbox_numbers) makes it publish its state, which carries the floor, so
the ingest can move on — at once for a floor it has not told yet (a gap after a crash is
passed a step at a time, each stored message below it first), else at most every
`ack_timeout`. An acknowledgement of numbers this gateway
never gave (`upto` or `highest` above the highest it committed) is ignored and logged at most
once a minute: taken, it would cover every message still to come, alarm events included."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.clock import Clock
from gateway.contract.inbound import read_ack
from gateway.contract.vocab import ContractError
from gateway.ops.connections import RateLimitFilter
from gateway.uplink.committer import Committer
from gateway.uplink.delivery import DeliveryTracker, Sent

log = logging.getLogger("roomwarden.uplink")
log.addFilter(RateLimitFilter(prefix="event=uplink_ack_beyond_issued"))  # a line a minute
log.addFilter(RateLimitFilter(prefix="event=uplink_resend"))  # the wear audit: with the ingest
# away a resend every 0.5-1 s was a line each (13 MB a day into journald on the SD card)

RESEND_SPACING = 0.5
"""The ack-timeout timer fires at most this often (what falls due meanwhile goes together)."""


class Redelivery:
    def __init__(self, tracker: DeliveryTracker, committer: Committer, clock: Clock, *,
                 stream: int, ack_topic: str, root: str, tell_floor: Callable[[], None]) -> None:
        self.tracker = tracker
        self.committer = committer
        self.clock = clock
        self.stream = stream
        self.ack_topic = ack_topic
        self.root = root
        self._tell_floor = tell_floor
        self._floor_told = float("-inf")
        self._floor_value: int | None = None
        self.refused_acks = 0
        """Acknowledgements ignored: they covered numbers this gateway never gave."""
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None

    def new_session(self) -> None:
        """Everything the outbox holds is handed out again: nothing awaits any more."""
        self.tracker.new_session()
        self._arm()

    def on_puback(self, sent: Sent, reason: int) -> None:
        """A successful PUBACK: the entry leaves now, or waits for the watermark."""
        if self.tracker.on_puback(sent, reason):
            self.committer.ack([sent.outbox_id])
        else:
            self._arm()

    def on_ack(self, payload: bytes) -> None:
        """A DeliveryAck on this gateway's `ack` topic (read without the model: issue 15,
        gateway.contract.inbound)."""
        try:
            ack = read_ack(self.ack_topic, payload, root=self.root)
        except ContractError as exc:
            log.warning("event=uplink_bad_ack bytes=%d error=%r", len(payload), str(exc))
            return
        if ack.stream != self.stream:
            return  # another stream: an outbox this gateway had before (wiped)
        issued = self.committer.issued
        if ack.upto > issued or ack.highest > issued:
            # numbers this gateway never gave: a forged or confused acknowledgement would
            # cover every message to come (nothing published again, alarms included)
            log.warning("event=uplink_ack_beyond_issued upto=%d highest=%d issued=%d",
                        ack.upto, ack.highest, issued)
            self.refused_acks += 1
            return
        went_back = ack.upto < self.tracker.covered  # the ingest reset its watermark
        self._resend(self.tracker.on_ack(ack.upto, ack.highest))
        self.committer.cover(self.tracker.covered, went_back)
        floor = self.committer.floor
        now = self.clock.monotonic()
        since = now - self._floor_told
        if floor is not None and ack.upto < floor - 1 and (
                since >= self.tracker.ack_timeout
                or (floor != self._floor_value and since >= RESEND_SPACING)):
            self._floor_told, self._floor_value = now, floor
            self._tell_floor()

    def _resend(self, ids: list[int]) -> None:
        if ids:
            log.info("event=uplink_resend count=%d covered=%d", len(ids), self.tracker.covered)
            self.committer.resend(ids)
        self._arm()

    def _arm(self) -> None:
        """One timer, at the earliest ack timeout but at least `RESEND_SPACING` from now (none
        while nothing awaits). A timer already set no later than that stays: moving it on at
        each PUBACK — faster than the spacing, every 150 ms — put off a deadline already past
        for as long as the PUBACKs came (nothing was ever published again by timeout)."""
        due = self.tracker.next_due()
        if due is not None:  # deadlines ≤ 0.5 s apart: one wake-up
            due = max(due, self.clock.monotonic() + RESEND_SPACING)
        if self._timer is not None:
            if due is not None and self._timer.when() <= due + 0.05:
                return
            self._timer.cancel()
            self._timer = None
        if due is not None and self._loop is not None:
            self._timer = self._loop.call_later(due - self.clock.monotonic(), self._on_due)

    def _on_due(self) -> None:
        self._timer = None
        self._resend(self.tracker.due())
