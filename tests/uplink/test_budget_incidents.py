"""Incident records under the outbox's disk budget (audit D3, D10): bulk evidence never pushes
out alarm events. A record larger than its share of the budget is refused whole, logged and not
marked sent; one that fits goes in whole, telemetry is dropped before it, and records go whole,
oldest first, before any alarm event. Every budget drop is logged with counts per kind.

A real outbox and the real item writer; the committer is a stand-in that does what its writer
thread does (store every buffered item, then commit once)."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.alarms.events import EventKind
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.clock import ManualClock
from gateway.contract.wire import AlarmEventMessage, Channel, MessageKind, Topic
from gateway.uplink import budget
from gateway.uplink.incidents import is_sent, send_record
from gateway.uplink.items import Item, ItemWriter
from gateway.uplink.outbox import Outbox

SITE, GW = "site-1", "gw-1"
TOPICS = {ch: str(Topic(SITE, GW, ch)) for ch in Channel}
BUDGET = 1024 * 1024
REC_A = "20261203T031200Z-batt-1-11"
REC_B = "20261203T041200Z-batt-1-12"
REC_C = "20261203T051200Z-batt-1-13"
BIG = "20261205T032024Z-tx-3f-1"


class Committer:
    """Stores each added item with the real ItemWriter and commits (as the writer thread)."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.writer = ItemWriter(outbox, site=SITE, gateway=GW, topics=TOPICS,
                                 catalog="0123456789abcdef", numbered=True,
                                 on_reject=self.rejected.append)
        self.items: list[Item] = []

    rejected: list[str] = []

    def add(self, item: Item, *, urgent: bool = False) -> bool:
        self.items.append(item)
        return True

    def commit(self) -> None:
        items, self.items = self.items, []
        for item in items:
            self.writer.store(item)
        self.outbox.flush()


@pytest.fixture(autouse=True)
def _fresh_rate_limit() -> None:
    """Each test sees its first drop line (the filter lets one a minute through)."""
    drops = getattr(budget, "DROPS_FILTER", None)
    if drops is not None:
        drops._last.clear()


def make_uplink(tmp_path: Path) -> Any:
    clock = ManualClock()
    outbox = Outbox(tmp_path / "outbox.sqlite", clock=clock, budget_bytes=BUDGET)
    return SimpleNamespace(clock=clock, site=SITE, gateway_id=GW, outbox=outbox,
                           settings=SimpleNamespace(root="roomwarden"),
                           committer=Committer(outbox))


def alarm_event(seq: int) -> AlarmEventMessage:
    return AlarmEventMessage(
        site=SITE, gateway=GW, seq=seq, ts=1_767_225_600_000_000_000 + seq, kind=EventKind.ALARM,
        rule="explosion.h2_alarm", subject="h2-1.h2", state=AlarmState.ACTIVE_UNACKNOWLEDGED,
        previous_state=AlarmState.NORMAL, value=27.5, severity=Severity.CRITICAL,
        actor="system", note=None, first_out=True, room="battery-1",
        title="Hydrogen at 25 % LEL — ventilate", chattering=False)


def put_events(uplink: Any, seqs: range) -> None:
    for seq in seqs:
        uplink.committer.add(Item(MessageKind.ALARM, alarm_event(seq), 0), urgent=True)
    uplink.committer.commit()


def put_telemetry(uplink: Any, n: int, size: int = 20_000) -> None:
    for _ in range(n):
        uplink.outbox.put(MessageKind.TELEMETRY, TOPICS[Channel.TELEMETRY], os.urandom(size))
    uplink.outbox.flush()


def rows(uplink: Any) -> list[tuple[str, Any]]:
    """What the outbox holds: ('event', journal seq), ('chunk', (id, index)), ('telemetry', n)."""
    db = sqlite3.connect(uplink.outbox.path)
    try:
        out: list[tuple[str, Any]] = []
        for kind, topic, payload in db.execute(
                "SELECT kind, topic, payload FROM messages ORDER BY id"):
            if topic.endswith("/incidents"):
                index = int(payload.split(b'"index":')[1].split(b",")[0])
                incident = payload.split(b'"id":"')[1].split(b'"')[0].decode()
                out.append(("chunk", (incident, index)))
            elif kind == MessageKind.ALARM.priority:
                out.append(("event", int(payload.split(b'"seq":')[1].split(b",")[0])))
            else:
                out.append(("telemetry", kind))
        return out
    finally:
        db.close()


def test_a_record_bigger_than_its_share_is_refused_whole_and_the_alarm_events_stay(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The audit's case: 6 alarm events wait (no ingest), then a 1.9 MB record at a 1 MiB
    budget. Before: its chunks pushed out every event and the first chunks, the rest stayed,
    the record was marked sent, nothing was logged."""
    uplink = make_uplink(tmp_path)
    put_events(uplink, range(1, 7))
    data = os.urandom(1_900_000)
    with caplog.at_level(logging.INFO, logger="roomwarden.uplink"):
        queued = send_record(uplink, BIG, "closed", data)
        uplink.committer.commit()
    assert queued == 0
    assert rows(uplink) == [("event", seq) for seq in range(1, 7)]
    assert uplink.outbox.dropped()[MessageKind.ALARM] == 0
    assert not is_sent(uplink, BIG, data)  # tried again at the next start, not counted sent
    refused = [r.getMessage() for r in caplog.records
               if "event=incident_not_sent" in r.getMessage()]
    assert len(refused) == 1 and BIG in refused[0] and "reason=outbox_budget" in refused[0]
    assert refused[0].startswith("event=incident_not_sent") and "roomwarden incident" in \
        refused[0]
    uplink.outbox.close()


def test_a_record_that_fits_goes_in_whole_and_telemetry_is_dropped_first(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    uplink = make_uplink(tmp_path)
    put_events(uplink, range(1, 7))
    put_telemetry(uplink, 40)  # ~ 0.8 MiB of telemetry
    data = os.urandom(300_000)  # two chunks, ~ 0.4 MiB on disk
    with caplog.at_level(logging.INFO, logger="roomwarden.uplink"):
        assert send_record(uplink, REC_A, "closed", data) == 2
        uplink.committer.commit()
    held = rows(uplink)
    assert [r for r in held if r[0] == "event"] == [("event", seq) for seq in range(1, 7)]
    assert [r for r in held if r[0] == "chunk"] == [("chunk", (REC_A, 0)), ("chunk", (REC_A, 1))]
    dropped = uplink.outbox.dropped()
    assert dropped[MessageKind.TELEMETRY] > 0 and dropped[MessageKind.ALARM] == 0
    assert is_sent(uplink, REC_A, data)
    logged = [r.getMessage() for r in caplog.records
              if r.getMessage().startswith("event=outbox_budget_dropped")]
    assert len(logged) == 1
    assert f"telemetry={dropped[MessageKind.TELEMETRY]} " in logged[0]
    assert "incident_chunks=0 alarm_events=0" in logged[0]
    uplink.outbox.close()


def test_records_go_whole_and_oldest_first_before_any_alarm_event(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Three records that each fit, but not all together beside the alarm events: telemetry
    goes, then the oldest record, whole (both its chunks), logged by name; every alarm event
    (older and newer than the record) and the newer records stay."""
    uplink = make_uplink(tmp_path)
    put_events(uplink, range(1, 4))
    assert send_record(uplink, REC_A, "closed", os.urandom(300_000)) == 2
    uplink.committer.commit()
    put_events(uplink, range(4, 7))  # events newer than the first record
    assert send_record(uplink, REC_B, "closed", os.urandom(300_000)) == 2
    uplink.committer.commit()
    put_telemetry(uplink, 5)
    with caplog.at_level(logging.INFO, logger="roomwarden.uplink"):
        assert send_record(uplink, REC_C, "closed", os.urandom(300_000)) == 2
        uplink.committer.commit()
    held = rows(uplink)
    assert [r for r in held if r[0] == "event"] == [("event", seq) for seq in range(1, 7)]
    assert [r for r in held if r[0] == "chunk"] == [
        ("chunk", (rec, i)) for rec in (REC_B, REC_C) for i in (0, 1)]
    assert not [r for r in held if r[0] == "telemetry"]
    dropped = uplink.outbox.dropped()
    assert dropped[MessageKind.TELEMETRY] == 5 and dropped[MessageKind.ALARM] == 2
    messages = [r.getMessage() for r in caplog.records]
    gone = [m for m in messages if m.startswith("event=incident_dropped")]
    assert len(gone) == 1 and f"id={REC_A} chunks=2 " in gone[0]
    summary = [m for m in messages if m.startswith("event=outbox_budget_dropped")]
    assert len(summary) == 1 and "telemetry=5 state=0 incident_chunks=2 alarm_events=0" in \
        summary[0]
    uplink.outbox.close()


def test_alarm_events_go_last_and_are_logged_as_such(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Only alarm events left and still over the budget: the oldest events go (after every
    record), logged at error level under their own line."""
    uplink = make_uplink(tmp_path)
    assert send_record(uplink, REC_A, "closed", os.urandom(300_000)) == 2
    uplink.committer.commit()
    uplink.outbox.budget_bytes = 64 * 1024  # (a smaller budget at the next start, say)
    with caplog.at_level(logging.INFO, logger="roomwarden.uplink"):
        put_events(uplink, range(1, 400))
    held = rows(uplink)
    assert not [r for r in held if r[0] == "chunk"]
    events = [seq for kind, seq in held if kind == "event"]
    assert events and events == list(range(events[0], 400))  # the newest kept, in order
    errors = [r for r in caplog.records
              if r.getMessage().startswith("event=outbox_budget_dropped_alarm_events")]
    assert errors and errors[0].levelno == logging.ERROR
    uplink.outbox.close()


def test_a_record_dropped_after_it_was_queued_is_no_longer_marked_sent(
        tmp_path: Path) -> None:
    """The storage audit's leftover: a record the budget dropped kept its sent mark, so no
    start handed it over again (centrally it never arrived). The mark goes with the chunks, in
    the same transaction; the records kept stay marked; a restart sees the same."""
    uplink = make_uplink(tmp_path)
    data_a, data_b, data_c = (os.urandom(300_000) for _ in range(3))
    assert send_record(uplink, REC_A, "closed", data_a) == 2
    uplink.committer.commit()
    assert send_record(uplink, REC_B, "closed", data_b) == 2
    uplink.committer.commit()
    assert is_sent(uplink, REC_A, data_a) and is_sent(uplink, REC_B, data_b)
    put_events(uplink, range(1, 4))
    assert send_record(uplink, REC_C, "closed", data_c) == 2  # pushes REC_A out
    uplink.committer.commit()
    assert {r[1][0] for r in rows(uplink) if r[0] == "chunk"} == {REC_B, REC_C}
    assert not is_sent(uplink, REC_A, data_a)
    assert is_sent(uplink, REC_B, data_b) and is_sent(uplink, REC_C, data_c)
    uplink.outbox.close()
    again = make_uplink(tmp_path)
    assert not is_sent(again, REC_A, data_a)
    assert is_sent(again, REC_B, data_b) and is_sent(again, REC_C, data_c)
    # queued and dropped in one commit (a smaller budget): not marked either
    again.outbox.budget_bytes = 64 * 1024
    data_d = os.urandom(20_000)
    assert send_record(again, "20261205T061200Z-batt-1-14", "closed", data_d) == 1
    put_events(again, range(4, 300))
    assert not is_sent(again, "20261205T061200Z-batt-1-14", data_d)
    again.outbox.close()
