"""Issue 11 in the rule layer: chemistry-dependent defaults, block against ambient and against
its string, rate rules that judge as soon as their span allows (with a noise guard)."""

from __future__ import annotations

import random
import shutil
import statistics
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.clock import ManualClock
from gateway.config.loader import ConfigErrors, load_gateway_config
from gateway.field.sample import Quality, Sample
from gateway.rules.config import ParameterOverrides, default_rules_dir, load_rule_packs
from gateway.rules.differences import median_of
from gateway.rules.engine import RuleEngine
from gateway.rules.rate import RateWindow
from tests import shipped

REPO = Path(__file__).resolve().parents[2]
TELECOM = REPO / "firmware_configs" / "telecom_equipment_room.yaml"
DATACENTER = REPO / "firmware_configs" / "datacenter_lithium_room.yaml"
# The shipped packs: tests/shipped.py (loaded on first use, once per process).


def _engine(path: Path) -> tuple[RuleEngine, ManualClock]:
    loaded = load_gateway_config(path)
    clock = ManualClock()
    packs = shipped.packs()
    return RuleEngine(packs, loaded, clock, ParameterOverrides.for_site(loaded, packs)), clock


def _params(engine: RuleEngine, rule: str, subject: str) -> Mapping[str, object]:
    return next(b.parameters for b in engine.binding_details()
                if b.rule == rule and b.subject == subject)


def test_chemistry_sets_the_charging_limit() -> None:
    vrla, _ = _engine(TELECOM)
    lfp, _ = _engine(DATACENTER)
    assert _params(vrla, "explosion.cell_over_temperature",
                   "bm-batt-01.block1_temperature")["limit"] == 50
    assert _params(lfp, "explosion.cell_over_temperature",
                   "bms-rack-1.cell_temperature_max")["limit"] == 60
    # block-versus-ambient is a lead-acid criterion: bound in the VRLA room only
    assert ("explosion.block_above_ambient", "batt-3f") in vrla.bindings()
    assert not [b for b in lfp.bindings() if b[0] == "explosion.block_above_ambient"]
    assert [b for b in lfp.unconfigured() if b.rule == "explosion.block_above_ambient"]


def test_the_lithium_cold_charging_limit_is_not_applied_to_lead_acid(tmp_path: Path) -> None:
    """0 °C is the LFP pack's no-charge limit: a lead-acid string whose monitor reports cell
    temperatures charges in a cold cabinet (no inhibit all winter), LFP does not."""
    lfp, _ = _engine(DATACENTER)
    bound = [s for r, s in lfp.bindings() if r == "explosion.cell_under_temperature"]
    assert bound and _params(lfp, "explosion.cell_under_temperature", bound[0])["limit"] == 0
    data = yaml.safe_load(DATACENTER.read_text(encoding="utf-8"))
    data["profiles_dir"] = str(REPO / "hardware" / "profiles")
    for room in data["rooms"]:
        if room.get("chemistry") == "lfp":
            room["chemistry"] = "vrla"
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(data), encoding="utf-8")
    vrla, _ = _engine(site)
    assert not [b for b in vrla.bindings() if b[0] == "explosion.cell_under_temperature"]
    assert [b for b in vrla.unconfigured() if b.rule == "explosion.cell_under_temperature"]


def test_a_site_override_beats_the_chemistry_default(tmp_path: Path) -> None:
    data = yaml.safe_load(TELECOM.read_text(encoding="utf-8"))
    data["profiles_dir"] = str(REPO / "hardware" / "profiles")
    data["rules"] = {"parameters": [{"rule": "explosion.cell_over_temperature",
                                     "room": "batt-3f", "set": {"limit": 45}}]}
    data["devices"][-1]["chemistry"] = "lfp"  # a device's own chemistry wins over its room's
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(data), encoding="utf-8")
    loaded = load_gateway_config(site)
    overrides = ParameterOverrides.for_site(loaded, shipped.packs())
    assert overrides.chemistry("bm-batt-01", "batt-3f") == "vrla"
    assert overrides.chemistry(data["devices"][-1]["id"], "batt-3f") == "lfp"
    engine = RuleEngine(shipped.packs(), loaded, ManualClock(), overrides)
    assert _params(engine, "explosion.cell_over_temperature",
                   "bm-batt-01.block2_temperature")["limit"] == 45


def _run(engine: RuleEngine, clock: ManualClock, values: dict[str, float], seconds: int
         ) -> dict[tuple[str, str], bool]:
    """Feed `values` and evaluate once a second for `seconds`; the last results."""
    result: dict[tuple[str, str], bool] = {}
    for _ in range(seconds):
        engine.on_samples([Sample(p, v, clock.now_ns(), Quality.GOOD)
                           for p, v in values.items()])
        result = {(e.rule, e.subject): e.active for e in engine.evaluate()}
        clock.advance(1.0)
    return result


@pytest.mark.slow
def test_block_above_ambient_and_outlier() -> None:
    engine, clock = _engine(TELECOM)
    values = {f"bm-batt-01.block{i}_temperature": 24.5 for i in range(1, 5)}
    values |= {"bm-batt-01.block3_temperature": 35.5, "th-batt-01.temperature": 23.0}
    result = _run(engine, clock, values, 25)
    assert not result[("explosion.block_above_ambient", "batt-3f")]  # 30 s delay
    result = _run(engine, clock, values, 10)
    assert result[("explosion.block_above_ambient", "batt-3f")]  # 12.5 °C > 10 °C
    assert not result[("explosion.block_outlier", "bm-batt-01")]  # 5 min delay
    result = _run(engine, clock, values, 300)
    assert result[("explosion.block_outlier", "bm-batt-01")]  # 11 °C from the median
    # a bad room sensor makes block-versus-ambient unknown: it keeps its state
    engine.on_samples([Sample("th-batt-01.temperature", None, clock.now_ns(),
                              Quality.COMM_ERROR)])
    assert any(e.active for e in engine.evaluate()
               if (e.rule, e.subject) == ("explosion.block_above_ambient", "batt-3f"))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.floats(), min_size=1, max_size=12))
def test_the_outlier_s_median_is_statistics_median(values: list[float]) -> None:
    """The rule layer's own median (not importing `statistics`) gives `statistics.median`'s
    value, to the bit (repr: NaN and the sign of zero included)."""
    assert repr(median_of(values)) == repr(statistics.median(values))


@pytest.mark.slow
def test_the_whole_string_warming_is_no_outlier() -> None:
    engine, clock = _engine(TELECOM)
    values = {f"bm-batt-01.block{i}_temperature": 31.0 + i * 0.5 for i in range(1, 5)}
    result = _run(engine, clock, values | {"th-batt-01.temperature": 29.0}, 400)
    assert not result[("explosion.block_outlier", "bm-batt-01")]
    assert not result[("explosion.block_above_ambient", "batt-3f")]


def test_rate_is_judged_once_the_min_span_is_in_the_window() -> None:
    window = RateWindow(3600.0, per=3600.0, min_samples=5, min_span=300.0, confidence=2.0)
    t = 0.0
    while t < 299.0:
        window.add(t, 23.0 + t * 20.0 / 3600.0)  # 20 °C/h, clean
        t += 5.0
        assert window.rate(t) is None or t >= 300.0
    window.add(300.0, 23.0 + 300.0 * 20.0 / 3600.0)
    rate = window.rate(300.0)
    assert rate is not None and abs(rate - 20.0) < 0.5


def test_default_min_span_is_a_quarter_of_the_window() -> None:
    window = RateWindow(60.0, per=60.0, min_samples=3)
    for t in range(0, 15):
        window.add(float(t), float(t))
    assert window.rate(14.0) is None
    window.add(15.0, 15.0)
    assert window.rate(15.0) == 60.0


def _false_trends(sigma: float, interval: float, confidence: float, seeds: int = 2000) -> float:
    """The share of flat, noisy room-temperature windows (5 minutes: the rule's min_span;
    0.1 °C steps) whose rate reads as 5 °C/h or more, over `seeds` fixed random series."""
    bad = 0
    for seed in range(seeds):
        rng = random.Random(seed)
        window = RateWindow(3600.0, per=3600.0, min_samples=5, min_span=300.0,
                            confidence=confidence)
        t = 0.0
        while t <= 300.0:
            window.add(t, round(23.0 + rng.gauss(0.0, sigma), 1))
            t += interval
        rate = window.rate(t)
        bad += rate is None or abs(rate) >= 5.0
    return bad / seeds


@pytest.mark.parametrize("interval", [5.0, 10.0, 30.0])
def test_noise_alone_rarely_reads_as_a_room_temperature_trend(interval: float) -> None:
    """Flat room temperature with sensor noise, judged at the 5-minute minimum span (the
    hardest case: fewest samples): at ordinary noise (σ ≤ 0.2 °C) no window of 2,000 reads as a
    5 °C/h trend; at heavy noise (σ 0.3 °C) at most 0.5 % do, where the slope without the guard
    reads one in 20 (5 s polls) to one in 7 (30 s polls). A statistical bound, not "never": a
    2-standard-error guard on 11-60 samples lets a rare series through (hypothesis found one at
    σ 0.28, 30 s; measured 0.05 % at 5 s and 0.2 % at 30 s)."""
    assert _false_trends(0.2, interval, confidence=2.0) == 0.0
    guarded = _false_trends(0.3, interval, confidence=2.0)
    assert guarded <= 0.005
    assert _false_trends(0.3, interval, confidence=0.0) >= max(0.02, 10 * guarded)


def test_the_noise_guard_shrinks_but_keeps_a_real_trend() -> None:
    rng = random.Random(7)
    guarded = RateWindow(3600.0, per=3600.0, min_samples=5, min_span=300.0, confidence=2.0)
    plain = RateWindow(3600.0, per=3600.0, min_samples=5, min_span=300.0)
    for step in range(0, 61):
        t = step * 5.0
        value = 23.0 + t * 12.0 / 3600.0 + rng.gauss(0.0, 0.2)
        guarded.add(t, value)
        plain.add(t, value)
    g, p = guarded.rate(300.0), plain.rate(300.0)
    assert g is not None and p is not None
    assert 5.0 < g < p  # still an alarm at 12 °C/h, but less than the raw fit


def test_an_escalation_naming_no_rule_is_refused(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(default_rules_dir(), rules, ignore=shutil.ignore_patterns("drills"))
    pack = rules / "explosion.yaml"
    pack.write_text(pack.read_text(encoding="utf-8").replace(
        "explosion.li_offgas_warning]", "explosion.li_offgas_warnin]"), encoding="utf-8")
    with pytest.raises(ConfigErrors) as caught:
        load_rule_packs(rules)
    assert "'explosion.li_offgas_warnin' matches no rule of the loaded packs" in str(
        caught.value)
