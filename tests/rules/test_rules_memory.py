"""The compiled rules' memory per binding (tracemalloc, not timing), so that a change which makes
every binding heavier is caught: an engine built on a shipped site — condition trees, point
states, intake and schedule — holds at most `BYTES_PER_BINDING` bytes a binding.

Measured on 2026-12-06 (Python 3.11, this venv), engine built again on the same config and packs
(the site's points and the plans are shared, as at a restart of the rules):
datacenter_lithium_room 859 B a binding before the rules-memory change, 776 B after (a compare
leaf of one point's own value keeps no `ValueSignal`; the equals leaves of a plan share one
accepted-value set per enum; one float for the unbounded ends of every point's valid range and
quiet band). The bound sits between the two.

And the representations that change brings: shared accepted-value sets are the ones each
leaf's own enum gives; a one-point compare leaf keeps no signal yet counts over-range readings.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

from gateway.clock import ManualClock
from gateway.config.loader import load_gateway_config
from gateway.config.section import validator
from gateway.field.sample import Quality
from gateway.rules import model as m
from gateway.rules.compiler import PointInfo, prepare
from gateway.rules.conditions import Above, Debounce, PointState, ValueSignal
from gateway.rules.config import default_rules_dir, load_rule_packs
from gateway.rules.engine import RuleEngine
from gateway.rules.nodes import CompareLeaf, EqualsLeaf, accepted_values
from gateway.rules.rate import rising

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "datacenter_lithium_room.yaml"

BYTES_PER_BINDING = 820
"""859 before, 776 after (see the module docstring)."""


def test_an_engine_of_a_shipped_site_holds_at_most_its_bytes_per_binding() -> None:
    loaded, packs = load_gateway_config(SITE), load_rule_packs(default_rules_dir())
    RuleEngine(packs, loaded, ManualClock())  # the site's points and the plans, made once
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        engine = RuleEngine(packs, loaded, ManualClock())
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    bindings = engine.bindings()
    assert len(bindings) > 400
    assert used / len(bindings) <= BYTES_PER_BINDING, f"{used / len(bindings):.0f} B a binding"
    assert engine.counts() == (len({rule for rule, _ in bindings}), len(bindings))


def _info(point_id: str, enum: dict[int, str] | None) -> PointInfo:
    return PointInfo(point_id, "d", "r", "ups", "p", "ups_status", enum)


def test_equals_leaves_share_the_accepted_values_of_an_enum() -> None:
    plan = prepare(validator(m.Compare).validate_python({"in": ["on_battery"]}), {})
    enums = [{1: "online", 2: "on_battery"}, {1: "online", 2: "on_battery"},
             {2: "online", 3: "on_battery"}, None]
    infos = [_info(f"d.s{i}", enum) for i, enum in enumerate(enums)]
    states = {i.id: PointState(i.id, "d", 0.0) for i in infos}
    leaves = [plan.build([info], states) for info in infos]
    assert all(isinstance(leaf, EqualsLeaf) for leaf in leaves)
    accepted = [leaf.accepted[0] for leaf in leaves]  # type: ignore[attr-defined]
    for found, enum in zip(accepted, enums, strict=True):
        assert found == accepted_values(("on_battery",), enum)
    assert accepted[0] is accepted[1]  # equal enums (other dicts): one set
    assert accepted[0] != accepted[2] and accepted[2] != accepted[3]
    states["d.s2"].update(3, Quality.GOOD, 0, 1.0)  # code 3 is on_battery there
    states["d.s3"].update(2, Quality.GOOD, 0, 1.0)  # no enum: 2 is no label
    assert leaves[2].eval(1.0) is True and leaves[3].eval(1.0) is False


def test_a_one_point_compare_leaf_keeps_no_signal_and_counts_over_range() -> None:
    point = PointState("d.t", "d", 0.0, valid_min=-40.0, valid_max=125.0)
    leaf = CompareLeaf(ValueSignal([point], rising), Above(60.0, 2.0), Debounce())
    assert leaf.point is point and leaf._signal is None
    assert not any(isinstance(getattr(leaf, slot), ValueSignal)
                   for slot in CompareLeaf.__slots__)
    point.update(130.0, Quality.INVALID, 0, 1.0)  # beyond the valid maximum, above the limit
    assert leaf.eval(1.0) is True and leaf.value == 130.0
    point.update(20.0, Quality.GOOD, 0, 2.0)
    assert leaf.eval(2.0) is False
    general = CompareLeaf(ValueSignal([point], rising), Above(60.0, 2.0), Debounce())
    general._signal, general.point = general.signal, None  # the general path, as a group's
    point.update(130.0, Quality.INVALID, 0, 3.0)
    assert general.eval(3.0) is True and general.value == 130.0
