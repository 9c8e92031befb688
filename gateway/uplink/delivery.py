"""When an outbox entry is delivered: the bookkeeping between PUBLISH, PUBACK and the ingest's
acknowledgement watermark. Pure and clock-injected; the uplink calls it on the event loop.

A broker's PUBACK is not delivery (DESIGN principle 5): a broker acknowledges before it
persists, a SIGKILLed or restarted broker without persistence forgets, and MQTT 5 even
acknowledges with "no matching subscribers" (reason 16) when nobody will ever read the
message. So, in `ingest` mode:

- a telemetry batch or alarm event carrying a delivery sequence (`dseq`) is only marked
  *awaiting* when its PUBACK arrives; it leaves the outbox when the ingest's `ack` watermark
  (`DeliveryAck.upto`, per outbox stream) covers it;
- it is published again when the ingest has not covered it `ack_timeout` after its PUBACK (the
  timeout doubles with each attempt, up to `max_timeout` — up to `away_timeout`, an hour, once
  the ingest has confirmed nothing for a whole `max_timeout`), or at once when an ack shows a hole:
  the ingest stored a higher `dseq` (`highest`) while this one, acknowledged by the broker at
  least `gap_grace` earlier, is still missing;
- everything else (state, catalog, command results: snapshots re-sent on every connect) leaves
  on PUBACK, as do entries without a `dseq` (stored before the mode was switched on).

In `puback` mode (a consumer other than the RoomWarden ingest, chosen explicitly in the
config) an entry leaves on PUBACK — except that telemetry and alarm events answered with
"no matching subscribers" are kept and published again after `ack_timeout`.

A PUBACK with a failure reason (not authorised, quota exceeded …) leaves the entry in the
outbox for the next session, in both modes.

Bounded bookkeeping (a broker that is up for days while the ingest is down): at most one
awaiting entry per outbox id; the heaps by deadline and by dseq drop their stale entries when
they hold more than twice what awaits (+64); an attempt count is kept only while its entry
awaits, or for `forget_after` (default twice `max_timeout`) of PUBACK traffic after it was
handed back for re-sending — an entry the outbox dropped meanwhile (disk budget) is never
acknowledged again, and its count is forgotten then (one that comes back later only starts its
back-off again). So everything here is bounded by what the outbox holds plus what it dropped
within the last `forget_after`, whatever the number of re-sends.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Literal

from gateway.clock import Clock
from gateway.contract.vocab import MessageKind
from gateway.records import dataclass

Mode = Literal["ingest", "puback"]
NO_MATCHING_SUBSCRIBERS = 16
"""MQTT 5 PUBACK reason: accepted, but nobody subscribes to the topic."""
TRACKED = frozenset({MessageKind.TELEMETRY, MessageKind.ALARM})


@dataclass(frozen=True, slots=True)
class Sent:
    """One PUBLISH awaiting its PUBACK."""

    outbox_id: int
    kind: MessageKind
    dseq: int | None
    produced: int
    """When the message was produced (ns): publish latency is measured from here."""


@dataclass(slots=True)
class _Awaiting:
    dseq: int | None
    pubacked: float
    due: float


class DeliveryTracker:
    def __init__(self, clock: Clock, *, mode: Mode, ack_timeout: float = 30.0,
                 max_timeout: float = 300.0, gap_grace: float = 2.0,
                 forget_after: float | None = None, away_timeout: float = 3600.0) -> None:
        if not 0 < ack_timeout <= max_timeout:
            raise ValueError("need 0 < ack_timeout <= max_timeout")
        self.forget_after = 2 * max_timeout if forget_after is None else forget_after
        self.away_timeout = away_timeout
        """The back-off's ceiling while the ingest is away (`_ingest_away`)."""
        """How long an attempt count outlives its entry's re-send without a new PUBACK."""
        self.clock = clock
        self.mode: Mode = mode
        self.ack_timeout = ack_timeout
        self.max_timeout = max_timeout
        self.gap_grace = gap_grace
        self.covered = 0
        """The highest watermark of this outbox's stream seen so far."""
        self.highest = 0
        self._awaiting: dict[int, _Awaiting] = {}
        """outbox id → awaiting the ingest (or, in puback mode, a subscriber)."""
        self._by_due: list[tuple[float, int]] = []
        """(due, outbox id), a heap; an entry whose id no longer awaits with that due is
        stale and skipped (so a timeout or an ack costs O(log n) per entry it touches, not a
        scan of everything that awaits — a long ingest outage leaves tens of thousands)."""
        self._by_dseq: list[tuple[int, float, int]] = []
        """(dseq, PUBACK time, outbox id) of numbered entries, a heap, stale entries (an id
        that no longer awaits with that PUBACK time) skipped likewise."""
        self._attempts: dict[int, int] = {}
        """outbox id → times re-sent, for ids that await or sit in `_handed_back`."""
        self._handed_back: dict[int, float] = {}
        """outbox id → when it was handed back for re-sending (or its wait ended with a new
        session) and not PUBACKed since, in that order (monotonic times only grow)."""
        self.resent = 0
        """Entries published again since start (timeouts and holes)."""
        self.delivered = 0
        """Entries the watermark covered since start."""
        self._unconfirmed_since: float | None = None
        """Since when (monotonic) something has waited for the ingest with no watermark
        progress: the start of the wait, or the last move of the watermark during it."""

    @property
    def awaiting(self) -> int:
        return len(self._awaiting)

    def on_puback(self, sent: Sent, reason: int) -> bool:
        """A successful PUBACK (reason < 0x80). True: the entry leaves the outbox now
        (`Outbox.ack`); False: it waits for the watermark, or for a subscriber."""
        now = self.clock.monotonic()
        self._expire(now)
        tracked = sent.kind in TRACKED
        if self.mode == "ingest" and tracked and sent.dseq is not None:
            if sent.dseq <= self.covered:  # already covered: the outbox removes it with the
                self._forget(sent.outbox_id)  # watermark
                return False
        elif not (tracked and reason == NO_MATCHING_SUBSCRIBERS and self.mode == "puback"):
            self._forget(sent.outbox_id)
            return True
        if self._unconfirmed_since is None or not (self._awaiting or self._handed_back):
            self._unconfirmed_since = now  # a wait begins (none was on)
        self._handed_back.pop(sent.outbox_id, None)
        attempts = self._attempts.get(sent.outbox_id, 0)
        ceiling = max(self.away_timeout, self.max_timeout) if self._ingest_away(now) \
            else self.max_timeout
        timeout = min(ceiling, self.ack_timeout * 2 ** min(attempts, 16))
        self._awaiting[sent.outbox_id] = _Awaiting(sent.dseq, now, now + timeout)
        heapq.heappush(self._by_due, (now + timeout, sent.outbox_id))
        if sent.dseq is not None:
            heapq.heappush(self._by_dseq, (sent.dseq, now, sent.outbox_id))
        self._compact()
        return False

    def on_ack(self, upto: int, highest: int) -> list[int]:
        """The ingest's watermark for our stream. Covered entries are forgotten (the outbox
        removes them: `Outbox.cover`); returns the outbox ids to publish again now (holes)."""
        now = self.clock.monotonic()
        self.highest = max(self.highest, highest)
        if upto > self.covered:
            self.covered = upto
            if self._unconfirmed_since is not None:
                self._unconfirmed_since = now
        resend: list[int] = []
        young: list[tuple[int, float, int]] = []
        heap = self._by_dseq
        while heap and heap[0][0] < self.highest:
            dseq, pubacked, outbox_id = heapq.heappop(heap)
            entry = self._awaiting.get(outbox_id)
            if entry is None or entry.pubacked != pubacked:
                continue  # stale: re-sent, delivered or acknowledged again meanwhile
            if dseq <= self.covered:
                del self._awaiting[outbox_id]
                self._forget(outbox_id)
                self.delivered += 1
            elif now - entry.pubacked >= self.gap_grace:
                resend.append(outbox_id)  # a hole below what the ingest stored
            else:
                young.append((dseq, pubacked, outbox_id))
        while heap and heap[0][0] <= self.covered:  # covered at or above `highest`
            dseq, pubacked, outbox_id = heapq.heappop(heap)
            entry = self._awaiting.get(outbox_id)
            if entry is not None and entry.pubacked == pubacked:
                del self._awaiting[outbox_id]
                self._forget(outbox_id)
                self.delivered += 1
        for item in young:
            heapq.heappush(heap, item)
        return self._resend(resend)

    def _ingest_away(self, now: float) -> bool:
        """The ingest has confirmed nothing for a whole `max_timeout` while entries waited: it
        is down (or not subscribed). Publishing everything again every `max_timeout` then only
        loads the broker, more the longer the outage (the idle audit: 16 → 28 wake-ups a second
        in 5 minutes at 200 points; ~96 re-sends a second after 8 hours): the back-off goes on
        doubling, to `away_timeout`. Nothing waits longer for it when the ingest is back: the
        first batch it stores shows every older one as a hole, sent again at once."""
        since = self._unconfirmed_since  # (`puback` mode has no holes to recover by: no)
        return self.mode == "ingest" and since is not None and now - since >= self.max_timeout

    def unconfirmed_for(self) -> float:
        """Seconds the ingest has confirmed nothing while entries wait for it (0: none wait,
        or its watermark moved since they began to): long, the ingest is down, not
        subscribed, or not the RoomWarden ingest (`delivery: ingest` needs it)."""
        if not self._awaiting and not self._handed_back:
            self._unconfirmed_since = None
            return 0.0
        if self._unconfirmed_since is None:
            return 0.0
        return max(0.0, self.clock.monotonic() - self._unconfirmed_since)

    def due(self) -> list[int]:
        """Outbox ids whose wait is over: publish them again."""
        now = self.clock.monotonic()
        out: list[int] = []
        while self._by_due and self._by_due[0][0] <= now:
            due, outbox_id = heapq.heappop(self._by_due)
            entry = self._awaiting.get(outbox_id)
            if entry is not None and entry.due == due:  # duplicates: _resend takes each once
                out.append(outbox_id)
        return self._resend(out)

    def next_due(self) -> float | None:
        """Monotonic time of the earliest timeout (None: nothing awaits)."""
        heap = self._by_due
        while heap:
            due, outbox_id = heap[0]
            entry = self._awaiting.get(outbox_id)
            if entry is not None and entry.due == due:
                return due
            heapq.heappop(heap)  # stale
        return None

    def _resend(self, ids: list[int]) -> list[int]:
        out = []
        now = self.clock.monotonic()
        for outbox_id in ids:
            if self._awaiting.pop(outbox_id, None) is not None:  # each id once
                self._attempts[outbox_id] = self._attempts.get(outbox_id, 0) + 1
                self._handed_back[outbox_id] = now
                out.append(outbox_id)
        self.resent += len(out)
        return out

    def new_session(self) -> None:
        """A new connection: the outbox hands out everything it holds again, so nothing
        awaits any more (attempt counts are kept: the back-off goes on, for what comes back
        within `forget_after` of PUBACK traffic)."""
        now = self.clock.monotonic()
        handed_back = dict.fromkeys(self._handed_back, now)
        handed_back.update((i, now) for i in self._awaiting if i in self._attempts)
        self._handed_back = handed_back
        self._awaiting.clear()
        self._by_due.clear()
        self._by_dseq.clear()

    def forget(self, ids: Iterable[int]) -> None:
        """These outbox entries are gone (dropped to keep within the disk budget): nothing
        about them is kept (optional: what is never PUBACKed again is forgotten anyway)."""
        for outbox_id in ids:
            self._awaiting.pop(outbox_id, None)
            self._forget(outbox_id)
        self._compact()

    def _forget(self, outbox_id: int) -> None:
        self._attempts.pop(outbox_id, None)
        self._handed_back.pop(outbox_id, None)

    def _expire(self, now: float) -> None:
        """Forget the counts of entries handed back `forget_after` ago and not PUBACKed
        since (the outbox no longer holds them). Called on PUBACKs only: while the broker is
        away nothing comes back, and nothing is forgotten (a new session restarts the
        clock)."""
        handed_back = self._handed_back
        horizon = now - self.forget_after
        old = []
        for outbox_id, since in handed_back.items():  # oldest first
            if since > horizon:
                break
            old.append(outbox_id)
        for outbox_id in old:
            del handed_back[outbox_id]
            self._attempts.pop(outbox_id, None)

    def _compact(self) -> None:
        """Drop the heaps' stale entries once they outnumber what awaits (amortised O(1))."""
        limit = 2 * len(self._awaiting) + 64
        if len(self._by_due) > limit:
            self._by_due = [(a.due, i) for i, a in self._awaiting.items()]
            heapq.heapify(self._by_due)
        if len(self._by_dseq) > limit:
            self._by_dseq = [(a.dseq, a.pubacked, i) for i, a in self._awaiting.items()
                             if a.dseq is not None]
            heapq.heapify(self._by_dseq)
