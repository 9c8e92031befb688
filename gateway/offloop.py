"""Blocking file work (writes and their fsyncs) run off the event loop, for a caller that holds
an asyncio lock around it.

Why: the event loop polls the buses and runs the rules; an fsync on it stops both for as long
as the disk takes. The config store's writes after the start (keeping the booted config and
its profiles: 16 fsyncs) ran on the loop, and with 3 s fsyncs (an SD card busy, a slow eMMC)
the loop was blocked 18 s: no polling, no rules (liveness audit L4).

`off_loop` is `asyncio.to_thread` with one difference: a caller cancelled while the work is
under way (the service stopping) waits for it to end before its cancellation goes on. The
work cannot be stopped in its thread, and the caller's lock (e.g. the config applier's, which
makes it the store's one writer) must not be let go while the work still writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


async def off_loop(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` in a worker thread; its result, or its exception."""
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        if not work.done():
            await asyncio.wait([work])  # it goes on in its thread: let it end first
        if not work.cancelled():
            work.exception()  # seen: not logged as "never retrieved" (the caller is gone)
        raise
