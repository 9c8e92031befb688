"""An alarm event's clock mark (`clock_synced`: was the gateway's clock synchronised when it
stamped the event) reaches the outbox as it was when the event was stamped — also for an event
journalled before a restart and sent only at the next start, after NTP synchronised the clock
(the central ingest trusts an old event's time only when it says true: tests/ingest/
test_clock_backlog.py). The real gateway (its safety core, journal and outbox files)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway import clocksync
from gateway.alarms.types import Evaluation, Severity
from tests.uplink.test_alarm_resend import alarm_payloads, make


class SyncState:
    def __init__(self) -> None:
        self.synced = False

    def __call__(self) -> bool:
        return self.synced


def evaluation(active: bool) -> Evaluation:
    return Evaluation(rule="fire.smoke_coincidence", subject="tx-3f", active=active,
                      value=True, severity=Severity.CRITICAL, ts=time.time_ns(),
                      title="confirmed fire", room="tx-3f")


async def test_the_outbox_carries_each_events_mark_as_it_was_stamped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sync = SyncState()
    monkeypatch.setattr(clocksync, "synchronised", sync)
    state = tmp_path / "state"
    first = make(state)
    assert first.uplink is not None
    first.uplink.outbox.flush()
    # journalled while the clock was not synchronised, never handed to the uplink
    lost = first.core.alarms.observe([evaluation(True)])
    assert [e.clock_synced for e in lost] == [False]
    first.core.close()
    first.uplink.outbox.close()

    sync.synced = True  # NTP synchronised the clock before the next start
    second = make(state)
    assert second.uplink is not None
    second.uplink.on_alarm_events(second.core.alarms.observe([evaluation(False)]))
    second.uplink.committer.close()  # commit what is buffered (no writer thread yet)
    sent = alarm_payloads(state)
    assert [(m["seq"], m.get("clock_synced")) for m in sent] == [
        (lost[0].seq, False), (lost[0].seq + 1, True)]
    second.core.close()
