"""`Wakeup` (gateway.wakeup), what the bus loops and the evaluator sleep on: woken by `set()`
or by its timeout, a `set()` while nobody waits forgotten, a cancel raised — also one that
lands as the wait ends — and no exception raised and caught on the way out of a sleep that ran
out (what `asyncio.timeout` around `Event.wait()` did, at every sleep between two polls)."""

from __future__ import annotations

import asyncio
import sys
from types import FrameType
from typing import Any

import pytest

from gateway.wakeup import Wakeup


async def test_set_ends_the_wait() -> None:
    wakeup = Wakeup()
    waiting = asyncio.create_task(wakeup.wait(None))
    await asyncio.sleep(0)
    assert not waiting.done()
    wakeup.set()
    await waiting
    assert wakeup._waiter is None


async def test_the_timeout_ends_the_wait_without_an_exception() -> None:
    """A sleep that runs out raises nothing anywhere (`sys.settrace` sees no exception in any
    frame but the `StopIteration` of a coroutine's return), and leaves no waiter behind."""
    wakeup = Wakeup()
    raised: list[str] = []

    def watch(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "exception" and arg[0] is not StopIteration:  # (a coroutine's return)
            raised.append(f"{frame.f_code.co_name}: {arg[0].__name__}")
        return watch

    sys.settrace(watch)
    try:
        await wakeup.wait(0.001)
    finally:
        sys.settrace(None)
    assert raised == []
    assert wakeup._waiter is None


async def test_a_set_while_nobody_waits_is_forgotten() -> None:
    wakeup = Wakeup()
    wakeup.set()
    waiting = asyncio.create_task(wakeup.wait(None))
    for _ in range(3):
        await asyncio.sleep(0)
    assert not waiting.done()
    wakeup.set()
    await waiting


async def test_a_cancel_is_raised() -> None:
    wakeup = Wakeup()
    waiting = asyncio.create_task(wakeup.wait(None))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert wakeup._waiter is None
    wakeup.set()  # nobody waits: nothing to do


async def test_a_cancel_that_lands_as_the_wait_ends_is_raised() -> None:
    """Woken and cancelled in the same turn of the loop: the cancel is not swallowed (Python
    3.11's `asyncio.timeout` could swallow such a cancel)."""
    wakeup = Wakeup()
    waiting = asyncio.create_task(wakeup.wait(10.0))
    await asyncio.sleep(0)
    wakeup.set()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
