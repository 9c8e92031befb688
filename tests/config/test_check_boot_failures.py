"""`roomwarden check` refuses the values a gateway cannot be built with, naming file, path and
reason — it never tracebacks on them.

An audit found configs that passed the check (or made it traceback in its warnings pass) and
then crashed the gateway's start: a rule override whose `outside` band is empty (low above
high, alone or with the rule's default or another scope's value), a rate window of 0 s, an
alarm flood or chatter window of 0 s, a panel password hash the panel cannot parse. And one
whose outbox path lands on the gateway's own state (`config/state.json`: the config store's
state was renamed aside as a damaged outbox, tests/uplink/test_outbox_path.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import main
from tests.shipped import FIRMWARE_CONFIGS

BASE = FIRMWARE_CONFIGS / "telecom_equipment_room.yaml"
"""The shipped telecom site: its own two overrides are rules.parameters[0] and [1]."""


def overrides(*entries: dict[str, Any]) -> Any:
    def change(data: dict[str, Any]) -> None:
        data["rules"]["parameters"].extend(entries)
    return change


def alarms(**values: str) -> Any:
    def change(data: dict[str, Any]) -> None:
        data.setdefault("alarms", {}).update(values)
    return change


def panel_user(password_hash: str) -> Any:
    def change(data: dict[str, Any]) -> None:
        data.setdefault("panel", {})["users"] = [{"name": "tech",
                                                  "password_hash": password_hash}]
    return change


def outbox_path(path: str) -> Any:
    def change(data: dict[str, Any]) -> None:
        data["uplink"] = {"broker": "127.0.0.1", "outbox": {"path": path}}
    return change


CASES = {
    "low_above_high": (
        overrides({"rule": "environment.temperature_recommended",
                   "set": {"low": 50, "high": 10}}),
        "rules.parameters[2].set.low",
        "environment.temperature_recommended's low 50 is above high 10"),
    "high_v_zero_under_the_default_low_v": (
        overrides({"rule": "power.mains_voltage", "set": {"high_v": 0}}),
        "rules.parameters[2].set.high_v", "power.mains_voltage's low_v 198 is above high_v 0"),
    "site_low_over_a_room_types_high": (
        overrides({"rule": "environment.temperature_recommended", "set": {"low": 25}},
                  {"rule": "environment.temperature_recommended", "room_type": "equipment",
                   "set": {"high": 20}}),
        "rules.parameters[3].set.high", "low 25 is above high 20 for room tx-3f: the normal band"),
    "rate_window_zero": (
        overrides({"rule": "environment.temperature_rate", "set": {"window": "0s"}}),
        "rules.parameters[2].set.window",
        "environment.temperature_rate's window is 0s: a rate window must be longer than 0s"),
    "flood_window_zero": (alarms(flood_window="0s"), "alarms.flood_window",
                          "greater than 0"),
    "chatter_window_zero": (alarms(chatter_window="0s"), "alarms.chatter_window",
                            "greater than 0"),
    "password_not_a_hash": (
        panel_user("hunter2"), "panel.users[0].password_hash",
        "a password hash must look like scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>"),
    "hash_out_of_bounds": (
        panel_user("scrypt$3$8$1$GJooIsA8aT+mnyli1J3Iqw==$RmGdjVhyYPib3UAH05MZzcOlxdAngIgeCTAmx1rDfHc="),
        "panel.users[0].password_hash", "scrypt n must be a power of two"),
    "outbox_on_the_config_stores_state": (
        outbox_path("config/state.json"), "uplink.outbox.path",
        "'config/state.json' is the config store (gateway.flashing.store) in the gateway's "
        "state directory: the outbox must not land on the gateway's own state"),
    "outbox_on_the_alarm_journal": (
        outbox_path("alarms.sqlite"), "uplink.outbox.path",
        "'alarms.sqlite' is the alarm journal (alarms.sqlite) in the gateway's state "
        "directory"),
}


@pytest.mark.parametrize("case", CASES)
def test_the_check_refuses_what_the_gateway_cannot_start_with(
        case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    change, where, reason = CASES[case]
    data = yaml.safe_load(BASE.read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    assert main(["check", str(path)]) == 1  # an exception here: the check's traceback
    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if where in line]
    assert str(path) in line and reason in line, out
    assert "hunter2" not in out  # a password written in by mistake is not shown


def test_the_same_site_without_them_checks_clean(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(BASE.read_text(encoding="utf-8"), encoding="utf-8")
    assert main(["check", str(path)]) == 0
