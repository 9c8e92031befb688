"""Exceptions nobody awaits, as asyncio logs them: the first of each kind with its traceback,
then one line a minute saying how many more came, never a traceback per occurrence.

Such exceptions come from code the gateway does not call itself, in a protocol callback, and
asyncio's default exception handler logs ~18 lines of traceback each time: a Modbus TCP
device whose reply's byte count disagreed with its data made pymodbus raise
`ModbusIOException` in `data_received` (the field audit: 2,900 a day for one device with the
shipped back-off; such a reply is now that read's comm error, gateway.field.modbus_replies'
`UndecodableReply`). Whatever still raises there is handled as asyncio handles it (the
transport is closed); only the log is bounded, by the project's `RateLimitFilter` on the
`asyncio` logger, keyed by the message's first line (the rest names the protocol and
transport objects, different every time).

And the gateway's own background tasks, whose exceptions nobody awaits either: `log_failure`
logs one when its task ends.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway.ops.connections import RateLimitFilter

MAX_KIND = 200
"""Characters of a message's first line that make its kind."""


def kind_of(record: logging.LogRecord) -> str:
    return record.getMessage().split("\n", 1)[0][:MAX_KIND]


def install() -> RateLimitFilter:
    """Put the filter on the `asyncio` logger (once per process); returns it."""
    logger = logging.getLogger("asyncio")
    for existing in logger.filters:
        if isinstance(existing, RateLimitFilter) and getattr(existing, "_kind", None) is kind_of:
            return existing
    limiter = RateLimitFilter(kind=kind_of)
    logger.addFilter(limiter)
    return limiter


def log_failure(task: asyncio.Task[Any]) -> None:
    """A done callback: a background task's exception is logged when it ends (asyncio's
    'never retrieved' comes at garbage collection, if ever)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        logging.getLogger("roomwarden.service").error(
            "event=task_failed task=%s error=%r", task.get_name(), exc, exc_info=exc)
