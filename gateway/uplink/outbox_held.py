"""Telemetry held in memory: the outbox's messages that wait for their acknowledgement before
they would be committed (gateway.uplink.outbox, "Durability and cost").

A telemetry batch is put with `hold`: it gets its row id at once (from the outbox's one
counter, so ids stay in put order across memory and file) and is handed out from here as live
telemetry, merged with the file's live rows by id (gateway.uplink.outbox_cursors). The
central side's acknowledgement removes it — the watermark (`covered`), or the broker's PUBACK
in `puback` mode — and it never touches the disk. What is still here when it is too old
(`older`: the uplink's `telemetry_hold`, or `commit_interval` while disconnected or the ingest
away: gateway.uplink.committer) goes to the outbox's pending messages with its id and is
committed like any other: from then on it is a row (backlog replay, budget, recovery).

No lock of its own and no SQL: the outbox calls it inside its lock.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable

from gateway.contract.vocab import MessageKind
from gateway.uplink.outbox_table import OutboxMessage, Pending


class Held:
    def __init__(self) -> None:
        self._ids: list[int] = []
        """Ascending (ids are given in put order)."""
        self._messages: dict[int, Pending] = {}
        self.bytes = 0
        """Accounted bytes (`Pending.size`) of what is held."""

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, row_id: int, message: Pending) -> None:
        if self._ids and row_id <= self._ids[-1]:
            raise ValueError("held ids must grow")
        self._ids.append(row_id)
        self._messages[row_id] = message
        self.bytes += message.size

    def __contains__(self, row_id: int) -> bool:
        return row_id in self._messages

    def _remove(self, gone: set[int]) -> int:
        if not gone:
            return 0
        self._ids = [i for i in self._ids if i not in gone]
        for row_id in gone:
            self.bytes -= self._messages.pop(row_id).size
        return len(gone)

    def remove_ids(self, ids: Iterable[int]) -> set[int]:
        """Acknowledged (PUBACK): gone; returns the ids that were held."""
        gone = {i for i in ids if i in self._messages}
        self._remove(gone)
        return gone

    def remove_covered(self, upto: int) -> int:
        """The watermark covers every dseq ≤ `upto`: those are gone; returns how many."""
        return self._remove({i for i, m in self._messages.items()
                             if m.dseq is not None and m.dseq <= upto})

    def oldest_since(self) -> float | None:
        """When the oldest held message was put (the outbox clock's monotonic seconds)."""
        return self._messages[self._ids[0]].since if self._ids else None

    def older(self, since: float | None) -> list[tuple[int, Pending]]:
        """Take out, oldest first, every message put at or before `since` (None: all)."""
        n = 0
        for row_id in self._ids:
            if since is not None and self._messages[row_id].since > since:
                break
            n += 1
        taken, self._ids = self._ids[:n], self._ids[n:]
        out = [(i, self._messages.pop(i)) for i in taken]
        self.bytes -= sum(m.size for _, m in out)
        return out

    def after(self, after: int, limit: int, ready: Callable[[Pending], bool]
              ) -> tuple[list[OutboxMessage], int | None]:
        """Up to `limit` held messages with an id above `after`, in id order, as live
        messages; stops at the first that is not `ready` (its numbers not committed yet) and
        returns its id as the second value (None: none blocked)."""
        out: list[OutboxMessage] = []
        for row_id in self._ids[bisect.bisect_right(self._ids, after):]:
            if len(out) >= limit:
                break
            m = self._messages[row_id]
            if not ready(m):
                return out, row_id
            out.append(message(row_id, m, backlog=False))
        return out, None

    def fetch(self, ids: Iterable[int]) -> list[OutboxMessage]:
        """The held messages with these ids, as backlog (to publish again)."""
        return [message(i, self._messages[i], backlog=True)
                for i in sorted(set(ids)) if i in self._messages]

    def count(self, kinds: Iterable[MessageKind]) -> int:
        wanted = set(kinds)
        return sum(1 for m in self._messages.values() if m.kind in wanted)

    def lowest_dseq(self) -> int | None:
        return min((m.dseq for m in self._messages.values() if m.dseq is not None),
                   default=None)

    def oldest_created(self) -> int | None:
        return min((m.created_ns for m in self._messages.values()), default=None)


def message(row_id: int, m: Pending, *, backlog: bool) -> OutboxMessage:
    return OutboxMessage(row_id, m.kind, m.topic, m.payload, m.qos, m.retain, m.created_ns,
                         backlog, m.dseq)
