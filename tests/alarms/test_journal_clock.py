"""The alarm journal's pruning across wall-clock steps (K6 of the clock audit).

A Raspberry Pi has no RTC: it journals with a stale clock (1970, or fake-hwclock's) until NTP
steps it. The audit saw events journalled with the clock in 1971 all deleted at the first
prune after NTP synced, and a bad +100 d step delete every event. Pruning by age now waits for
a synchronised clock and measures age from the newest journalled event (or now, if earlier);
`max_events` bounds the size whatever the clock does."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import clocksync
from gateway.alarms.journal import MEMORY, Journal
from gateway.alarms.manager import AlarmManager
from gateway.clock import ManualClock
from tests.alarms.conftest import ev

DAY = 86_400.0
YEAR_1971_NS = 31_536_000 * 10**9 + 5 * 10**15
PRUNE_EVERY = 10.0


class SyncState:
    """What `gateway.clocksync.synchronised` answers (the kernel's STA_UNSYNC, stood in)."""

    def __init__(self, synced: bool) -> None:
        self.synced = synced

    def __call__(self) -> bool:
        return self.synced


@pytest.fixture
def sync(monkeypatch: pytest.MonkeyPatch) -> Iterator[SyncState]:
    state = SyncState(False)
    monkeypatch.setattr(clocksync, "synchronised", state)
    yield state


def _manager(path: Path | str, clock: ManualClock, max_events: int = 500_000
             ) -> AlarmManager:
    journal = Journal(path, clock=clock, retention_days=90, max_events=max_events)
    return AlarmManager(journal, clock, prune_interval=PRUNE_EVERY)


def _alarm_cycle(manager: AlarmManager, clock: ManualClock, subject: str = "h2-1.h2") -> None:
    """An alarm raised, acknowledged and cleared: three events."""
    manager.observe([ev("explosion.h2_alarm", subject)])
    clock.advance(5.0)
    manager.acknowledge([("explosion.h2_alarm", subject)], "zhang", "checked")
    clock.advance(5.0)
    manager.observe([ev("explosion.h2_alarm", subject, active=False)])
    clock.advance(5.0)


def _prune(manager: AlarmManager, clock: ManualClock) -> None:
    clock.advance(PRUNE_EVERY + 1.0)
    manager.tick()


def test_history_journalled_in_1971_survives_ntp_synchronising(
        tmp_path: Path, sync: SyncState) -> None:
    """The audit's first run: the alarm with the clock in 1971 (not synchronised), NTP steps
    it 55 years on, a prune — the events are all still there."""
    clock = ManualClock(start_ns=YEAR_1971_NS)
    manager = _manager(tmp_path / "alarms.sqlite", clock)
    _alarm_cycle(manager, clock)
    events = len(manager.events_since(0))
    assert events >= 3
    _prune(manager, clock)  # not synchronised: nothing by age
    clock.step_wall(1_800_000_000.0 - YEAR_1971_NS / 1e9)  # NTP: 2027
    sync.synced = True
    _prune(manager, clock)
    assert len(manager.events_since(0)) == events
    manager.close()


def test_a_bad_forward_step_does_not_delete_the_history(tmp_path: Path,
                                                        sync: SyncState) -> None:
    """The audit's second run: synchronised, then a bad +100 d step and a prune."""
    sync.synced = True
    clock = ManualClock()
    manager = _manager(tmp_path / "alarms.sqlite", clock)
    _alarm_cycle(manager, clock)
    events = len(manager.events_since(0))
    clock.step_wall(100 * DAY)
    _prune(manager, clock)
    assert len(manager.events_since(0)) == events
    manager.close()


def test_no_pruning_by_age_while_the_clock_is_not_synchronised(
        tmp_path: Path, sync: SyncState, caplog: pytest.LogCaptureFixture) -> None:
    """Not synchronised: nothing goes by age, however old it looks; the count bound holds.
    Synchronised again: events 90 days older than the newest go. Logged at each change."""
    clock = ManualClock()
    manager = _manager(tmp_path / "alarms.sqlite", clock, max_events=4)
    with caplog.at_level(logging.INFO, logger="gateway.alarms.journal"):
        sync.synced = True
        _alarm_cycle(manager, clock, "old")
        sync.synced = False
        clock.advance(200 * DAY)
        _alarm_cycle(manager, clock, "new")
        _prune(manager, clock)
        _prune(manager, clock)
        subjects = [e.subject for e in manager.events_since(0)]
        assert len(subjects) == 4 and subjects.count("new") == 3  # the count bound only
        sync.synced = True
        _prune(manager, clock)
        assert [e.subject for e in manager.events_since(0)] == ["new"] * 3
    changes = [r.getMessage() for r in caplog.records if "age_prune" in r.getMessage()]
    assert len(changes) == 2 and "held" in changes[0] and "resumed" in changes[1]
    manager.close()


def test_alarms_journalled_before_ntp_stay_as_long_as_their_neighbours(
        tmp_path: Path, sync: SyncState) -> None:
    """A power cut after 200 quiet days: the Pi reboots with fake-hwclock's stale time, a
    hydrogen alarm is journalled, NTP steps the clock, more alarms. The next prune deletes the
    history older than 90 days but not the alarm from before NTP, whose stamp only looks
    older; it goes when the alarms journalled after it are past 90 days too."""
    sync.synced = True
    clock = ManualClock()
    manager = _manager(tmp_path / "alarms.sqlite", clock)
    _alarm_cycle(manager, clock, "old")
    clock.advance(200 * DAY)
    sync.synced = False
    clock.step_wall(-200 * DAY + 3600)  # fake-hwclock: an hour after the last shutdown
    _alarm_cycle(manager, clock, "before-ntp")
    clock.step_wall(200 * DAY - 3600)  # NTP
    sync.synced = True
    _alarm_cycle(manager, clock, "after-ntp")
    _prune(manager, clock)
    assert [e.subject for e in manager.events_since(0)] == ["before-ntp"] * 3 + ["after-ntp"] * 3
    clock.advance(100 * DAY)
    _alarm_cycle(manager, clock, "later")
    _prune(manager, clock)
    assert [e.subject for e in manager.events_since(0)] == ["later"] * 3
    manager.close()


def test_a_first_boot_in_1970_keeps_its_alarms_until_later_ones_age(
        tmp_path: Path, sync: SyncState) -> None:
    """A new gateway's first boot without NTP journals in 1970 (no earlier event to compare
    with: a time before 2020 is a clock never set)."""
    clock = ManualClock(start_ns=10**9)
    manager = _manager(tmp_path / "alarms.sqlite", clock)
    _alarm_cycle(manager, clock, "unset-clock")
    clock.step_wall(1_800_000_000.0)  # NTP
    sync.synced = True
    _alarm_cycle(manager, clock, "synchronised")
    _prune(manager, clock)
    assert len(manager.events_since(0)) == 6
    clock.advance(100 * DAY)
    _alarm_cycle(manager, clock, "later")
    _prune(manager, clock)
    assert [e.subject for e in manager.events_since(0)] == ["later"] * 3
    manager.close()


Op = tuple[float, int]
"""(seconds the clocks advance, alarm cycles journalled then)."""


def _history(ops: list[Op]) -> tuple[AlarmManager, ManualClock]:
    clock = ManualClock()
    manager = _manager(MEMORY, clock, max_events=50)
    for n, (seconds, cycles) in enumerate(ops):
        clock.advance(seconds)
        for c in range(cycles):
            _alarm_cycle(manager, clock, f"s{n}-{c}")
    return manager, clock


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.tuples(st.floats(0.0, 60 * DAY), st.integers(0, 3)), min_size=1,
                    max_size=12),
       step=st.floats(-60 * 365 * DAY, 60 * 365 * DAY))
def test_a_wall_clock_step_never_makes_a_prune_delete_more(ops: list[Op], step: float) -> None:
    """Synchronised or not, a prune after a wall-clock step (any size, either way) deletes
    nothing that the same prune without the step would keep; the newest event always stays."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(clocksync, "synchronised", lambda: True)
        plain, plain_clock = _history(ops)
        stepped, stepped_clock = _history(ops)
        stepped_clock.step_wall(step)
        _prune(plain, plain_clock)
        _prune(stepped, stepped_clock)
        kept = {e.seq for e in plain.events_since(0, limit=10_000)}
        kept_stepped = [e.seq for e in stepped.events_since(0, limit=10_000)]
        assert kept <= set(kept_stepped)
        if plain.last_seq:
            assert kept_stepped and kept_stepped[-1] == stepped.last_seq
        plain.close()
        stepped.close()


def test_a_journal_of_before_the_clock_flag_is_brought_up_to_date(
        tmp_path: Path, sync: SyncState) -> None:
    """A journal written by a gateway before `clock_unsynced` existed opens with its events
    (taken as journalled with a synchronised clock) and prunes by age as before."""
    import sqlite3

    sync.synced = True
    path = tmp_path / "alarms.sqlite"
    clock = ManualClock()
    manager = _manager(path, clock)
    _alarm_cycle(manager, clock, "old")
    manager.close()
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE events DROP COLUMN clock_unsynced")
    manager = _manager(path, clock)
    assert [e.subject for e in manager.events_since(0)] == ["old"] * 3
    clock.advance(100 * DAY)
    _alarm_cycle(manager, clock, "new")
    _prune(manager, clock)
    assert [e.subject for e in manager.events_since(0)] == ["new"] * 3
    manager.close()
