"""Snapshots kept only in memory: the outbox's messages that are never committed — the gateway's
own periodic `GatewayState` (gateway.uplink.state), a status report that the next refresh
(every `state_interval`) and every connect's birth replace anyway.

Why it need not be durable (DESIGN principle 5 as amended for issue 15: alarm events, alarm
states and command results are durable before they are published; this is none of them): a
committed state outlived its process only to be replaced by the next process's birth state, in
the very commit that stored the birth and before anything was handed out — so its commit bought
nothing, and it cost two of the outbox's remaining commits at rest (the state, then its delete
after the PUBACK: docs/performance.md, *SD-card wear*). Nothing the ingest does with a state
needs this one rather than the next: its `delivery.floor` only ever lets the watermark pass
numbers the gateway holds no more, `boot` is the same in every state of a process, and the last
will (`offline`) is the broker's. The active-alarm snapshot, the catalog, command results and
config statuses are committed as before.

At most one message per topic (a newer one replaces it at once, handed out or not); handed out
once per session as live state, before the committed state rows (a birth goes out first, as
the contract says); removed by its PUBACK. A failed PUBACK or a lost connection leaves it for
the next session, whose birth normally replaces it. Lost with the process: the next process's
birth says the same, newer. No lock and no SQL: the outbox calls it inside its lock.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.contract.vocab import MessageKind
from gateway.uplink.outbox_held import message
from gateway.uplink.outbox_table import OutboxMessage, Pending


class Volatile:
    def __init__(self) -> None:
        self._by_topic: dict[str, tuple[int, Pending]] = {}
        self._handed: set[int] = set()
        """Ids handed out in this session (not again until the next)."""

    def __len__(self) -> int:
        return len(self._by_topic)

    @property
    def bytes(self) -> int:
        return sum(m.size for _, m in self._by_topic.values())

    def put(self, row_id: int, m: Pending) -> None:
        """Keep `m` (with its outbox id), replacing what the topic held."""
        old = self._by_topic.get(m.topic)
        if old is not None:
            self._handed.discard(old[0])
        self._by_topic[m.topic] = (row_id, m)

    def take(self, limit: int) -> list[OutboxMessage]:
        """Up to `limit` messages not handed out yet in this session, in id order (live)."""
        out = [message(i, m, backlog=False) for i, m in sorted(self._by_topic.values(),
                                                               key=lambda e: e[0])
               if i not in self._handed][:max(0, limit)]
        self._handed.update(m.id for m in out)
        return out

    def new_session(self) -> None:
        """A new connection: what is still here goes out again (unless a birth replaces it)."""
        self._handed.clear()

    def remove_ids(self, ids: Iterable[int]) -> set[int]:
        """Acknowledged (PUBACK): gone; returns the ids that were here."""
        wanted = set(ids)
        gone = {i for i, _ in self._by_topic.values() if i in wanted}
        if gone:
            self._by_topic = {t: e for t, e in self._by_topic.items() if e[0] not in gone}
            self._handed -= gone
        return gone

    def count(self, kinds: Iterable[MessageKind]) -> int:
        wanted = set(kinds)
        return sum(1 for _, m in self._by_topic.values() if m.kind in wanted)

    def oldest_created(self) -> int | None:
        return min((m.created_ns for _, m in self._by_topic.values()), default=None)
