"""An open incident keeps at most `MAX_INCIDENT_SAMPLES` samples (the record stays within what
the wire and a reader take): fed far more, it stops copying samples at one moment for every
point, and the record says it was cut and when. The record written piece by piece is the same
JSON as `record_of` gives."""

from __future__ import annotations

import json
import threading
import zlib
from pathlib import Path

import pytest

import gateway.recorder.incidents as incidents
from gateway.contract.incidents import MAX_INCIDENT_BYTES, MAX_RECORD_BYTES
from gateway.recorder.incidents import MAX_INCIDENT_SAMPLES, record_of
from gateway.recorder.ring import FlightRecorder
from gateway.recorder.store import IncidentStore
from tests.recorder.keeper_rig import T0, FakeSources, alarm, feed, keeper_of

CAP = 3000


def test_an_incident_keeps_at_most_the_cap_and_says_when_it_was_cut(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(incidents, "MAX_INCIDENT_SAMPLES", CAP)
    monkeypatch.setattr(incidents, "COPY_EVERY", 0.0)
    store = IncidentStore(tmp_path / "incidents")
    sources = FakeSources()
    keeper, recorder = keeper_of(store, sources)
    feed(recorder, sources, 4.0, rate=100)  # pre-trigger data: 4 s × 201 samples
    sources.events.append(alarm(1, sources.now))
    keeper.observe()  # opens the incident
    for _ in range(20):  # 20 s more at 201 samples a second: far past the cap
        feed(recorder, sources, 1.0, rate=100)
        keeper.observe()
    incident = keeper.open["tx"]
    kept = sum(len(r) for r in incident.rings.values())
    assert CAP - 201 <= kept <= CAP  # the cap, less at most the samples of one instant
    keeper.close_all()
    [incident_id] = store.ids()
    record = store.load(incident_id)
    samples = [ts for p in record["points"].values() for ts in p["ts"]]
    assert len(samples) == kept
    cut = record["cut"]
    assert cut["max_samples"] == CAP and cut["samples"] == kept
    assert T0 < cut["at_ns"] < sources.now
    assert max(samples) < cut["at_ns"] // 10**6  # nothing at or after the cut …
    for point in record["points"].values():  # … and everything before it, for every point
        assert max(point["ts"]) >= cut["at_ns"] // 10**6 - 1000
    assert record["status"] == "interrupted"


def opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seconds: float, rate: int
           ) -> tuple[IncidentStore, FakeSources, incidents.IncidentKeeper, FlightRecorder]:
    """A keeper copying at every batch, fed `seconds` of samples, then an alarm: its incident
    open."""
    monkeypatch.setattr(incidents, "COPY_EVERY", 0.0)
    store = IncidentStore(tmp_path / "incidents")
    sources = FakeSources()
    keeper, recorder = keeper_of(store, sources)
    feed(recorder, sources, seconds, rate=rate)
    sources.events.append(alarm(1, sources.now))
    keeper.observe()
    return store, sources, keeper, recorder


def test_an_incident_under_the_cap_is_not_cut(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    store, sources, keeper, recorder = opened(tmp_path, monkeypatch, seconds=3.0, rate=50)
    feed(recorder, sources, 3.0, rate=50)
    keeper.observe()
    incident = keeper.open["tx"]
    expected = record_of(incident, "open", {"ok": True})
    assert "cut" not in expected
    keeper.close_all()
    [incident_id] = store.ids()
    record = store.load(incident_id)
    assert record == {**expected, "status": "interrupted", "until_ns": sources.now,
                      "health": {**expected["health"], "at_save": {"ok": True}}}
    assert len(record["points"]["fast-1.v"]["ts"]) == 6 * 50


def test_the_cap_fits_the_wire_and_the_reader() -> None:
    """At most 40 bytes of JSON a sample (13-digit ms, a 24-character double, quality, commas)
    within the reader's 256 MiB with room for the rest; 10 compressed within the wire's 64
    MiB."""
    assert MAX_INCIDENT_SAMPLES * 40 <= MAX_RECORD_BYTES * 0.65
    assert MAX_INCIDENT_SAMPLES * 10 <= MAX_INCIDENT_BYTES * 0.65


def test_many_samples_of_one_point_are_written_in_pieces(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A ring of thousands of chunks (written a window at a time) reads back whole, in order."""
    monkeypatch.setattr(incidents, "COPY_EVERY", 0.0)
    store = IncidentStore(tmp_path / "incidents")
    sources = FakeSources()
    keeper, recorder = keeper_of(store, sources, window=6000.0)
    sources.events.append(alarm(1, sources.now + 1))
    feed(recorder, sources, 1.0, rate=1000)
    keeper.observe()
    for _ in range(24):
        feed(recorder, sources, 5.0, rate=1000)
        keeper.observe()
    incident = keeper.open["tx"]
    keeper.close_all()
    expected = record_of(incident, "interrupted", {"ok": True})
    data = store.read(store.ids()[0])
    record = json.loads(zlib.decompress(data, wbits=31))
    assert record == expected
    ts = record["points"]["fast-1.v"]["ts"]
    assert len(ts) == 121_000 == len(set(ts))  # none twice (a copy begins after the last)


def test_a_record_holds_its_samples_up_to_its_end(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The incident audit: the keeper copied up to the incident's old end and only then moved
    the end on, so a record closed at the step that moved it lacked its last seconds (a short
    `post`: 2 s of a 10 s record). An interrupted record's window is what it holds, not the end
    it had planned."""
    monkeypatch.setattr(incidents, "COPY_EVERY", 0.0)
    store = IncidentStore(tmp_path / "incidents")
    sources = FakeSources()
    keeper, recorder = keeper_of(store, sources, post=3.0, max_duration=10.0)
    feed(recorder, sources, 2.0, rate=10)
    trigger = sources.now
    sources.events.append(alarm(1, trigger))
    keeper.observe()  # opens (end: trigger + post)
    for _ in range(2):  # the room's alarm on: the end moves to now + post, at most + 10 s
        feed(recorder, sources, 5.0, rate=10)
        keeper.observe()
    written = threading.Event()
    keeper.in_writer(written.set)  # after the saves handed to the writer so far
    assert written.wait(20)
    [incident_id] = store.ids()
    record = store.load(incident_id)
    assert record["status"] == "closed" and record["until_ns"] == trigger + 10 * 10**9
    assert max(record["points"]["fast-1.v"]["ts"]) * 10**6 >= record["until_ns"] - 10**8

    sources.events.append(alarm(2, sources.now))  # another, interrupted by a stop 1 s in
    keeper.observe()
    feed(recorder, sources, 1.0, rate=10)
    keeper.close_all()
    [second] = [i for i in store.ids() if i != incident_id]
    record = store.load(second)
    assert record["status"] == "interrupted" and record["until_ns"] == sources.now


def test_a_command_is_stamped_when_it_was_given_not_when_noticed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The incident audit: `wrote off, read back off` at 16:27:08.704, then `commanded off —
    to be written` at 09.113 — the command stamped when the keeper's next batch noticed it,
    after the write it caused. It carries the time the safety core asked for it."""
    monkeypatch.setattr(incidents, "COPY_EVERY", 0.0)

    class WithSiren(FakeSources):
        snaps: dict[str, incidents.OutputSnapshot] = {}

        def output_states(self) -> dict[str, incidents.OutputSnapshot]:
            return dict(self.snaps)

        def room_context(self, room: str) -> incidents.RoomContext:
            context = super().room_context(room)
            context.outputs = {"siren": {"role": "siren", "device": "do", "point": "do1"}}
            return context

    store = IncidentStore(tmp_path / "incidents")
    sources = WithSiren()
    keeper, recorder = keeper_of(store, sources)
    WithSiren.snaps = {"siren": (True, True, None, 1, T0 - 10**9, T0 - 2 * 10**9)}
    feed(recorder, sources, 1.0, rate=10)
    sources.events.append(alarm(1, sources.now))
    keeper.observe()
    commanded = sources.now + 10**8
    written = commanded + 2 * 10**8
    WithSiren.snaps = {"siren": (False, True, None, 1, T0 - 10**9, commanded)}
    keeper.on_written("siren", False, (False, False, None, 2, written, commanded))
    feed(recorder, sources, 1.0, rate=10)  # the next batch notices the command
    keeper.observe()
    changes = keeper.open["tx"].outputs
    by_kind = {c["kind"]: c["ts"] for c in changes}
    assert by_kind == {"write": written, "command": commanded}
    assert by_kind["command"] < by_kind["write"] < sources.now


def test_an_incident_keeps_at_most_so_many_events_and_says_how_many_more(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An open incident's events are held in memory until it closes: a chattering room over
    hours had no bound (the incident audit). Past `MAX_INCIDENT_ITEMS` they are counted, and
    the record says how many (`dropped`)."""
    monkeypatch.setattr(incidents, "MAX_INCIDENT_ITEMS", 50)
    store, sources, keeper, recorder = opened(tmp_path, monkeypatch, seconds=1.0, rate=10)
    for seq in range(2, 82):  # 80 more events of the room
        sources.events.append(alarm(seq, sources.now))
    feed(recorder, sources, 1.0, rate=10)
    keeper.observe()
    incident = keeper.open["tx"]
    assert len(incident.events) == 50
    keeper.close_all()
    record = store.load(store.ids()[0])
    assert len(record["events"]) == 50 and record["dropped"] == 81 - 50
