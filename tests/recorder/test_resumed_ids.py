"""A fire still active at each start of a gateway whose clock comes up at the same time after
every power cut (a Pi without a real-time clock): each start resumes the fire in a record of
its own — none replaces the record of the start before (the restart audit: three starts left
one record, the evidence of the first two gone)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.alarms.events import AlarmView
from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.alarms.types import Severity
from gateway.recorder.store import IncidentStore
from tests.recorder.keeper_rig import T0, FakeSources, keeper_of, settled


@dataclass
class BurningSources(FakeSources):
    """The journal restored the fire active; no event was journalled since."""

    def active_alarms(self) -> list[Any]:
        return [AlarmView(
            key=AlarmKey("fire.smoke", "tx"), state=AlarmState.ACTIVE_UNACKNOWLEDGED,
            condition=True, value=True, severity=Severity.CRITICAL, title="Fire", room="tx",
            actions=(), latching=False, chattering=False, activated_ns=T0, acked_by=None,
            acked_ns=None, shelf=None, suppression=None, out_of_service=None, first_out=True,
            flood_first_out=False, demanded_roles=frozenset(), acknowledgeable=True)]


def test_each_start_at_the_same_second_resumes_into_its_own_record(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents")
    opened = []
    for _ in range(3):  # three starts, each at the same wall-clock time, each killed
        keeper, _ = keeper_of(store, BurningSources(now=T0))
        keeper.observe()  # the first batch: the active fire opens a resumed record
        [incident] = keeper.open.values()
        opened.append(incident.id)
        settled(keeper)
        keeper.open.clear()  # a SIGKILL: nothing saved at the stop, the record stays open
        keeper.close_all()
    assert len(set(opened)) == 3, opened
    assert all(".resumed" in i for i in opened)
    assert store.ids() == sorted(opened)  # three records: none replaced another
    statuses = {i: store.load(i)["status"] for i in opened}
    assert statuses == {opened[0]: "interrupted", opened[1]: "interrupted",
                        opened[2]: "open"}
