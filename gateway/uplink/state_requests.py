"""`request_state` on `cmd`, spaced: it needs no signature (the ingest sends it when a batch
names a catalog it lacks), so anyone who may publish on `cmd` can send any number. The first
is carried out (state, catalog and active alarms published again) and answered; those within
the next `REQUEST_STATE_SPACING` are folded into one republish at its end, with no answer of
their own. 40,000 of them once queued 245 MiB of catalogs and held the bus loops back 28 s."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.clock import Clock

if TYPE_CHECKING:
    from gateway.contract.commands import CommandResult

REQUEST_STATE_SPACING = 5.0
"""Seconds between two republishes for `request_state`."""


class StateRequests:
    def __init__(self, clock: Clock, republish: Callable[[], None],
                 answer: Callable[[CommandResult], None]) -> None:
        self.clock = clock
        self._republish = republish
        self._answer = answer
        self._last = float("-inf")
        self._timer: asyncio.TimerHandle | None = None
        self.coalesced = 0
        """Requests folded into a later republish."""

    def request(self, answer: CommandResult | None) -> None:
        """A `request_state` arrived (on the event loop), with its answer."""
        now = self.clock.monotonic()
        due = self._last + REQUEST_STATE_SPACING
        if now >= due:
            self._last = now
            self._republish()
            if answer is not None:
                self._answer(answer)
            return
        self.coalesced += 1
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(due - now, self._late)

    def _late(self) -> None:
        self._timer = None
        self._last = self.clock.monotonic()
        self._republish()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
