"""A binding never active is kept as its latest evaluation, not as an alarm record
(gateway.alarms.ledger): the manager behaves exactly as one that keeps a record of every
evaluated binding (the manager before; here a subclass answering False to `_stays_quiet`).
Side by side over random evaluations — of some bindings, in any order of their times, drill
alarms among them — commands on any alarm (never-active ones too), suppressions, drills
ended, ticks and restarts: the same events, views, known alarms in the same order, held
conditions, outputs, first-outs and journal. And it is lighter by a record per binding."""

from __future__ import annotations

import shutil
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from gateway.alarms.events import DRILL_PREFIX, AlarmCommandError, AlarmEvent
from gateway.alarms.journal import Journal
from gateway.alarms.lifecycle import AlarmKey
from gateway.alarms.manager import AlarmManager
from gateway.alarms.types import Evaluation, Severity
from gateway.clock import ManualClock

RULES = ["fire.smoke", "env.temp_high", "env.rate"]
SUBJECTS = {"dev1.a": "room1", "dev1.b": "room1", "dev2.a": "room2",
            f"{DRILL_PREFIX}dev1.a": "room1"}
KEYS = [AlarmKey(r, s) for r in RULES for s in SUBJECTS]
SCOPES = [*RULES, "room1", "room2", "dev1", "dev2.a", "nothing"]
keys = st.sampled_from(KEYS)


class EveryRecord(AlarmManager):
    """The reference: a record for every binding evaluated, as before."""

    def _stays_quiet(self, ev: Evaluation) -> bool:
        return False


def _evaluation(key: AlarmKey, active: bool, value: float, ts: int) -> Evaluation:
    return Evaluation(rule=key.rule, subject=key.subject, active=active, value=value,
                      severity=Severity.CRITICAL if key.rule == "fire.smoke"
                      else Severity.MINOR, ts=ts, title=str(key),
                      room=SUBJECTS.get(key.subject, "room1"), actions=("siren", "exhaust_fan"),
                      latching=key.subject == "dev1.b")


class SideBySide(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="alarms-quiet-"))
        self.clock = ManualClock()
        self.managers = self._open()

    def _open(self) -> tuple[AlarmManager, AlarmManager]:
        return tuple(kind(Journal(self.dir / f"{kind.__name__}.sqlite", clock=self.clock),
                          self.clock, chatter_hold=30.0, flood_count=4, flood_window=120.0)
                     for kind in (AlarmManager, EveryRecord))  # type: ignore[return-value]

    def both(self, call: str, *args: Any) -> None:
        """The same call on both: the same events, or the same refusal."""
        results = []
        for manager in self.managers:
            try:
                results.append(getattr(manager, call)(*args))
            except AlarmCommandError as exc:
                results.append(("refused", str(exc)))
        quiet, every = results
        assert quiet == every, (call, args)

    @rule(batch=st.lists(st.tuples(keys, st.booleans(), st.sampled_from([0.0, 1.0, 2.5]),
                                   st.integers(0, 5)), max_size=8))
    def observe(self, batch: list[tuple[AlarmKey, bool, float, int]]) -> None:
        now = self.clock.now_ns()
        self.both("observe", [_evaluation(k, a, v, now - lag * 10**8)
                              for k, a, v, lag in batch])

    @rule(seconds=st.sampled_from([0.5, 5.0, 31.0, 61.0, 130.0, 400.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.both("tick")

    @rule(key=keys)
    def acknowledge(self, key: AlarmKey) -> None:
        self.both("acknowledge", key, "alice")

    @rule(room=st.sampled_from([None, "room1"]))
    def acknowledge_all(self, room: str | None) -> None:
        self.both("acknowledge_all", "bob", room)

    @rule(key=keys, minutes=st.integers(1, 10))
    def shelve(self, key: AlarmKey, minutes: int) -> None:
        self.both("shelve", key, "alice", self.clock.now_ns() + minutes * 60 * 10**9, "why")

    @rule(key=keys)
    def unshelve(self, key: AlarmKey) -> None:
        self.both("unshelve", key, "bob")

    @rule(scope=st.sampled_from(SCOPES), minutes=st.integers(1, 10))
    def suppress(self, scope: str, minutes: int) -> None:
        self.both("suppress", scope, "carol", "hot work",
                  self.clock.now_ns() + minutes * 60 * 10**9)

    @rule(scope=st.sampled_from(SCOPES))
    def unsuppress(self, scope: str) -> None:
        self.both("unsuppress", scope, "carol")

    @rule(key=keys)
    def out_of_service(self, key: AlarmKey) -> None:
        self.both("set_out_of_service", key, "dave", "broken")

    @rule(key=keys)
    def return_to_service(self, key: AlarmKey) -> None:
        self.both("return_to_service", key, "dave")

    @rule(key=keys)
    def look(self, key: AlarmKey) -> None:
        self.both("get", key)

    @rule()
    def end_drill(self) -> None:
        self.both("end_drill", "erin", "drill over")

    @rule()
    def restart(self) -> None:
        for manager in self.managers:
            manager.close()
        self.managers = self._open()

    @invariant()
    def alike(self) -> None:
        quiet, every = self.managers
        assert quiet.known() == every.known()
        assert quiet.active() == every.active()
        assert quiet.held_conditions() == every.held_conditions()
        assert list(quiet.held_conditions()) == list(every.held_conditions())
        assert quiet.demanded_outputs() == every.demanded_outputs()
        assert quiet.first_outs() == every.first_outs()
        assert quiet.flood == every.flood
        assert quiet.suppressions() == every.suppressions()
        assert quiet.next_chatter_release() == every.next_chatter_release()
        assert _journal(quiet) == _journal(every)

    def teardown(self) -> None:
        for manager in self.managers:
            manager.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _journal(manager: AlarmManager) -> list[AlarmEvent]:
    return manager.events_since(0, limit=100_000)


TestSideBySide = SideBySide.TestCase
TestSideBySide.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])


def _held_bytes(kind: type[AlarmManager], tmp: Path, bindings: int) -> int:
    clock = ManualClock()
    manager = kind(Journal(tmp / f"{kind.__name__}.sqlite", clock=clock), clock)
    batch = [_evaluation(AlarmKey(f"rule.{i % 40}", f"dev{i // 40}.p"), False, 1.0,
                         clock.now_ns()) for i in range(bindings)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        manager.observe(batch)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(manager.known()) == bindings and not manager.active()
    manager.close()
    return held


def test_quiet_bindings_hold_no_record(tmp_path: Path) -> None:
    """5,000 bindings evaluated inactive: the manager holds their evaluations (the engine's
    own objects) and keys, not an AlarmRecord and an AlarmKey each (~220 bytes)."""
    quiet = _held_bytes(AlarmManager, tmp_path, 5_000)
    every = _held_bytes(EveryRecord, tmp_path, 5_000)
    assert every - quiet > 150 * 5_000, (quiet, every)
    assert quiet < 150 * 5_000, quiet
