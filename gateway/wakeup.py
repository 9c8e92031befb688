"""Sleep until woken or until a timeout, without a cancellation at the timeout.

`asyncio.timeout` around `Event.wait()` ends a sleep that runs out by cancelling the task and
turning the `CancelledError` into a `TimeoutError` on its way out: an exception raised through
the coroutines and caught, ~86,000 instructions a sleep on the development VM's Python 3.11
against ~56,000 for a timer that resolves a future (issue 15: the bus loop sleeps between
every two polls, ten times a second at 200 points @100 ms). `Wakeup` is that timer and future.
"""

from __future__ import annotations

import asyncio


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Wakeup:
    """`await wakeup.wait(timeout)` returns when `set()` is called or `timeout` seconds have
    passed (None: no limit), whichever is first; a `set()` while nobody waits is forgotten
    (as an `asyncio.Event` cleared before each wait). A cancel of the waiting task is raised
    as it comes; one that lands as the wait ends is not swallowed."""

    __slots__ = ("_waiter",)

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _wake, waiter)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._waiter = None
