"""Rule-engine state across a config apply and a restart, on the shipped telecom site with a
manual clock (fast, pure): an adopted engine continues exactly where the old one stood; a rule
whose parameters changed is re-judged from the carried state; an alarm held from the journal
stays active through missing data and returns only on good data past limit − deadband; what
"unknown" means per leaf (gateway.rules.conditions)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.clock import ManualClock
from gateway.config.loader import LoadedConfig
from gateway.config.section import replaced
from gateway.field.sample import Quality, Sample, Value
from gateway.rules.conditions import (
    Above,
    Debounce,
    PointState,
    ValueSignal,
)
from gateway.rules.config import ParameterOverrides
from gateway.rules.engine import RuleEngine
from gateway.rules.nodes import (
    CompareLeaf,
    EqualsLeaf,
    FlatLeaf,
    InvalidLeaf,
    StaleLeaf,
)
from gateway.rules.section import ParameterOverride, RulesSection
from tests import shipped

REPO = Path(__file__).resolve().parents[2]
TELECOM = "telecom_equipment_room"
"""The site and the packs load on first use, once per process (tests/shipped.py)."""

H2 = ("explosion.h2_alarm", "h2-batt-01.h2")
RATE = ("fire.heat_rate_of_rise", "th-tx-a03.temperature")
FIRE = ("fire.smoke_coincidence", "tx-3f")
LEAK = ("environment.water_leak", "di-tx-01.di3")
STALE = ("sensor_health.stale", "h2-batt-01")
OFFLINE = ("sensor_health.device_offline", "h2-batt-01")


def overrides(*sets: tuple[str, dict[str, float]]) -> ParameterOverrides:
    return ParameterOverrides.from_section(RulesSection(parameters=tuple(
        ParameterOverride(rule=rule, set=dict(values)) for rule, values in sets)))


class Engine:
    """A rule engine on the telecom site with its own manual clock."""

    def __init__(self, loaded: LoadedConfig | None = None, params: ParameterOverrides | None = None,
                 clock: ManualClock | None = None) -> None:
        self.clock = clock or ManualClock()
        self.engine = RuleEngine(shipped.packs(), loaded or shipped.site(TELECOM), self.clock,
                                 params)

    def feed(self, values: Mapping[str, Value], quality: Quality = Quality.GOOD) -> None:
        ts = self.clock.now_ns()
        self.engine.on_samples([Sample(p, v, ts, quality) for p, v in values.items()])

    def results(self) -> dict[tuple[str, str], tuple[bool, Value]]:
        return {(e.rule, e.subject): (e.active, e.value) for e in self.engine.evaluate()}

    def alarms(self) -> dict[tuple[str, str], tuple[bool, Value]]:
        """`results` as the alarms see them: every binding's state, an active one's value. A
        normal binding's value is the one it had when it became normal or was first evaluated
        (gateway.rules.engine: a new value on the normal side is not even evaluated), so an
        engine that adopts another shows the latest reading there, the old one an older one."""
        return {key: (active, value if active else None)
                for key, (active, value) in self.results().items()}

    def run(self, seconds: int, values: Mapping[str, Value],
            quality: Quality = Quality.GOOD) -> dict[tuple[str, str], tuple[bool, Value]]:
        result = {}
        for _ in range(seconds + 1):
            self.feed(values, quality)
            result = self.results()
            self.clock.advance(1.0)
        return result


HAZARD: dict[str, Value] = {"h2-batt-01.h2": 30.0, "smoke-tx-01.alarm": True,
                            "smoke-tx-02.alarm": True, "di-tx-01.di3": True,
                            "h2-batt-01.online": True}


def rising(t: float) -> dict[str, Value]:
    return {**HAZARD, "th-tx-a03.temperature": round(20.0 + t * 0.2, 1)}  # 12 °C/min


def hazard_for(engine: Engine, seconds: int) -> dict[tuple[str, str], tuple[bool, Value]]:
    result = {}
    for t in range(seconds + 1):
        engine.feed(rising(t))
        result = engine.results()
        engine.clock.advance(1.0)
    return result


def test_an_apply_of_the_same_rules_carries_every_alarm_with_no_data_at_all() -> None:
    old = Engine()
    before = hazard_for(old, 40)
    for key in (H2, RATE, FIRE, LEAK):
        assert before[key][0], key
    new = Engine(clock=old.clock)
    assert new.engine.adopt(old.engine) == len(new.engine.bindings())
    after = new.results()  # no sample has reached the new engine yet
    for key in (H2, RATE, FIRE, LEAK):
        assert after[key] == before[key], key
    assert new.alarms() == old.alarms()
    for t in range(41, 50):  # and both go on alike: rate windows, delays, latches carried
        old.feed(rising(t))
        new.feed(rising(t))
        assert new.alarms() == old.alarms()
        old.clock.advance(1.0)


def test_a_changed_threshold_is_judged_from_the_carried_value() -> None:
    old = Engine()
    assert hazard_for(old, 10)[H2] == (True, 30.0)
    lower = Engine(params=overrides(("explosion.h2_alarm", {"alarm_lel": 28.0})),
                   clock=old.clock)
    lower.engine.adopt(old.engine)
    assert lower.results()[H2] == (True, 30.0)  # still exceeded: stays, no on-delay again
    higher = Engine(params=overrides(("explosion.h2_alarm", {"alarm_lel": 40.0})),
                    clock=old.clock)
    higher.engine.adopt(old.engine)
    assert higher.results()[H2] == (False, 30.0)  # good data below the new limit − deadband


def test_a_pending_on_delay_keeps_running_through_an_apply() -> None:
    old = Engine()
    old.feed({"h2-batt-01.h2": 30.0})
    assert not old.results()[H2][0]
    old.clock.advance(1.0)
    new = Engine(clock=old.clock)
    new.engine.adopt(old.engine)
    new.feed({"h2-batt-01.h2": 30.0})
    assert not new.results()[H2][0]
    new.clock.advance(1.0)
    new.feed({"h2-batt-01.h2": 30.0})
    assert new.results()[H2][0]  # 2 s after the first good sample, as without the apply


def test_a_rollback_takes_a_device_the_candidate_never_read_from_before() -> None:
    old = Engine()
    hazard_for(old, 10)
    site = shipped.site(TELECOM)
    devices = [replaced(d, unit=99) if d.id == "h2-batt-01" else d
               for d in site.config.devices]
    wrong = dataclasses.replace(site, config=replaced(site.config, devices=devices))
    candidate = Engine(wrong, clock=old.clock)
    candidate.engine.adopt(old.engine)
    for _ in range(5):  # the candidate never reaches the detector
        candidate.feed({"h2-batt-01.h2": None}, Quality.COMM_ERROR)
        candidate.feed({"h2-batt-01.online": False})
        candidate.results()
        candidate.clock.advance(1.0)
    assert "h2-batt-01" not in candidate.engine.fresh_devices()
    back = Engine(clock=old.clock)
    back.engine.adopt(candidate.engine, old.engine, {"h2-batt-01"})
    result = back.results()
    assert result[H2] == (True, 30.0)
    assert not result[OFFLINE][0]  # what the candidate saw is no fact about the device


def test_an_alarm_held_from_the_journal_survives_missing_data_until_good_data() -> None:
    fresh = Engine()
    held = fresh.engine.hold({H2: 30.0, LEAK: True, FIRE: 2, STALE: 130})
    assert set(held) == {H2, LEAK, FIRE, STALE}
    first = fresh.results()
    for key in (H2, LEAK, FIRE, STALE):
        assert first[key][0], key
    assert first[H2][1] == 30.0
    for quality in (Quality.COMM_ERROR, Quality.STALE, Quality.INVALID):
        fresh.feed({"h2-batt-01.h2": None, "di-tx-01.di3": None}, quality)
        fresh.clock.advance(30.0)
        result = fresh.results()
        assert result[H2][0] and result[LEAK][0] and result[FIRE][0] and result[STALE][0]
    fresh.feed({"h2-batt-01.h2": 24.0})  # below the limit, inside the deadband (25 − 2)
    assert fresh.results()[H2][0]
    fresh.feed({"h2-batt-01.h2": 22.0, "di-tx-01.di3": False})
    result = fresh.results()
    assert not result[H2][0] and not result[LEAK][0]
    assert result[STALE][0]  # the detector's other readings are still missing
    fresh.feed({i.id: 0 for i in fresh.engine.points()
                if i.device == "h2-batt-01" and not i.id.endswith(".online")})
    assert not fresh.results()[STALE][0]  # every reading arrived: not stale any more


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["h2-batt-01.h2", "th-tx-a03.temperature",
                                           "smoke-tx-01.alarm", "smoke-tx-02.alarm",
                                           "di-tx-01.di3", "h2-batt-01.online"]),
                          st.floats(min_value=0, max_value=60), st.sampled_from(list(Quality)),
                          st.sampled_from([0.5, 1.0, 2.5])),
                min_size=2, max_size=60),
       st.data())
def test_an_adopted_engine_evaluates_exactly_as_the_one_it_replaced(
        steps: list[tuple[str, float, Quality, float]], data: st.DataObject) -> None:
    """Property: run one engine through a sample sequence; run another through the same
    sequence but replace it, at any step, by a new engine that adopts it. Every evaluation
    after the replacement is the same in both (as the alarms see it: `Engine.alarms`)."""
    split = data.draw(st.integers(min_value=0, max_value=len(steps)))
    straight, replaced = Engine(), Engine()
    for index, (point, number, quality, dt) in enumerate(steps):
        if index == split:
            new = Engine(clock=replaced.clock)
            new.engine.adopt(replaced.engine)
            replaced = new
        value: Value = number
        if point.endswith((".alarm", ".di3", ".online")):
            value = number > 30
        if quality is not Quality.GOOD and number < 20:
            value = None
        for engine in (straight, replaced):
            engine.feed({point: value}, quality)
            engine.clock.advance(dt)
        assert straight.alarms() == replaced.alarms(), index


# --- unknown, per leaf -----------------------------------------------------------------------


def point(name: str, device: str = "d") -> PointState:
    return PointState(name, device, 0.0)


def test_a_group_value_with_a_missing_member_cannot_return_an_alarm() -> None:
    a, b = point("d.a"), point("d.b")
    leaf = CompareLeaf(ValueSignal([a, b], lambda v: v), Above(50, 5), Debounce(), [a, b])
    a.update(60.0, Quality.GOOD, 1, 1.0)
    b.update(20.0, Quality.GOOD, 1, 1.0)
    assert leaf.eval(1.0)
    a.update(None, Quality.COMM_ERROR, 2, 2.0)  # the member past the limit goes missing
    assert leaf.eval(2.0)
    a.update(40.0, Quality.GOOD, 3, 3.0)
    assert not leaf.eval(3.0)


def test_an_equals_group_with_a_bad_member_cannot_return_an_alarm() -> None:
    a, b = point("d.a"), point("d.b")
    leaf = EqualsLeaf([a, b], [frozenset({True}), frozenset({True})], Debounce())
    a.update(True, Quality.GOOD, 1, 1.0)
    b.update(False, Quality.GOOD, 1, 1.0)
    assert leaf.eval(1.0)
    a.update(None, Quality.COMM_ERROR, 2, 2.0)
    assert leaf.eval(2.0)
    a.update(False, Quality.GOOD, 3, 3.0)
    assert not leaf.eval(3.0)


def test_sensor_health_leaves_fire_on_missing_data_and_clear_only_on_good_data() -> None:
    p = point("d.t")
    stale = StaleLeaf(p, max_age=60)
    assert not stale.eval(59.0)  # no data yet, within max_age: unknown, stays normal
    assert stale.eval(60.0)  # missing data for max_age is the finding itself
    p.update(None, Quality.COMM_ERROR, 1, 61.0)
    assert stale.eval(61.0)
    p.update(21.0, Quality.GOOD, 2, 62.0)
    assert not stale.eval(62.0)
    invalid = InvalidLeaf(p, duration=10)
    p.update(999.0, Quality.INVALID, 3, 70.0)
    assert invalid.eval(80.0)
    p.update(None, Quality.COMM_ERROR, 4, 81.0)  # no reply is not a valid reading
    assert invalid.eval(81.0)
    p.update(999.0, Quality.INVALID, 5, 82.0)  # invalid again, the clock restarted
    assert invalid.eval(83.0)
    p.update(21.0, Quality.GOOD, 6, 84.0)
    assert not invalid.eval(84.0)
    q = point("d.h")
    flat = FlatLeaf(q, window=100, epsilon=0.05)
    for t in range(0, 101, 10):
        q.update(50.0, Quality.GOOD, t, float(t))
    assert flat.eval(100.0)
    q.update(None, Quality.COMM_ERROR, 101, 101.0)
    assert flat.eval(101.0)
    q.update(50.0, Quality.GOOD, 102, 102.0)
    assert flat.eval(102.0)
    q.update(51.0, Quality.GOOD, 103, 103.0)  # it moved: good data says not stuck
    assert not flat.eval(103.0)
