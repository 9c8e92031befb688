"""What an open incident costs the SD card (the wear audit, W3): its record was rewritten whole
every minute while it was open — over an hour about 35 times the closed record's size, and a
chattering room's alarm, reopening an incident an hour long after another, about 1.3 GB a day
a room. An open incident now appends to its progress file what it gained since the last save
and writes the whole record when it opens and when it closes, so its writes scale with what it
holds; what a crash may lose is unchanged (the last minute: tests/recorder/test_progress.py).

Bytes are counted as the process hands them to the kernel (`wchar` of /proc/self/io: every
`write` of every thread, the keeper's writer thread's included); simulated minutes on a fake
clock, one save each (SAVE_EVERY 0, a batch a minute)."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from pathlib import Path

import pytest

import gateway.recorder.incidents as incidents
from gateway.alarms.events import AlarmEvent
from gateway.alarms.lifecycle import AlarmState
from gateway.recorder.incidents import IncidentKeeper
from gateway.recorder.store import IncidentStore
from tests.recorder.keeper_rig import FakeSources, alarm, feed, keeper_of

MINUTE = 60.0


def written() -> int:
    """Bytes this process has passed to `write` so far (all threads)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "wchar":
            return int(value)
    raise AssertionError("no wchar in /proc/self/io")


def settled(keeper: IncidentKeeper) -> None:
    """Wait for the saves handed to the writer thread so far."""
    done = threading.Event()
    keeper.in_writer(done.set)
    assert done.wait(60)


def returned(seq: int, ts: int) -> AlarmEvent:
    return dataclasses.replace(alarm(seq, ts), state=AlarmState.NORMAL,
                               previous_state=AlarmState.ACTIVE_UNACKNOWLEDGED)


@pytest.fixture
def a_save_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(incidents, "COPY_EVERY", 0.0)
    monkeypatch.setattr(incidents, "SAVE_EVERY", 0.0)  # the one batch of each minute saves


def test_an_hour_long_incident_writes_a_few_times_its_record(
        tmp_path: Path, a_save_a_minute: None) -> None:
    """A major alarm held for an hour (the record's `max_duration`), 10 minutes of `pre`, three
    points at 21 samples a second: the record's bytes once it closed, against all the bytes
    written while it was open."""
    store = IncidentStore(tmp_path / "incidents")
    sources = FakeSources()
    keeper, recorder = keeper_of(store, sources, window=900.0, pre=600.0, post=600.0,
                                 max_duration=3600.0)
    feed(recorder, sources, 600.0, rate=10)  # the pre-trigger data
    keeper.observe()
    settled(keeper)
    before = written()
    sources.events.append(alarm(1, sources.now))
    keeper.observe()  # opens, saved at once
    minutes = 0
    while keeper.open:
        feed(recorder, sources, MINUTE, rate=10)
        keeper.observe()
        minutes += 1
        assert minutes <= 61
    settled(keeper)
    total = written() - before
    [incident_id] = store.ids()
    record = store.path_of(incident_id).stat().st_size
    assert store.load(incident_id)["status"] == "closed"
    ratio = total / record
    print(f"record {record} bytes, written {total} bytes while open: {ratio:.1f}x")
    assert ratio < 4.0, ratio  # the whole record each minute: ~35x
    assert not list(store.directory.glob("*.progress*"))  # gone once closed
    keeper.close_all()


def test_a_chattering_room_writes_about_its_samples_once_or_twice(
        tmp_path: Path, a_save_a_minute: None) -> None:
    """The alarm of a room goes active and returns every 30 s for over two hours: an incident
    reopened as soon as the one before reached `max_duration` (1 h). Bytes written against
    the bytes of the records kept; the records of one room do not cover the same samples
    twice (each begins where the room's last one ended, at the latest `pre` before its
    trigger)."""
    store = IncidentStore(tmp_path / "incidents", max_bytes=2**30)
    sources = FakeSources()
    keeper, recorder = keeper_of(store, sources, window=900.0, pre=600.0, post=600.0,
                                 max_duration=3600.0)
    feed(recorder, sources, 600.0, rate=10)
    keeper.observe()
    settled(keeper)
    before = written()
    seq = 0
    for _ in range(130):  # a minute: active for half of it, then normal, then active again
        seq += 1
        sources.events.append(returned(seq, sources.now))
        feed(recorder, sources, MINUTE / 2, rate=10)
        seq += 1
        sources.events.append(alarm(seq, sources.now))
        feed(recorder, sources, MINUTE / 2, rate=10)
        keeper.observe()  # one batch a minute: the room's alarm is active
    keeper.close_all()
    total = written() - before
    ids = store.ids()
    kept = sum(store.path_of(i).stat().st_size for i in ids)
    ratio = total / kept
    print(f"{len(ids)} records, {kept} bytes, written {total} bytes: {ratio:.1f}x")
    assert len(ids) >= 3
    assert ratio < 3.0, ratio
    windows = sorted((r["from_ns"], r["until_ns"]) for r in map(store.load, ids))
    for (_, end), (start, _) in itertools.pairwise(windows):
        assert start > end  # no sample in two records of the room
