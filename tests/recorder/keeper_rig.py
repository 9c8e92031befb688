"""A keeper without a gateway: a real flight recorder fed by the test, a fake clock and a fake
journal (tests of the incident store's start-up and of an incident's sample cap)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

import gateway.recorder.incidents as incidents
from gateway.alarms.events import AlarmEvent, EventKind
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.field.sample import Quality, Sample
from gateway.recorder.incidents import IncidentKeeper, OutputSnapshot, RoomContext
from gateway.recorder.ring import FlightRecorder
from gateway.recorder.settings import IncidentSettings
from gateway.recorder.store import FORMAT, IncidentStore

T0 = 1_700_000_000_000_000_000
POINTS = ("fast-1.v", "fast-2.v", "slow-1.v")


@dataclass
class FakeSources:
    now: int = T0
    events: list[AlarmEvent] = field(default_factory=list)
    active: bool = True

    def now_ns(self) -> int:
        return self.now

    def last_seq(self) -> int:
        return self.events[-1].seq if self.events else 0

    def events_since(self, seq: int) -> list[AlarmEvent]:
        return [e for e in self.events if e.seq > seq]

    def output_states(self) -> dict[str, OutputSnapshot]:
        return {}

    def room_active(self, room: str) -> bool:
        return self.active

    def room_context(self, room: str) -> RoomContext:
        points = {p: {"device": p.split(".")[0], "room": room, "quantity": "voltage",
                      "unit": "V"} for p in POINTS}
        return RoomContext({p.split(".")[0] for p in POINTS}, [], {}, points)

    def identity(self) -> dict[str, Any]:
        return {"gateway": "gw-test", "site": "lab",
                "config": {"version": "1", "sha256": "0" * 64, "file": "site.yaml"}}

    def health(self) -> dict[str, Any]:
        return {"ok": True}

    def active_alarms(self) -> list[Any]:
        return []


def alarm(seq: int, ts: int) -> AlarmEvent:
    return AlarmEvent(seq=seq, ts=ts, kind=EventKind.ALARM, rule="fire.smoke", subject="tx",
                      state=AlarmState.ACTIVE_UNACKNOWLEDGED, previous_state=AlarmState.NORMAL,
                      value=True, severity=Severity.CRITICAL, actor="system", note=None,
                      first_out=True, room="tx", title="Fire")


def feed(recorder: FlightRecorder, sources: FakeSources, seconds: float, rate: int) -> None:
    """`seconds` of samples: the fast points at `rate` a second, the slow one at 1 a second;
    the clock moves on."""
    step = 10**9 // rate
    end = sources.now + int(seconds * 10**9)
    batch = []
    t = sources.now
    while t < end:
        t += step
        batch.append(Sample("fast-1.v", float(t // step % 1000) / 10, t, Quality.GOOD))
        batch.append(Sample("fast-2.v", t // step % 7, t, Quality.GOOD))
        if t // step % rate == 0:
            batch.append(Sample("slow-1.v", 230.5, t, Quality.GOOD))
    recorder.record(batch)
    sources.now = end


def keeper_of(store: IncidentStore, sources: FakeSources, window: float = 60.0,
              **settings: Any) -> tuple[IncidentKeeper, FlightRecorder]:
    recorder = FlightRecorder(window, interval_of=lambda point: 0.001)
    values = {"pre": 5.0, "post": 5.0, "max_duration": 3600.0, "severity": "critical",
              **settings}
    keeper = IncidentKeeper(recorder, store, IncidentSettings(**values), sources)
    return keeper, recorder


def stored_record(incident_id: str, status: str, filler: int = 0) -> dict[str, Any]:
    """A record as the keeper writes one (`filler` samples of one point to make it large)."""
    return {"format": FORMAT, "id": incident_id, "status": status, "kind": "alarm",
            "room": "tx", "gateway": "gw-test", "site": "lab", "config": {},
            "trigger": {"rule": "fire.smoke", "subject": "tx", "ts": T0, "severity": "critical"},
            "from_ns": T0, "until_ns": T0, "rules": [], "outputs_served": {},
            "events": [], "output_changes": [], "health": {},
            "points": {"a.v": {"ts": list(range(filler)), "v": [i * 0.37 for i in range(filler)],
                               "q": "g" * filler}}}


@pytest.fixture
def a_save_each_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Copy and save at every batch (a test module imports it, marked autouse there)."""
    monkeypatch.setattr(incidents, "COPY_EVERY", 0.0)
    monkeypatch.setattr(incidents, "SAVE_EVERY", 0.0)


def settled(keeper: IncidentKeeper) -> None:
    """Wait until the keeper's writer has done what it was given."""
    done = threading.Event()
    keeper.in_writer(done.set)
    assert done.wait(60)
