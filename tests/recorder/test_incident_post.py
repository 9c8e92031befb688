"""An incident ends `post` after the last moment an alarm of its room was active, to the
nanosecond of the event that ended that alarm — not up to `COPY_EVERY` earlier because the
keeper looks at the room only that often (before: an alarm that returned 3 s after the
keeper's last look gave a record 3 s short of its `post`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gateway.alarms.lifecycle import AlarmState
from gateway.recorder.incidents import COPY_EVERY
from gateway.recorder.store import IncidentStore
from tests.recorder.keeper_rig import FakeSources, alarm, feed, keeper_of, settled

POST = 5.0
NS = 10**9


def test_a_record_ends_post_after_its_rooms_alarm_returned(tmp_path: Path) -> None:
    assert COPY_EVERY == POST  # the look every 5 s the test steps around
    mono = [0.0]
    store = IncidentStore(tmp_path / "incidents")
    sources = FakeSources()
    keeper, recorder = keeper_of(store, sources, post=POST, max_duration=600.0)
    keeper._monotonic = lambda: mono[0]  # the copy interval's clock, the test's
    feed(recorder, sources, 2.0, rate=10)
    trigger = sources.now
    sources.events.append(alarm(1, trigger))
    keeper.observe()  # opens, and looks at once: the alarm is active, end trigger + post

    def run(seconds: float) -> None:
        feed(recorder, sources, seconds, rate=10)
        mono[0] += seconds
        keeper.observe()

    run(3.0)
    returned = sources.now  # 3 s after the look: the alarm returns, the room is quiet
    sources.events.append(dataclasses.replace(
        alarm(2, returned), state=AlarmState.RETURNED_UNACKNOWLEDGED,
        previous_state=AlarmState.ACTIVE_UNACKNOWLEDGED, first_out=False))
    sources.active = False
    run(0.1)
    run(2.9)  # the next look (6 s after the trigger): still open, until returned + post
    assert keeper.open
    run(3.0)
    run(2.0)  # the look after returned + post
    settled(keeper)
    [incident_id] = store.ids()
    record = store.load(incident_id)
    assert record["status"] == "closed"
    assert record["until_ns"] == returned + int(POST * NS)
    assert max(record["points"]["fast-1.v"]["ts"]) * 10**6 >= record["until_ns"] - NS // 10
