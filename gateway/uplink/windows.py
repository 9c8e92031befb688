"""Publish windows: what the committer's writer hands the event loop — the entries to publish
again (`resend`: the ingest did not confirm them in time) as far as the replay pacer allows,
then committed messages not handed out yet in this session (gateway.uplink.replay.take)."""

from __future__ import annotations

from gateway.records import dataclass
from gateway.uplink.outbox import Outbox, OutboxMessage
from gateway.uplink.replay import ReplayPacer, take


@dataclass(frozen=True, slots=True)
class Window:
    """Messages handed to the publisher, for the session `epoch` they were taken in."""

    epoch: int
    messages: list[OutboxMessage]


def take_window(outbox: Outbox, pacer: ReplayPacer, want: int, resend: list[int]
                ) -> tuple[list[OutboxMessage], list[int]]:
    """Up to `want` messages, and the entries of `resend` left for a later window.
    OutboxError if the outbox cannot be read (nothing is taken: `resend` is left whole)."""
    messages: list[OutboxMessage] = []
    allowance = pacer.allowance()
    if resend and allowance > 0:
        n = min(want, allowance)
        messages = outbox.fetch(resend[:n])
        resend = resend[n:]
        pacer.spend(len(messages), sum(len(m.payload) for m in messages))
    if len(messages) < want:
        messages += take(outbox, pacer, want - len(messages))
    return messages, resend
