"""`roomwarden config diff`: what changes between two configs, readable, grouped by section."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config.loader import load_gateway_config
from gateway.config.section import validator
from gateway.config.site import GatewayConfig
from gateway.flashing.cli import add_parsers
from gateway.flashing.diff import Change, diff_configs, render

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "firmware_configs" / "telecom_equipment_room.yaml"


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SITE.read_text())
    return data


def model(data: dict[str, Any]) -> GatewayConfig:
    return validator(GatewayConfig).validate_python(data)


def lines(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [str(c) for c in diff_configs(model(old), model(new))]


def test_equal_configs_have_no_changes(base: dict[str, Any]) -> None:
    loaded = load_gateway_config(SITE).config
    assert diff_configs(loaded, loaded) == []
    assert diff_configs(loaded, model(copy.deepcopy(base))) == []
    assert render([]) == ""


def test_devices_points_and_buses(base: dict[str, Any]) -> None:
    new = copy.deepcopy(base)
    th = new["devices"][1]
    th["points"]["temperature"]["offset"] = -0.2
    th["poll_interval"] = "10s"
    removed = new["devices"].pop(0)
    new["devices"].append({"id": "h2-3", "bus": "rs485-env", "unit": 55,
                           "profile": "generic_h2_detector", "room": "batt-3f"})
    new["buses"][0]["timeout"] = "400ms"
    old_offset = base["devices"][1]["points"]["temperature"]["offset"]
    got = lines(base, new)
    assert f"~ devices.{th['id']}.points.temperature.offset: {old_offset:g} → -0.2" in got
    assert f"~ devices.{th['id']}.poll_interval: 5s → 10s" in got
    assert "+ devices.h2-3 (generic_h2_detector on rs485-env unit 55, room batt-3f)" in got
    assert (f"- devices.{removed['id']} ({removed['profile']} on {removed['bus']} unit "
            f"{removed['unit']}, room {removed['room']})") in got
    assert "~ buses.rs485-env.timeout: 300ms → 400ms" in got
    assert len(got) == 5


def test_serial_devices_are_summarised_without_a_unit(base: dict[str, Any]) -> None:
    new = copy.deepcopy(base)
    ups = next(d for d in new["devices"] if d["bus"] == "ups-serial")
    new["devices"].remove(ups)
    assert lines(base, new) == [f"- devices.{ups['id']} ({ups['profile']} on ups-serial, "
                                f"room {ups['room']})"]


def test_rules_outputs_interlocks_and_settings(base: dict[str, Any]) -> None:
    new = copy.deepcopy(base)
    new["rules"] = {"disabled": ["environment.high_humidity"], "parameters": [
        {"rule": "explosion.h2_alarm", "room": "batt-3f", "set": {"threshold": 20}}]}
    old = copy.deepcopy(base)
    old["rules"] = {"parameters": [
        {"rule": "explosion.h2_alarm", "room": "batt-3f", "set": {"threshold": 25}},
        {"rule": "explosion.h2_alarm", "device": "h2-batt-01", "set": {"threshold": 10}}]}
    new["panel"] = {"port": 8081}
    new["uplink"] = {"broker": "mqtt.example.net", "port": 8883}
    new["outputs"][0]["min_on"] = "5m"
    got = lines(old, new)
    out_id = base["outputs"][0]["id"]
    assert "+ rules.disabled.environment.high_humidity" in got
    assert "~ rules.parameters.explosion.h2_alarm[room=batt-3f].set.threshold: 25 → 20" in got
    assert "- rules.parameters.explosion.h2_alarm[device=h2-batt-01] ({threshold: 10})" in got
    assert "~ panel.port: 8080 → 8081" in got
    assert any(line.startswith("+ uplink (broker: mqtt.example.net, port: 8883") for line in got)
    assert f"~ outputs.{out_id}.min_on: 0s → 5m" in got
    text = render(diff_configs(model(old), model(new)))
    sections = [ln.split(":")[0] for ln in text.splitlines() if not ln.startswith(" ")]
    assert sections == ["outputs", "rules", "panel", "uplink"]  # in SECTION_ORDER
    assert "rules: 3 changes" in text


def test_interlocks_are_keyed_by_output_and_blocker(base: dict[str, Any]) -> None:
    old = copy.deepcopy(base)
    old["interlocks"] = [{"output": "strobe-3f", "while_on": "fan-batt-3f", "reason": "a"},
                         {"output": "siren-3f", "while_on": "fan-batt-3f"}]
    new = copy.deepcopy(old)
    new["interlocks"] = [new["interlocks"][1], {**new["interlocks"][0], "reason": "b"}]
    assert lines(old, new) == ["~ interlocks.strobe-3f/while_on=fan-batt-3f.reason: a → b"]
    new["interlocks"].pop()
    assert lines(old, new) == ["- interlocks.strobe-3f/while_on=fan-batt-3f "
                               "(output: strobe-3f, while_on: fan-batt-3f, reason: a)"]


def test_change_rendering() -> None:
    assert str(Change("~", ("a", "b"), 1.5, None)) == "~ a.b: 1.5 → null"
    assert str(Change("+", ("a",), None, {"x": 1}, "")) == "+ a"
    assert str(Change("-", ("a",), [1, "two words"], None)) == "- a ([1, two words])"


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="roomwarden")
    add_parsers(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    result: int = args.func(args)
    return result


def test_config_diff_command(tmp_path: Path, base: dict[str, Any],
                             capsys: pytest.CaptureFixture[str]) -> None:
    profiles = str(ROOT / "hardware" / "profiles")
    old_data = {**copy.deepcopy(base), "profiles_dir": profiles}
    new_data = copy.deepcopy(old_data)
    new_data["devices"][1]["points"]["temperature"]["offset"] = 0.5
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(yaml.safe_dump(old_data, allow_unicode=True))
    new.write_text(yaml.safe_dump(new_data, allow_unicode=True))
    assert run_cli("config", "diff", str(old), str(old)) == 0
    assert "no differences" in capsys.readouterr().out
    assert run_cli("config", "diff", str(old), str(new)) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[:3] == [f"--- {old}", f"+++ {new}", "devices: 1 change"]
    assert "points.temperature.offset:" in out and "→ 0.5" in out
    broken = tmp_path / "broken.yaml"
    broken.write_text("gateway: {id: x}\nrooms: []\n")
    assert run_cli("config", "diff", str(old), str(broken)) == 2
    err = capsys.readouterr().err
    assert f"FAIL {broken}" in err and "gateway.site: required key is missing" in err
