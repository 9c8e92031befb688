"""What the rules keep per binding after issue 15's second memory change (6 Dec 2026; the
figures in docs/performance.md, "Rules: 2 MiB less at 2,000 points"), so that a change which
makes every binding heavier again is caught: an engine built on a shipped site holds at most
`BYTES_PER_BINDING` bytes a binding (tracemalloc, the method of
tests/rules/test_rules_memory.py: datacenter_lithium_room 776 B before, 595 after); the leaves
of one plan and the rate windows of one rule's parameters share what they have in common, and
a leaf given other delays takes a copy of its own; an engine's point states are its intake's
entries, and points marking the same bindings share one tuple of them.

Issue 15's third change (6 Dec 2026, docs/performance.md "Rules and alarms: a normal
binding's evaluation is kept by nobody"): after its first round an engine holds at most
`ROUND_BYTES_PER_BINDING` more bytes a binding (116 before: an `Evaluation` each; 4 after,
deadlines: a normal binding's value and time are in columns made with the engine,
gateway.rules.latest), and hands out equal evaluations, the same objects while unchanged; its
bindings' subjects are their first points' (no list of them: 632 B a binding built, 631
before, the list's 8 bytes paying for the latest evaluations' columns)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.clock import ManualClock
from gateway.config.loader import load_gateway_config
from gateway.field.sample import Quality, Sample
from gateway.rules.binding import bind
from gateway.rules.conditions import Above, Debounce, PointState, ValueSignal
from gateway.rules.config import default_rules_dir, load_rule_packs
from gateway.rules.engine import RuleEngine
from gateway.rules.nodes import CompareLeaf, FlatLeaf, InvalidLeaf, StaleLeaf
from gateway.rules.rate import RateSignal, rising

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "datacenter_lithium_room.yaml"

BYTES_PER_BINDING = 660
"""776 before, 595 after (see the module docstring); 632 on 6 Dec 2026 with issue 15's third
change (631 before it); 620 that evening, counting the rules' modules' allocations only (the
rule packs as sections)."""
ROUND_BYTES_PER_BINDING = 16
"""What the first round adds (see the module docstring): 116 before, 4 after."""


@contextmanager
def _held() -> Iterator[list[int]]:
    """Yields a list that takes the bytes the rules' modules allocated in the block and still
    hold at its end (theirs only: under xdist another test's thread may allocate meanwhile)."""
    held: list[int] = []
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.take_snapshot()
        yield held
        gc.collect()
        rules = [tracemalloc.Filter(True, str(REPO / "gateway" / "rules" / "*"))]
        end = tracemalloc.take_snapshot().filter_traces(rules)
        held.append(sum(stat.size_diff for stat in
                        end.compare_to(start.filter_traces(rules), "filename")))
    finally:
        tracemalloc.stop()


def _engine() -> RuleEngine:
    loaded, packs = load_gateway_config(SITE), load_rule_packs(default_rules_dir())
    RuleEngine(packs, loaded, ManualClock())  # the site's points and plans, made once
    with _held() as held:
        engine = RuleEngine(packs, loaded, ManualClock())
    bindings = engine.counts()[1]
    assert bindings > 400
    assert held[0] / bindings <= BYTES_PER_BINDING, f"{held[0] / bindings:.0f} B a binding"
    return engine


def test_an_engine_of_a_shipped_site_holds_at_most_its_bytes_per_binding() -> None:
    _engine()


def _points(n: int) -> list[PointState]:
    return [PointState(f"d.p{i}", "d", 0.0) for i in range(n)]


def test_the_leaves_of_one_plan_share_their_shape_and_other_delays_are_a_leafs_own() -> None:
    a, b, c, d = _points(4)
    stale = [StaleLeaf(a, 60.0), StaleLeaf(b, 60.0), StaleLeaf(c, 60), StaleLeaf(d, 60.0, True)]
    assert stale[0].shape is stale[1].shape
    assert stale[2].shape is not stale[0].shape and stale[2].max_age == 60  # 60 is not 60.0
    assert stale[3].shape is not stale[0].shape and stale[3].include_offline
    stale[1].on_delay = 5.0
    assert stale[1].shape is not stale[0].shape
    assert (stale[0].on_delay, stale[1].on_delay, stale[1].max_age) == (0.0, 5.0, 60.0)
    assert InvalidLeaf(a, 30.0).shape is InvalidLeaf(b, 30.0).shape
    flat = FlatLeaf(a, 600.0, 0.5), FlatLeaf(b, 600.0, 0.5)
    assert flat[0].shape is flat[1].shape and a.flats == (flat[0],)  # its own tracker
    test = Above(40.0, 1.0)
    one, two, three = (CompareLeaf(ValueSignal([p], rising), test, Debounce(10.0))
                       for p in (a, b, c))
    other = CompareLeaf(ValueSignal([d], rising), Above(40.0, 1.0), Debounce(10.0))
    assert one.shape is two.shape and other.shape is not one.shape  # another test object
    three.off_delay = 3.0
    assert three.shape is not one.shape and (three.on_delay, three.test) == (10.0, test)
    rates = [RateSignal([p], 60.0, 60.0, 3, rising, confidence=2.0) for p in (a, b)]
    assert rates[0].windows[0].shape is rates[1].windows[0].shape


def test_an_engines_point_states_are_its_intake_entries_sharing_their_marks() -> None:
    engine = _engine()
    points = engine._intake.points
    assert points is engine._states
    for field in ("readers", "gated", "every", "gap_marks"):
        tuples = [getattr(point, field) for point in points.values()]
        assert len({id(marks) for marks in tuples}) == len(set(tuples)), field
    assert len({point.gap_marks for point in points.values()}) < len(points) / 10


def test_after_its_first_round_an_engine_keeps_no_evaluation_of_a_normal_binding() -> None:
    engine = _engine()
    with _held() as held:
        first = engine.evaluate_changed()  # the first round: every binding's
        count = len(first)
        del first
    assert count == engine.counts()[1]
    assert held[0] / count <= ROUND_BYTES_PER_BINDING, f"{held[0] / count:.0f} B a binding"
    engine.clock.advance(1.0)  # type: ignore[attr-defined]  # (a ManualClock)
    engine.on_samples([Sample(p, 90.0, engine.clock.now_ns(), Quality.GOOD)
                       for p in ("th-a01-low.temperature", "th-a06-mid.temperature")])
    changed = engine.evaluate_changed()
    active = [e for e in changed if e.active]
    assert active and engine.active() == active
    current = engine.current()  # every binding's: the normal ones made again, equal
    assert [(e.rule, e.subject) for e in current] == engine.bindings() == [
        (b.rule, b.subject) for b, _, node in bind(engine.packs, engine._site, engine.overrides)
        if node is not None]
    again = engine.current()
    assert all(a is b for a, b in zip(current, again, strict=True))  # unchanged: the same
    assert [e for e in current if e.active] == active and all(
        any(a is e for a in current) for e in active)
