"""`roomwarden check` warns about what a site's rules cannot see (gateway.rules.coverage):

* every unconfigured binding — a rule bound to a subject but not evaluated for a parameter
  without a value — by rule, subject and parameter (the same set the engine leaves out);
* a coincidence that can never fire: fewer distinct detectors in a room than it counts (one
  detector; two smoke zones of one input module not marked `field_device`);
* battery, UPS, energy-storage and data rooms in which no rule reads a smoke point.

Warnings, not errors: `check` still says ok and exits 0.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.clock import ManualClock
from gateway.config.check_all import check_config
from gateway.config.loader import load_gateway_config
from gateway.rules.config import ParameterOverrides, default_rules_dir, load_rule_packs
from gateway.rules.engine import RuleEngine

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "firmware_configs"
SITES = sorted(CONFIGS.glob("*.yaml"))


def _data(name: str) -> dict[str, Any]:
    data = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _write(tmp_path: Path, data: dict[str, Any], name: str = "site.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _device(data: dict[str, Any], device_id: str) -> dict[str, Any]:
    found = next(d for d in data["devices"] if d["id"] == device_id)
    assert isinstance(found, dict)
    return found


def _warnings(path: Path) -> list[str]:
    report = check_config(path)
    assert report.errors == [], report.errors
    return report.warnings


@pytest.mark.parametrize("site", SITES, ids=lambda p: p.stem)
def test_every_unconfigured_binding_is_warned_by_rule_subject_and_parameter(site: Path) -> None:
    loaded = load_gateway_config(site)
    packs = load_rule_packs(default_rules_dir())
    engine = RuleEngine(packs, loaded, ManualClock(), ParameterOverrides.for_site(loaded, packs))
    warnings = _warnings(site)
    said = [w for w in warnings if " is not evaluated" in w]
    assert len(said) == len(engine.unconfigured())
    for binding in engine.unconfigured():
        assert any(f"rules: {binding.rule} on {binding.subject} is not evaluated" in w
                   and all(name in w for name in binding.missing) for w in said), binding


def _unrated(tmp_path: Path) -> Path:
    """The shipped distribution room without its feeders AP1-AP3's breaker ratings."""
    data = _data("power_distribution_room")
    data["rules"]["parameters"] = [p for p in data["rules"]["parameters"]
                                   if p.get("device") not in ("meter-ap1", "meter-ap2",
                                                               "meter-ap3")]
    return _write(tmp_path, data, "unrated.yaml")


def test_the_power_room_meters_without_a_rating(tmp_path: Path) -> None:
    assert not [w for w in _warnings(CONFIGS / "power_distribution_room.yaml")
                if "not evaluated" in w], "the shipped site rates every feeder"
    warnings = _warnings(_unrated(tmp_path))
    assert ("rules: power.branch_overload on meter-ap1 is not evaluated: parameter rating_a "
            "has no value; set it: rules: parameters: - {rule: power.branch_overload, "
            "device: meter-ap1, set: {rating_a: …}}") in warnings
    data = yaml.safe_load(_unrated(tmp_path).read_text(encoding="utf-8"))
    data["rules"]["parameters"] += [
        {"rule": rule, "device": meter, "set": {"rating_a": 100}}
        for meter in ("meter-ap1", "meter-ap2", "meter-ap3")
        for rule in ("power.branch_overload", "power.branch_load_high")]
    assert not [w for w in _warnings(_write(tmp_path, data)) if "not evaluated" in w]


def test_a_parameter_the_pack_leaves_unset_for_a_chemistry_says_so() -> None:
    warnings = _warnings(CONFIGS / "datacenter_lithium_room.yaml")
    assert ("rules: explosion.block_above_ambient on ess-a1 is not evaluated: its pack leaves "
            "limit_c unset for chemistry lfp (set it under rules: parameters to evaluate it)"
            ) in warnings


def test_the_cli_prints_the_warnings_and_still_says_ok(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "gateway", "check", str(_unrated(tmp_path))],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok ")
    assert "  warning: rules: power.branch_load_high on meter-ap2 is not evaluated" \
        in done.stdout
    assert "  warning: rules: fire.smoke_coincidence can never fire in room lv-1f" \
        in done.stdout


# --- rooms without smoke detection ---------------------------------------------------------

def test_battery_ups_storage_and_data_rooms_without_smoke_detection_are_warned() -> None:
    def rooms(name: str) -> set[str]:
        return {w.split()[1] for w in _warnings(CONFIGS / f"{name}.yaml")
                if "no smoke detection is bound" in w}
    assert rooms("datacenter_lithium_room") == {"hall-a2", "ess-a1", "ups-a"}
    assert rooms("telecom_equipment_room") == {"batt-3f"}  # tx-3f has its two detectors
    assert rooms("power_distribution_room") == set()  # a distribution room: not asked


def test_a_smoke_detector_in_the_room_ends_the_warning(tmp_path: Path) -> None:
    data = _data("telecom_equipment_room")
    smoke = next(d for d in data["devices"] if d["profile"] == "generic_smoke_detector")
    data["devices"].append({**smoke, "id": "smoke-batt-01", "room": "batt-3f",
                            "unit": 99})
    warnings = _warnings(_write(tmp_path, data))
    assert not [w for w in warnings if "no smoke detection" in w]
    data["rules"] = {**data.get("rules", {}), "disabled": ["fire.smoke_detector"]}
    warnings = _warnings(_write(tmp_path, data))  # one detector: no coincidence either
    assert any(w.startswith("room batt-3f (battery): no smoke detection is bound")
               for w in warnings)


# --- coincidence that can never fire ---------------------------------------------------------

def test_one_detector_in_a_room_cannot_confirm_a_fire() -> None:
    assert ("rules: fire.smoke_coincidence can never fire in room lv-1f: it needs 2 distinct "
            "devices and there is 1 (di-lv-01.di1)"
            ) in _warnings(CONFIGS / "power_distribution_room.yaml")


def test_two_zones_of_the_di_module_are_two_detectors(tmp_path: Path) -> None:
    data = _data("power_distribution_room")
    _device(data, "di-lv-01")["points"]["di2"] = {}  # the second smoke zone wired
    assert not [w for w in _warnings(_write(tmp_path, data)) if "can never fire" in w]


def test_zones_not_marked_as_field_devices_count_once_and_check_says_why(
        tmp_path: Path) -> None:
    data = _data("power_distribution_room")
    _device(data, "di-lv-01")["points"].update(
        di1={"field_device": False}, di2={"field_device": False})
    warnings = [w for w in _warnings(_write(tmp_path, data)) if "can never fire" in w]
    assert warnings == [
        "rules: fire.smoke_coincidence can never fire in room lv-1f: it needs 2 distinct "
        "devices and there is 1 (di-lv-01.di1, di-lv-01.di2); points of one device count "
        "once: mark independent detectors wired to one input module `field_device: true` "
        "(in its profile, or the device's `points:`)"]
