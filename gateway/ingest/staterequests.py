"""How often the ingest may ask one gateway for its state and catalog again (`request_state`
on the gateway's `cmd` topic): at most once every `interval` seconds per gateway.

Which gateways were asked when is remembered for at most `MAX_GATEWAYS` gateways: entries
older than the interval hold nothing back and go first, then the oldest (batches naming
made-up gateways must not grow the ingest without end — the central audit)."""

from __future__ import annotations

import threading
from collections import OrderedDict

MAX_GATEWAYS = 10_000


class RequestThrottle:
    def __init__(self, interval: float, limit: int = MAX_GATEWAYS) -> None:
        self.interval = interval
        self.limit = limit
        self._asked: OrderedDict[tuple[str, str], float] = OrderedDict()
        """(site, gateway) → when it was last asked (monotonic), the oldest first."""
        self._lock = threading.Lock()
        self._n = 0

    def take(self, site: str, gateway: str, now: float) -> int | None:
        """The number of a request that may go to this gateway now, or None: asked within
        the interval."""
        key = (site, gateway)
        with self._lock:
            last = self._asked.get(key)
            if last is not None and now - last < self.interval:
                return None
            self._asked.pop(key, None)
            while self._asked and (len(self._asked) >= self.limit
                                   or now - next(iter(self._asked.values())) >= self.interval):
                self._asked.popitem(last=False)
            self._asked[key] = now
            self._n += 1
            return self._n

    def __len__(self) -> int:
        return len(self._asked)
