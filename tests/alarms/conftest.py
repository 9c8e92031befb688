"""Fixtures and builders for the alarm tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.alarms.journal import Journal
from gateway.alarms.manager import AlarmManager
from gateway.alarms.types import Evaluation, Severity
from gateway.clock import ManualClock


def ev(rule: str = "env.temp_high", subject: str = "th-1.temp", active: bool = True, *,
       value: Any = 42.0, severity: Severity = Severity.MAJOR, ts: int = 0,
       room: str | None = "room1", actions: tuple[str, ...] = (),
       latching: bool = False, title: str | None = None) -> Evaluation:
    return Evaluation(rule=rule, subject=subject, active=active, value=value,
                      severity=severity, ts=ts, title=title or f"{rule} on {subject}",
                      room=room, actions=actions, latching=latching)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "alarms.sqlite"


@pytest.fixture
def journal(journal_path: Path, clock: ManualClock) -> Iterator[Journal]:
    """A journal on a real file whose clock counts as synchronised (the writer-thread tests)."""
    made = Journal(journal_path, clock=clock, synchronised=lambda: True)
    yield made
    made.close()


MakeManager = Callable[..., AlarmManager]


@pytest.fixture
def make_manager(journal_path: Path, clock: ManualClock) -> Iterator[MakeManager]:
    made: list[AlarmManager] = []

    def make(**kwargs: Any) -> AlarmManager:
        manager = AlarmManager(Journal(journal_path, clock=clock), clock, **kwargs)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.close()


@pytest.fixture
def manager(make_manager: MakeManager) -> AlarmManager:
    return make_manager()
