"""What the event loop does with an exception nobody awaits: the first of each kind with its
traceback (asyncio's own handler), then one line a minute with the count, never a traceback per
occurrence.

Such exceptions come from code the gateway does not call itself, in a protocol callback: a
Modbus TCP device whose reply's byte count disagrees with its data makes pymodbus raise
`ModbusIOException` in `data_received` at every poll, and asyncio's default handler logs ~18
lines of traceback each time (the field audit: 2,900 a day for one device with the shipped
back-off). The connection is handled as before (pymodbus drops it; the link reconnects and
the device's poll fails with a comm error); only the log is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("roomwarden.loop")

INTERVAL = 60.0
"""Seconds between lines about one kind of exception."""
MAX_KINDS = 64
"""Kinds remembered at most (more: the memory starts afresh)."""


class LoopErrors:
    """An event loop's exception handler (`loop.set_exception_handler(LoopErrors())`)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._told: dict[tuple[str, str], float] = {}
        self._since: dict[tuple[str, str], int] = {}
        self.handled = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.handled += 1
        exc = context.get("exception")
        message = str(context.get("message", ""))
        key = (message[:200], type(exc).__qualname__ if exc is not None else "")
        now = self.clock()
        told = self._told.get(key)
        if told is None:
            if len(self._told) >= MAX_KINDS:
                self._told.clear()
                self._since.clear()
            self._told[key] = now
            self._since[key] = 0
            loop.default_exception_handler(context)
            return
        self._since[key] += 1
        if now - told >= INTERVAL:
            log.error("event=loop_exception message=%r error=%r times=%d (traceback logged "
                      "at the first)", message, exc, self._since[key])
            self._told[key] = now
            self._since[key] = 0


def install(loop: asyncio.AbstractEventLoop) -> LoopErrors:
    handler = LoopErrors()
    loop.set_exception_handler(handler)
    return handler
