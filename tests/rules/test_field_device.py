"""`distinct: device` counts independent detectors: the points of one device count once (two
smoke points of one smart detector are one detector), but an input marked `field_device` (a
conventional smoke zone on a DI module's channel: hardware/profiles/generic_di_module.yaml)
counts as a device of its own.

* the real fire.smoke_coincidence condition over random rooms (hypothesis): bound iff the
  room has at least two distinct sources, active iff at least two of them are in alarm;
* the engine on the power distribution room with the DI module's second smoke zone wired:
  both zones in alarm confirm the fire (critical); one zone does not; the same zones with
  `field_device: false` are one device and the coincidence is not bound;
* a smart detector with two smoke points never confirms a fire alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.clock import ManualClock
from gateway.config.loader import load_gateway_config
from gateway.field.sample import Quality, Sample, Value
from gateway.rules.compiler import PointInfo, Unbindable, prepare
from gateway.rules.conditions import PointState
from gateway.rules.config import ParameterOverrides
from gateway.rules.engine import RuleEngine
from tests import shipped

REPO = Path(__file__).resolve().parents[2]
FIRE = "fire.smoke_coincidence"

MEMBERS = st.lists(st.tuples(st.sampled_from(["di-1", "di-2", "smoke-1", "smoke-2"]),
                             st.booleans(), st.booleans()), min_size=1, max_size=8)
"""(device, field_device, in alarm) per smoke point of a room."""


@settings(max_examples=300, deadline=None)
@given(members=MEMBERS)
def test_distinct_devices_count_field_devices_apart(
        members: list[tuple[str, bool, bool]]) -> None:
    rule = next(r for r in shipped.packs()["fire"].rules if r.id == "smoke_coincidence")
    plan = prepare(rule.condition, {"detectors": 2})
    infos = [PointInfo(f"{device}.p{i}", device, "room", "equipment", "profile", "smoke",
                       field_device=field) for i, (device, field, _) in enumerate(members)]
    states = {info.id: PointState(info.id, info.device, 0.0) for info in infos}
    for info, (_, _, alarm) in zip(infos, members, strict=True):
        states[info.id].update(alarm, Quality.GOOD, 0, 0.0)
    sources = {info.id if field else info.device
               for info, (_, field, _) in zip(infos, members, strict=True)}
    alarmed = {info.id if field else info.device
               for info, (_, field, alarm) in zip(infos, members, strict=True) if alarm}
    if len(sources) < 2:
        with pytest.raises(Unbindable):
            plan.build(infos, states)
        return
    node = plan.build(infos, states)
    assert node.eval(0.0) is (len(alarmed) >= 2)
    assert node.value == len(alarmed)


def _engine(tmp_path: Path, edit: Any = None, profiles: dict[str, Any] | None = None
            ) -> tuple[RuleEngine, ManualClock]:
    data = yaml.safe_load((REPO / "firmware_configs" / "power_distribution_room.yaml")
                          .read_text(encoding="utf-8"))
    di = next(d for d in data["devices"] if d["id"] == "di-lv-01")
    di["points"]["di2"] = {}  # the second smoke zone wired
    if edit is not None:
        edit(data)
    if profiles:
        (tmp_path / "profiles").mkdir()
        data["profiles_dir"] = "profiles"
        for name, profile in profiles.items():
            (tmp_path / "profiles" / f"{name}.yaml").write_text(yaml.safe_dump(profile))
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    loaded, packs = load_gateway_config(path), shipped.packs()
    clock = ManualClock()
    return RuleEngine(packs, loaded, clock, ParameterOverrides.for_site(loaded, packs)), clock


def _active(engine: RuleEngine, clock: ManualClock, values: Mapping[str, Value]) -> set[str]:
    engine.on_samples([Sample(p, v, clock.now_ns(), Quality.GOOD)
                       for p, v in values.items()])
    clock.advance(1.0)
    return {f"{e.rule}@{e.subject}" for e in engine.evaluate() if e.active}


def test_two_smoke_zones_of_the_di_module_confirm_a_fire(tmp_path: Path) -> None:
    engine, clock = _engine(tmp_path)
    assert (FIRE, "lv-1f") in engine.bindings()
    quiet = {"di-lv-01.di1": False, "di-lv-01.di2": False, "di-lv-01.online": True}
    assert not _active(engine, clock, quiet)
    one = _active(engine, clock, {"di-lv-01.di1": True})
    assert "fire.smoke_detector@di-lv-01.di1" in one and f"{FIRE}@lv-1f" not in one
    both = _active(engine, clock, {"di-lv-01.di2": True})
    assert f"{FIRE}@lv-1f" in both
    fire = next(e for e in engine.current() if e.rule == FIRE)
    assert fire.severity.value == "critical" and fire.value == 2 and "siren" in fire.actions


def test_zones_overridden_as_no_field_devices_count_once(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        di = next(d for d in data["devices"] if d["id"] == "di-lv-01")
        di["points"].update(di1={"field_device": False}, di2={"field_device": False})
    engine, _ = _engine(tmp_path, edit)
    assert (FIRE, "lv-1f") not in engine.bindings()


def test_a_smart_detector_with_two_smoke_points_never_confirms_alone(tmp_path: Path) -> None:
    profile = yaml.safe_load((REPO / "hardware" / "profiles" / "generic_smoke_detector.yaml")
                             .read_text(encoding="utf-8"))
    profile["id"] = "dual_smoke_detector"
    profile["points"].append({"name": "alarm_second_chamber", "register": "holding",
                              "address": 0, "type": "bool", "bit": 2, "quantity": "smoke"})

    def edit(data: dict[str, Any]) -> None:
        di = next(d for d in data["devices"] if d["id"] == "di-lv-01")
        di["points"].update(di1={"enabled": False}, di2={"enabled": False})
        data["devices"].append({"id": "smoke-dual", "bus": di["bus"], "unit": 40,
                                "profile": "dual_smoke_detector", "room": "lv-1f"})
    engine, clock = _engine(tmp_path, edit, {"dual_smoke_detector": profile})
    assert (FIRE, "lv-1f") not in engine.bindings()  # one detector: never two
    active = _active(engine, clock, {"smoke-dual.alarm": True,
                                     "smoke-dual.alarm_second_chamber": True})
    assert "fire.smoke_detector@smoke-dual.alarm" in active
    assert f"{FIRE}@lv-1f" not in active
