"""What a crash may lose of an open incident is what it was before its progress file (the wear
audit, W3: gateway/recorder/progress.py): the last minute. A process that dies with an incident
open leaves its record as it opened and a progress file with every save since; the next start
rebuilds the record from it — the same record the dead process would have written then, as
`interrupted` — leaves out a save a power loss cut short, and deletes the file. A failed append
and a clock step make the next save write the incident whole."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.recorder.clockstep import follow_step
from gateway.recorder.incidents import IncidentKeeper, record_of
from gateway.recorder.store import IncidentStore
from tests.recorder.keeper_rig import (
    FakeSources,
    a_save_each_batch,
    alarm,
    feed,
    keeper_of,
    settled,
)

pytestmark = pytest.mark.usefixtures(a_save_each_batch.__name__)  # (imported: keeper_rig)


def as_stored(keeper: IncidentKeeper) -> dict[str, Any]:
    """The open incident's record as a stop would write it now (`interrupted`)."""
    [incident] = keeper.open.values()
    record = record_of(incident, "interrupted", {"ok": True})
    return dict(json.loads(json.dumps(record)))  # (tuples as lists, as read back)


def crashed_with_an_open_incident(tmp_path: Path, saves: int
                                  ) -> tuple[IncidentStore, IncidentKeeper, FakeSources,
                                             list[dict[str, Any]]]:
    """An incident open for `saves` saves (a second of samples, a room event each); the
    record a stop would have written after each. The keeper is then left as a killed process
    leaves it: nothing closed."""
    store = IncidentStore(tmp_path / "incidents")
    sources = FakeSources()
    keeper, recorder = keeper_of(store, sources, pre=2.0, post=60.0)
    feed(recorder, sources, 2.0, rate=50)
    sources.events.append(alarm(1, sources.now))
    keeper.observe()
    expected = [as_stored(keeper)]
    for n in range(saves):
        sources.events.append(alarm(2 + n, sources.now))  # a second detector, say
        feed(recorder, sources, 1.0, rate=50)
        keeper.observe()
        expected.append(as_stored(keeper))
    settled(keeper)
    return store, keeper, sources, expected


def restarted(store: IncidentStore) -> IncidentKeeper:
    keeper, _ = keeper_of(store, FakeSources())
    keeper.recovery.result(timeout=60)
    return keeper


def test_a_crash_loses_nothing_saved(tmp_path: Path) -> None:
    store, _, _, expected = crashed_with_an_open_incident(tmp_path, saves=5)
    [incident_id] = store.ids()
    progress = store.progress_path_of(incident_id)
    assert progress.exists()
    assert store.load(incident_id)["status"] == "open"
    assert len(store.load(incident_id)["events"]) == 1  # the record as it opened
    again = restarted(store)
    assert again.recovered == [incident_id]
    record = store.load(incident_id)
    assert record == expected[-1]  # what a stop would have written at the last save
    assert len(record["events"]) == 6 and record["event_count"] == 6
    assert not progress.exists()
    again.close_all()


def test_a_save_cut_short_by_a_power_loss_is_left_out(tmp_path: Path) -> None:
    store, _, _, expected = crashed_with_an_open_incident(tmp_path, saves=4)
    [incident_id] = store.ids()
    progress = store.progress_path_of(incident_id)
    data = progress.read_bytes()
    progress.write_bytes(data[:-30])  # the last save's last member, torn
    again = restarted(store)
    assert again.recovered == [incident_id]
    assert store.load(incident_id) == expected[-2]
    again.close_all()


def test_a_progress_file_beside_a_closed_record_is_deleted(tmp_path: Path) -> None:
    store, keeper, _, _ = crashed_with_an_open_incident(tmp_path, saves=2)
    [incident_id] = store.ids()
    progress = store.progress_path_of(incident_id).read_bytes()
    keeper.close_all()  # written whole, `interrupted`; its progress file deleted
    closed = store.read(incident_id)
    store.progress_path_of(incident_id).write_bytes(progress)  # as if that deletion was lost
    again = restarted(store)
    assert again.recovered == []
    assert store.read(incident_id) == closed
    assert not store.progress_path_of(incident_id).exists()
    again.close_all()


def test_a_failed_append_writes_the_incident_whole(tmp_path: Path) -> None:
    store, keeper, sources, _ = crashed_with_an_open_incident(tmp_path, saves=2)
    [incident_id] = store.ids()
    store.progress_path_of(incident_id).unlink()  # the next append fails
    feed(keeper.recorder, sources, 1.0, rate=50)
    keeper.observe()
    settled(keeper)
    assert store.progress_path_of(incident_id).exists()
    assert keeper.failures == 0
    expected = as_stored(keeper)
    assert restarted(store).recovered == [incident_id]
    assert store.load(incident_id) == expected


def test_after_a_clock_step_the_progress_is_written_on_the_new_clock(tmp_path: Path) -> None:
    store, keeper, sources, _ = crashed_with_an_open_incident(tmp_path, saves=2)
    [incident_id] = store.ids()
    step = 3600 * 10**9  # NTP steps the clock an hour forward
    sources.now += step
    keeper.recorder.shift(step)
    follow_step(keeper, step, sources.now)
    feed(keeper.recorder, sources, 1.0, rate=50)
    keeper.observe()
    settled(keeper)
    expected = as_stored(keeper)
    assert expected["clock_steps"] == [{"at_ns": sources.now - 10**9, "by_ns": step}]
    assert restarted(store).recovered == [incident_id]
    record = store.load(incident_id)
    assert record == expected
    ts = record["points"]["fast-1.v"]["ts"]
    assert ts == sorted(ts) and ts[-1] - ts[0] < 10_000  # one timeline: no hour-long gap
