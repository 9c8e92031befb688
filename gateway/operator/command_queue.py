"""The `cmd` messages in the order they arrived, each judged, remembered and carried out in
its turn, with the replay memory's disk writes off the event loop (DESIGN principles 4, 13).

Why: the replay memory (gateway.operator.replay) records an alarm command's id, with an fsync,
before the command is carried out, and notes its outcome after. An fsync on an SD card takes
hundreds of milliseconds to seconds, and while another process holds the file's lock (a
backup, `roomwarden` reading it, a stuck writer) a write waits up to the 5 s busy timeout. On
the event loop, that held the buses' polling, the rules and the sirens as long.

How:
- a message that arrives while none waits is judged at once (`CommandInbox.judge`: decode,
  signature, permission, time; no disk); a refusal or a `request_state` is answered at once
  (neither touches the memory), an alarm command to carry out starts the queue's task;
- one task takes the queue in order: the id's write (`remember`) in a worker thread
  (gateway.offloop), the loop polling and evaluating meanwhile; then, on the loop, the alarm
  manager's work (`carry_out`) and the answer; then the outcome's note (off the loop), and
  only then the next message. A command that expired meanwhile (it was valid when judged, but
  its turn or its write took past its `expires`) is not carried out: `carry_out` answers it
  `expired`, saying it expired while it waited, and its id stays used (a replay of it is
  `replayed`). So a command is durable in the memory before it is carried out
  (a power cut after it cannot make it new again), answers keep the order of arrival, and a
  replay of an id whose write is under way is judged after that write: `replayed`, never
  carried out twice. A message arriving while others wait joins the queue unjudged and is
  judged in its turn;
- bounded: at most MAX_WAITING wait besides the one under way; one more is answered `busy`
  (to its id, when one can be read), counted as refused and logged (within the inbox's log
  budget), and neither carried out nor remembered;
- `close()` (the uplink stopping): the command under way finishes (its write cannot be
  stopped in its thread), those still waiting are answered `unavailable` and logged. Should
  `close()` itself be cancelled, the task is cancelled, waits for the write under way
  (off_loop) and answers that command and the waiting ones `unavailable` too.
Answers go to the `answer` callback on the loop (the uplink publishes them on `cmd/result`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from gateway.offloop import off_loop
from gateway.operator import refusals as r
from gateway.operator.inbox import CommandInbox, Delivery, Pending

log = logging.getLogger("roomwarden.operator")

MAX_WAITING = 64
"""Messages that may wait for their turn behind a command whose write is under way (more than
a console's operators send in the seconds a slow disk takes; a flood beyond is `busy`)."""

STOPPING = r.Refused(r.UNAVAILABLE, "the gateway stopped before this command's turn came: "
                                    "nothing was carried out; send it anew (a new id) once "
                                    "the gateway is back")

Waiting = Pending | tuple[bytes, bool]
"""A command judged on arrival (to remember, then carry out), or a message not judged yet."""


class CommandQueue:
    def __init__(self, inbox: CommandInbox, answer: Callable[[Delivery], None], *,
                 limit: int = MAX_WAITING) -> None:
        """`answer` gets every message's Delivery, on the event loop, in the order the
        messages came to `submit`."""
        self.inbox = inbox
        self.limit = limit
        self._answer_to = answer
        self._waiting: deque[Waiting] = deque()
        self._current: Pending | None = None
        """The command whose id is being written (not answered yet)."""
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def waiting(self) -> int:
        """Messages waiting for their turn (the one under way not counted)."""
        return len(self._waiting)

    def submit(self, payload: bytes, retained: bool) -> None:
        """One `cmd` message, on the event loop: answered now, or queued for its turn."""
        if self._closed:
            self._answer(self.inbox.turn_away(payload, STOPPING))
        elif self._task is None:  # none waits before it: judged now
            step = self.inbox.judge(payload, retained)
            if isinstance(step, Delivery):
                self._answer(step)
                return
            self._waiting.append(step)
            self._task = asyncio.get_running_loop().create_task(self._drain(),
                                                                name="operator-commands")
        elif len(self._waiting) >= self.limit:
            self._answer(self.inbox.turn_away(payload, r.Refused(
                r.BUSY, f"{len(self._waiting)} commands already wait for this gateway's "
                        "replay memory (a slow or locked disk): this one was not carried out; "
                        "send it again in a moment")))
        else:
            self._waiting.append((bytes(payload), retained))

    async def close(self) -> None:
        """Take no more messages; wait for the command under way; answer those waiting
        `unavailable`."""
        self._closed = True
        task = self._task
        if task is None:
            return
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.wait([task])  # off_loop: the write under way ends first
            raise

    async def _drain(self) -> None:
        try:
            while self._waiting:
                if self._closed:
                    self._turn_away_all()
                    break
                try:
                    await self._take(self._waiting.popleft())
                except Exception:  # the inbox's steps never raise: a bug, the queue goes on
                    log.exception("event=command_queue_failed")
        except asyncio.CancelledError:
            if self._current is not None:
                self._answer(self.inbox.refuse(self._current, STOPPING))
            self._turn_away_all()
            raise
        finally:
            self._current = None
            self._task = None

    async def _take(self, item: Waiting) -> None:
        step = item if isinstance(item, Pending) else self.inbox.judge(*item)
        if isinstance(step, Delivery):
            self._answer(step)
            return
        self._current = step
        refusal = await off_loop(self.inbox.remember, step)
        self._current = None
        if refusal is not None:
            self._answer(self.inbox.refuse(step, refusal))
            return
        delivery, outcome = self.inbox.carry_out(step)  # on the loop: the alarm manager's work
        self._answer(delivery)
        await off_loop(self.inbox.note, step, outcome)

    def _turn_away_all(self) -> None:
        count = len(self._waiting)
        while self._waiting:
            item = self._waiting.popleft()
            self._answer(self.inbox.refuse(item, STOPPING) if isinstance(item, Pending)
                         else self.inbox.turn_away(item[0], STOPPING))
        if count:
            log.warning("event=command_queue_stopped refused=%d code=%s", count, r.UNAVAILABLE)

    def _answer(self, delivery: Delivery) -> None:
        try:
            self._answer_to(delivery)
        except Exception:
            log.exception("event=command_answer_failed")
