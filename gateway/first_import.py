"""Modules a feature needs at its first use, imported then in a worker thread, not on the event
loop the safety core runs on (issue 15, DESIGN principle 13).

A gateway at rest holds no module it does not use (the panel's models, the config applier,
live drills, cryptography for a flashed envelope); a first use imports them. Imported inside a
handler on the loop, that held the buses, the rules and the sirens for the import's time —
0.05–0.3 s on this machine, several times that on a Pi — at the moment an operator opens the
panel, flashes a config or starts a drill. `FirstImport.ready()` imports them once with
`asyncio.to_thread`: callers that come meanwhile wait for the same import and resume in the
order they came (one future's callbacks run in the order they were added), callers after it go
on at once (a done import is not awaited again), and a failed import is tried again at the next
call (its exception raised to the callers that waited for it). Make one per owner (a server, an
applier), not per module: its future belongs to the event loop that first awaited it.
"""

from __future__ import annotations

import asyncio
import importlib


def import_all(names: tuple[str, ...]) -> None:
    for name in names:
        importlib.import_module(name)


class FirstImport:
    def __init__(self, *names: str) -> None:
        self.names = names
        self._loading: asyncio.Future[None] | None = None

    async def ready(self) -> None:
        loading = self._loading
        if loading is None or (loading.done() and loading.exception() is not None):
            loading = self._loading = asyncio.ensure_future(
                asyncio.to_thread(import_all, self.names))
        if not loading.done():
            await asyncio.shield(loading)
        loading.result()
