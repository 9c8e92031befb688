"""An open incident read as a technician reads it during the event (gateway/recorder/reading.py):
since its progress file (the wear audit, W3) its record holds what it held when it opened,
and `incident show`, the panel and the control socket showed that — the samples, events and
output changes gained while open were only in the progress file. Every reader now reads an
open incident through that file, up to its last whole save, as the start-up's rebuild does,
and writes nothing: a save cut short (or being appended while it reads) is left out, a
progress file that vanishes because the incident just closed gives the closed record, and a
reader running beside the keeper's writer never raises and never changes a file."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.panel.events import IncidentIndex, report_of
from gateway.recorder import progress, reading
from gateway.recorder.clockstep import follow_step
from gateway.recorder.incidents import IncidentKeeper, record_of
from gateway.recorder.remote import answer_now
from gateway.recorder.store import IncidentError, IncidentStore
from tests.recorder.keeper_rig import (
    FakeSources,
    a_save_each_batch,
    alarm,
    feed,
    keeper_of,
    settled,
)

pytestmark = pytest.mark.usefixtures(a_save_each_batch.__name__)  # (imported: keeper_rig)

REPO = Path(__file__).resolve().parents[2]


def as_saved(keeper: IncidentKeeper, sources: FakeSources) -> dict[str, Any]:
    """The open incident as its last save holds it, as a reader should show it."""
    [incident] = keeper.open.values()
    record = dict(json.loads(json.dumps(record_of(incident, "open", sources.health()))))
    return {**record, "as_of_ns": sources.now}


def saved(keeper: IncidentKeeper, sources: FakeSources, n: int) -> dict[str, Any]:
    """One more save: a second of samples and a room event (a second detector, say)."""
    sources.events.append(alarm(2 + n, sources.now))
    feed(keeper.recorder, sources, 1.0, rate=50)
    keeper.observe()
    return as_saved(keeper, sources)


def opened(tmp_path: Path, saves: int) -> tuple[IncidentStore, IncidentKeeper, FakeSources,
                                                  list[dict[str, Any]]]:
    """An incident opened by an alarm and saved `saves` times since; what each save holds."""
    store = IncidentStore(tmp_path / "incidents")
    sources = FakeSources()
    keeper, recorder = keeper_of(store, sources, pre=2.0, post=60.0)
    feed(recorder, sources, 2.0, rate=50)
    sources.events.append(alarm(1, sources.now))
    keeper.observe()
    expected = [as_saved(keeper, sources)]
    expected += [saved(keeper, sources, n) for n in range(saves)]
    settled(keeper)
    return store, keeper, sources, expected


def files(store: IncidentStore) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(store.directory.iterdir())}


def shown(state_dir: Path, incident_id: str) -> str:
    """`roomwarden incident show ID --state-dir DIR`, as a technician runs it."""
    done = subprocess.run([sys.executable, "-m", "gateway", "incident", "show", incident_id,
                           "--state-dir", str(state_dir)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def samples_of(record: dict[str, Any]) -> int:
    return sum(len(p["ts"]) for p in record["points"].values())


def test_an_open_incident_is_read_up_to_its_last_save(tmp_path: Path) -> None:
    store, keeper, sources, expected = opened(tmp_path, saves=3)
    [incident_id] = store.ids()
    before = files(store)
    assert store.load(incident_id)["event_count"] == 1  # the record as it opened
    record = reading.load(store, incident_id)
    assert record == expected[-1]  # every save since: 4 events, 3 more seconds of samples
    assert record["event_count"] == 4 and samples_of(record) > samples_of(expected[0])
    row = answer_now(store, {"action": "list"})["incidents"][0]  # `incident list`, --socket
    assert (row["status"], row["as_of_ns"]) == ("open", sources.now)
    page = IncidentIndex(store).page(10, None)["incidents"][0]  # the panel's list
    assert (page["events"], page["until_ns"], page["as_of_ns"]) == (
        4, expected[-1]["until_ns"], sources.now)
    report = report_of(store, incident_id)  # the panel's report
    assert report.status == 200 and "open, as of" in report.body
    text = shown(tmp_path, incident_id)
    assert "(open, as of " in text
    assert f"{samples_of(expected[-1])} samples" in text
    assert files(store) == before  # nothing written, renamed or deleted
    keeper.close_all()


def test_a_save_cut_short_is_left_out(tmp_path: Path) -> None:
    store, keeper, _, expected = opened(tmp_path, saves=3)
    [incident_id] = store.ids()
    path = store.progress_path_of(incident_id)
    path.write_bytes(path.read_bytes()[:-30])  # the last save's update member, torn
    before = files(store)
    assert reading.load(store, incident_id) == expected[-2]
    assert f"{samples_of(expected[-2])} samples" in shown(tmp_path, incident_id)
    assert files(store) == before
    keeper.close_all()


def test_a_reader_beside_the_writer_never_raises_and_changes_nothing(
        tmp_path: Path) -> None:
    store, keeper, sources, expected = opened(tmp_path, saves=1)
    [incident_id] = store.ids()
    record_file = files(store)[f"{incident_id}.json.gz"]
    index = IncidentIndex(store)
    stop = threading.Event()
    seen: list[tuple[int, int]] = []
    failures: list[BaseException] = []

    def read_on() -> None:
        while not stop.is_set():
            try:
                record = reading.load(store, incident_id)
                head = reading.head_of(store, incident_id)
                row = index.page(10, None)["incidents"][0]
                assert record["status"] == head["status"] == row["status"] == "open"
                assert record["event_count"] <= head["event_count"] <= row["events"]
                seen.append((record["event_count"], samples_of(record)))
            except BaseException as exc:  # (reported below, whatever it is)
                failures.append(exc)
                return

    reader = threading.Thread(target=read_on)
    reader.start()
    try:
        for n in range(1, 40):
            if n == 20:  # NTP steps the clock: the next save writes the incident whole
                settled(keeper)
                unchanged = files(store)[f"{incident_id}.json.gz"] == record_file
                step = 3600 * 10**9
                sources.now += step
                keeper.recorder.shift(step)
                follow_step(keeper, step, sources.now)
            expected.append(saved(keeper, sources, n))
            time.sleep(0.02)  # (the reader's turn: reads between and during appends)
        settled(keeper)
    finally:
        stop.set()
        reader.join(60)
    assert not failures, failures
    assert len(seen) >= 3 and seen == sorted(seen)  # each read at or after the one before
    assert unchanged  # the record as it opened, until the writer wrote it whole again
    before = files(store)
    for _ in range(5):
        assert reading.load(store, incident_id) == expected[-1]
        index.page(10, None)
        assert "as of" in shown(tmp_path, incident_id)
    assert files(store) == before
    keeper.close_all()


def test_a_progress_file_gone_because_the_incident_closed_gives_the_closed_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, keeper, sources, _ = opened(tmp_path, saves=2)
    [incident_id] = store.ids()
    status_of = store.status_of

    def closing_meanwhile(incident_id: str) -> str | None:
        """The reader holds the progress file; the incident closes before it reads the
        record's status (the record written whole, the progress file deleted)."""
        if keeper.open:
            sources.active = False
            feed(keeper.recorder, sources, 61.0, rate=1)
            keeper.observe()
            settled(keeper)
            assert not store.progress_path_of(incident_id).exists()
        return status_of(incident_id)

    monkeypatch.setattr(store, "status_of", closing_meanwhile)
    record = reading.load(store, incident_id)
    assert record["status"] == "closed" and "as_of_ns" not in record
    assert record == store.load(incident_id)
    assert reading.load(store, incident_id) == record  # and with no progress file at all
    keeper.close_all()


def test_a_reader_reads_a_bounded_progress_file(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    store, keeper, _, expected = opened(tmp_path, saves=2)
    [incident_id] = store.ids()
    size = store.progress_path_of(incident_id).stat().st_size
    monkeypatch.setattr(progress, "READ_BYTES", size - 1)
    with pytest.raises(IncidentError, match=r"over \d+ bytes; it is read whole when it closes"):
        reading.load(store, incident_id)
    monkeypatch.setattr(progress, "READ_BYTES", size)
    assert reading.load(store, incident_id) == expected[-1]
    keeper.close_all()
