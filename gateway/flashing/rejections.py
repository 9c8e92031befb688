"""What the config applier reads of an envelope before it is verified (its id and version, to
answer even a broken one) and how it logs refusals: a flood of bad `config/set` messages is
counted, not logged line by line.

At most LOG_BUDGET `event=config_rejected` lines per LOG_WINDOW_S (the limit refused `cmd`
messages have, gateway.operator.inbox); the refusals beyond it are counted, and the count is
logged — with the next refusal logged (`suppressed=N`) or, if none comes, at the end of the
window (`event=config_rejected_suppressed count=N`). Every line carries the running total
(`rejected_total`). The `config/status` answers are not limited: each request is answered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable

from gateway.contract.base import REQUEST_ID_PATTERN
from gateway.flashing.seen import MAX_VERSION
from gateway.ops.connections import LogBudget

log = logging.getLogger("roomwarden.flashing")

LOG_BUDGET = 30
LOG_WINDOW_S = 60.0
PEEK_BYTES = 1_000_000
"""How much of a payload is parsed to find its id and version (the verifier's own limit
decides the rest)."""


def peek(raw: bytes) -> tuple[str | None, int | None]:
    """The request id and version an envelope names, where they can be read — before it is
    verified: for the `received` answer and for refusals (a broken one is still answered)."""
    try:
        data = json.loads(raw[:PEEK_BYTES])
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    rid, version = data.get("id"), data.get("version")
    # only what a ConfigStatus can carry (a space or non-ASCII: no id, still answered)
    good_id = rid if isinstance(rid, str) and re.fullmatch(REQUEST_ID_PATTERN, rid) else None
    good_version = version if (type(version) is int and 0 <= version <= MAX_VERSION) else None
    return good_id, good_version


class RejectionLog:
    """`event=config_rejected` lines within a budget (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.rejected = 0
        """Every refusal so far, logged or not."""
        self._budget = LogBudget(LOG_BUDGET, LOG_WINDOW_S, clock=clock)
        self._timer: asyncio.TimerHandle | None = None

    @property
    def suppressed(self) -> int:
        """Refusals not logged since the last line."""
        return self._budget.suppressed

    def rejected_line(self, source: str, request_id: str | None, code: str,
                      reason: object) -> None:
        self.rejected += 1
        left_out = self._budget.take()
        if left_out is None:
            budget = self._budget
            self._report_later(budget.window_start + budget.window - self._clock())
            return
        text = ("event=config_rejected source=%s id=%s code=%s reason=%s rejected_total=%d")
        args: tuple[object, ...] = (source, request_id, code, reason, self.rejected)
        if left_out:
            text, args = text + " suppressed=%d", (*args, left_out)
        log.warning(text, *args)

    def _report_later(self, delay: float) -> None:
        """At the end of the window, say how many refusals were left out (if no line did)."""
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on a loop: the next line logged says it
            return
        self._timer = loop.call_later(max(0.0, delay), self.report_suppressed)

    def report_suppressed(self) -> None:
        self._timer = None
        if self._budget.suppressed:
            log.warning("event=config_rejected_suppressed count=%d window_s=%.0f "
                        "rejected_total=%d", self._budget.suppressed, self._budget.window,
                        self.rejected)
            self._budget.suppressed = 0
