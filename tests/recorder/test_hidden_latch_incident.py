"""A hazard that happens while its alarm is suppressed is recorded like any other (the
mission's "evaluate afterwards"): a latching hydrogen alarm rising under a hot-work suppression
of its battery room latches hidden (DESIGN principle 7: nothing sounds, its protective outputs
switch on, the journal says `latched while suppressed`), and the incident keeper opens an
incident on that event; so does a non-latching alarm's rise under the suppression (journalled
`normal` to `suppressed`). Before, an incident opened only on an annunciated activation: the
room's samples, outputs and events around the hidden rise were never frozen. A rise under a
shelf of a latching alarm is the same hidden latch (tests/alarms/test_hidden_latch.py); the
shelf of a non-latching one journals nothing and opens nothing.

The events come from the real alarm manager and journal; the keeper is the real one with a real
flight recorder (tests/recorder/keeper_rig.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import gateway.recorder.incidents as incidents
from gateway.alarms.journal import Journal
from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.alarms.manager import AlarmManager
from gateway.alarms.types import Evaluation, Severity
from gateway.clock import ManualClock
from gateway.recorder.store import IncidentStore
from tests.recorder.keeper_rig import T0, FakeSources, feed, keeper_of

ROOM = "tx"
H2 = AlarmKey("explosion.h2_alarm", "h2-batt-01.h2")
HOUR = 3600 * 10**9
PLAIN = AlarmKey("env.temp_high", "th-1.temp")


def h2(active: bool, *, latching: bool) -> Evaluation:
    return Evaluation(rule=H2.rule, subject=H2.subject, active=active, value=30.0 if active
                      else 0.0, severity=Severity.CRITICAL, ts=0, title="Hydrogen high",
                      room=ROOM, actions=("siren", "exhaust_fan"), latching=latching)


@pytest.mark.parametrize("latching", [True, False])
def test_a_rise_under_a_suppression_opens_an_incident(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, latching: bool) -> None:
    monkeypatch.setattr(incidents, "COPY_EVERY", 0.0)
    clock = ManualClock(start_ns=T0)
    manager = AlarmManager(Journal(tmp_path / "alarms.sqlite", clock=clock), clock)
    try:
        sources = FakeSources(active=False)
        store = IncidentStore(tmp_path / "incidents")
        keeper, recorder = keeper_of(store, sources)
        manager.observe([h2(False, latching=latching)])
        manager.suppress(ROOM, "site lead", "hot work permit 42", clock.now_ns() + HOUR)
        feed(recorder, sources, 4.0, rate=10)
        clock.advance(4.0)
        sources.events.extend(manager.observe([h2(True, latching=latching)]))
        keeper.observe()
        [event] = sources.events
        note = f"suppressed ({ROOM})" + ("; latched while suppressed" if latching else "")
        assert (event.previous_state, event.state, event.note) == (
            AlarmState.NORMAL, AlarmState.SUPPRESSED, note)
        assert manager.get(H2).hidden_active
        incident = keeper.open[ROOM]
        assert incident.trigger == event
        feed(recorder, sources, 10.0, rate=10)  # past `post` (5 s): the room is quiet
        keeper.observe()
        assert keeper.open == {}
        keeper.close_all()  # (waits for the writer)
        [incident_id] = store.ids()
        record = store.load(incident_id)
        assert record["status"] == "closed"
        assert record["trigger"]["state"] == "suppressed"
        assert record["trigger"]["note"] == note
        assert record["points"], "the room's samples around the hidden latch are kept"
    finally:
        manager.close()


def test_a_hidden_latch_under_a_shelf_opens_one_a_shelved_plain_alarm_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both alarms in the list and shelved, as an operator shelves: the latching one latched,
    acknowledged, its hazard gone; the plain one active. The plain one clearing and rising
    again under its shelf journals nothing; the latching one's hazard returning does."""
    monkeypatch.setattr(incidents, "COPY_EVERY", 0.0)
    clock = ManualClock(start_ns=T0)
    manager = AlarmManager(Journal(tmp_path / "alarms.sqlite", clock=clock), clock)

    def hot(active: bool) -> Evaluation:
        return Evaluation(rule=PLAIN.rule, subject=PLAIN.subject, active=active,
                          value=50.0 if active else 20.0, severity=Severity.CRITICAL, ts=0,
                          title="Hot", room=ROOM, actions=(), latching=False)
    try:
        sources = FakeSources(active=False)
        keeper, recorder = keeper_of(IncidentStore(tmp_path / "incidents"), sources)
        manager.observe([h2(True, latching=True), hot(True)])
        manager.acknowledge([H2, PLAIN], "op")
        manager.observe([h2(False, latching=True)])
        manager.shelve(H2, "op", clock.now_ns() + HOUR, "drifting?")
        manager.shelve(PLAIN, "op", clock.now_ns() + HOUR, "known")
        feed(recorder, sources, 2.0, rate=10)
        clock.advance(2.0)
        sources.events.extend(manager.observe([hot(False)]))
        sources.events.extend(manager.observe([hot(True)]))
        keeper.observe()
        assert sources.events == [] and keeper.open == {}
        sources.events.extend(manager.observe([h2(True, latching=True)]))
        keeper.observe()
        assert [e.note for e in sources.events] == ["latched while shelved"]
        assert keeper.open[ROOM].trigger == sources.events[0]
        keeper.close_all()
    finally:
        manager.close()
