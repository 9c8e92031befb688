"""An alarm event reaches the uplink's outbox only once the alarm journal holds it (DESIGN
principle 5; liveness audit L1): while another process holds the journal's write lock the event
waits — the round and its outputs do not — and it goes to the outbox after the journal's writer
thread has committed it. (The outbox holding an event the journal lost would break the restart's
resend, tests/uplink/test_alarm_resend.py, and reuse a sequence number the ingest has seen.)"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from gateway.alarms.events import EventKind
from gateway.config.loader import load_gateway_config
from gateway.daemon import Gateway
from gateway.sim.site import SimulatedSite
from tests.helpers import Locker
from tests.ops.conftest import with_uplink
from tests.uplink.test_alarm_resend import SITE, alarm_payloads


def journal_seqs(state: Path) -> set[int]:
    with sqlite3.connect(state / "alarms.sqlite") as db:
        return {r[0] for r in db.execute("SELECT seq FROM events")}


def outbox_seqs(state: Path) -> set[int]:
    return {int(str(m["seq"])) for m in alarm_payloads(state)}


async def test_an_event_goes_to_the_outbox_only_once_the_journal_has_it(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with SimulatedSite(load_gateway_config(SITE)) as site:
        loaded = load_gateway_config(site.write_config(tmp_path / "sim.yaml"))
        # a loopback port nobody listens on: the outbox keeps everything
        gw = Gateway(with_uplink(loaded, 9), state_dir=state, panel_port=0)
        task = asyncio.create_task(gw.run())
        try:
            await asyncio.wait_for(gw.started.wait(), 10)
            await _check(gw, state)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _check(gw: Gateway, state: Path) -> None:
    locker: Locker | None = None
    try:
        locker = Locker(state / "alarms.sqlite")
        loop = asyncio.get_running_loop()
        began = loop.time()
        (event,) = gw.system_event(EventKind.CONFIG, "$config", "v9", "a test event")
        took = loop.time() - began
        await asyncio.sleep(2.0)  # the journal's writer tries; an alarm event's outbox commit
        assert event.seq not in journal_seqs(state)  # is at once: it would be there by now
        assert event.seq not in outbox_seqs(state)
        assert gw.core.journal.pending_events >= 1
        assert took < 0.5  # handed over to the journal's writer, not written on the loop

        locker.release()
        locker = None
        deadline = loop.time() + 15
        while event.seq not in outbox_seqs(state):
            assert loop.time() < deadline, "the event never reached the outbox"
            await asyncio.sleep(0.05)
        assert event.seq in journal_seqs(state)  # committed before it was handed on
    finally:
        if locker is not None:
            locker.release()
