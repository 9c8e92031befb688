"""A quiet binding — evaluated only inactive, never named — is kept as a few columns, not as
its `Evaluation` under a key tuple in a dict (gateway.alarms.known, issue 15): the manager
holds at most `QUIET_BYTES` bytes for one, its evaluation included, where it held about 240
(an `Evaluation` of 112 bytes and its time, a key tuple of 56 and a dict entry). Its evaluation
is made again, equal, when a command names it; every known alarm keeps the place it was first
evaluated in, also when a quiet one becomes a record; an evaluation the columns cannot hold is
kept whole. (That the manager behaves as one that keeps a record of every binding:
tests/alarms/test_quiet_bindings.py.)"""

from __future__ import annotations

import gc
import tracemalloc

from gateway.alarms.known import KnownAlarms
from gateway.alarms.lifecycle import AlarmKey, AlarmRecord
from gateway.alarms.manager import AlarmManager
from gateway.alarms.types import Evaluation, Severity
from tests.alarms.conftest import ev

QUIET_BYTES = 64
"""Measured 6 Dec 2026 (5,000 quiet bindings of 40 rules): 52 bytes each; 238 before."""


def test_a_quiet_binding_is_kept_in_a_few_columns(manager: AlarmManager) -> None:
    count = 5_000
    rules = [f"rule.{i}" for i in range(40)]  # the rules' own strings and values (the engine
    subjects = [f"dev{i // 40}.p" for i in range(count)]  # keeps them): made beforehand
    titles, rooms = [f"title {i}" for i in range(40)], [f"room{i}" for i in range(7)]
    values = [i * 0.5 for i in range(count)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        batch = [ev(rules[i % 40], subjects[i], False, value=values[i], severity=Severity.MINOR,
                    ts=1_700_000_000_000_000_000 + i, title=titles[i % 40], room=rooms[i % 7],
                    actions=("siren",)) for i in range(count)]
        kept = {(e.rule, e.subject): e for e in batch[::500]}
        manager.observe(batch)
        del batch
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held / count <= QUIET_BYTES, f"{held / count:.0f} B a quiet binding"
    assert len(manager.known()) == count and not manager.active()
    known = manager.known()
    assert known[:2] == [AlarmKey("rule.0", "dev0.p"), AlarmKey("rule.1", "dev0.p")]
    for key, made in kept.items():  # named: a record now, of an equal evaluation
        view = manager.get(key)
        assert (view.value, view.severity, view.title, view.room, view.actions) == (
            made.value, made.severity, made.title, made.room, made.actions)
        assert manager._known.records[key].ev == made
    assert manager.known() == known  # in their places


def test_a_quiet_evaluation_is_made_again_equal_or_kept_whole() -> None:
    known = KnownAlarms()
    odd = [ev("r", "a", False, ts=2**70), ev("r", "b", False, ts=1.5),  # type: ignore[arg-type]
           ev("r", "c", None, ts=1),  # type: ignore[arg-type]  # inactive: not False
           ev("r", "d", False, actions=["siren"])]  # type: ignore[arg-type]  # unhashable
    plain = [ev("r", "e", False, value="open", ts=-5), ev("q", "a", False, value=None),
             ev("r", "f", False, value=3, ts=2**63 - 1, room=None, latching=True)]
    for e in [*plain, *odd]:
        assert known.keep_quiet(e)
    for e in odd:  # the very object
        assert known.quiet_evaluation((e.rule, e.subject)) is e
    for e in plain:
        again = known.quiet_evaluation((e.rule, e.subject))
        assert again == e and again is not e and type(again) is Evaluation
    newer = ev("r", "e", False, value="closed", ts=7)
    assert known.update_quiet(newer) and not known.update_quiet(ev("r", "zz", False))
    assert known.quiet_evaluation(("r", "e")) == newer
    assert not known.keep_quiet(ev("r", 5, False))  # type: ignore[arg-type]  # no text: a record
    assert ("r", 5) not in known  # type: ignore[operator]  # (no error)
    assert ("r", "zz") not in known and ("r", "a") in known


def test_every_alarm_keeps_its_place() -> None:
    known = KnownAlarms()
    for subject in "abc":
        known.keep_quiet(ev("r", subject, False))
    d = AlarmRecord(key=AlarmKey("r", "d"), ev=ev("r", "d", True))
    known.add(("r", "d"), d)
    b = AlarmRecord(key=AlarmKey("r", "b"), ev=ev("r", "b", True))
    known.add(("r", "b"), b)  # a quiet one becomes a record: in its place, before d
    assert list(known) == [("r", "a"), ("r", "b"), ("r", "c"), ("r", "d")]
    assert list(known.records.values()) == [b, d]
    assert known.pop(("r", "c")) is None and known.pop(("r", "d")) is d
    known.keep_quiet(ev("r", "c", False))  # forgotten, met again: the next place
    assert list(known) == [("r", "a"), ("r", "b"), ("r", "c")]
    assert sorted(known.bindings()) == [("r", "a", "room1"), ("r", "b", "room1"),
                                        ("r", "c", "room1")]
