"""`roomwarden check` reports every mistake of a file across all layers in one run, with the
nearest names, devices named by id, and a warning about a config that locks out flashing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.config.check_all import check_config

GOOD = """\
version: 1
gateway: {id: gw-test-01, site: lab}
rooms:
  - {id: tx-3f, type: equipment, name: "Transmission room"}
buses:
  - {id: rs485-env, type: modbus_rtu, port: /dev/ttyUSB0, baudrate: 9600}
devices:
  - {id: th-1, bus: rs485-env, unit: 1, profile: generic_th_sensor, room: tx-3f}
  - {id: do-1, bus: rs485-env, unit: 31, profile: generic_relay_module, room: tx-3f}
outputs:
  - {id: siren-3f, role: siren, device: do-1, point: do1}
rules:
  parameters:
    - {rule: fire.heat_fixed, room: tx-3f, set: {limit: 60}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def test_a_good_config_passes(tmp_path: Path) -> None:
    report = check_config(write(tmp_path, GOOD))
    assert report.errors == []
    assert report.loaded is not None


def test_three_mistakes_in_three_layers_in_one_run(tmp_path: Path) -> None:
    text = (GOOD
            # schema: a misspelled key of a device
            .replace("unit: 1, profile", "unit: 1, pol_interval: 1s, profile")
            # references: an output point its device's profile does not have
            .replace("point: do1", "point: do9")
            # rules: a room no rule override can name
            .replace("room: tx-3f, set", "room: tx-4f, set"))
    report = check_config(write(tmp_path, text))
    text_errors = [str(e) for e in report.errors]
    assert len(report.errors) == 3, text_errors
    schema, output, rules = sorted(text_errors, key=lambda t: ("devices" not in t,
                                                               "outputs" not in t))
    assert "devices[th-1].pol_interval" in schema and "did you mean 'poll_interval'" in schema
    assert "outputs[siren-3f]" in output and "do9" in output
    assert "rules.parameters" in rules and "tx-4f" in rules
    assert all(":" in t.split(" ")[0] for t in text_errors)  # file:line first


def test_nearest_names_and_ids_for_references(tmp_path: Path) -> None:
    text = GOOD.replace("bus: rs485-env, unit: 31", "bus: rs485-evn, unit: 31")
    [error] = check_config(write(tmp_path, text)).errors
    assert str(error).endswith(
        "devices[do-1].bus: bus 'rs485-evn' is not defined in `buses` (defined: rs485-env); "
        "did you mean 'rs485-env'?")
    assert error.line == 9


def test_a_broken_item_does_not_hide_the_others(tmp_path: Path) -> None:
    """A device with a wrong value is set aside; the outputs using other devices are still
    checked, and nothing is reported twice about the device set aside."""
    text = (GOOD.replace("unit: 31", "unit: 999")
            .replace("point: do1", "point: do1}\n  - {id: strobe, role: strobe, device: th-1, "
                                   "point: nope"))
    errors = [str(e) for e in check_config(write(tmp_path, text)).errors]
    assert any("devices[do-1].unit" in e for e in errors), errors
    assert any("outputs[strobe]" in e and "nope" in e for e in errors), errors
    assert not any("outputs[siren-3f]" in e for e in errors), errors


def test_lockout_warning_in_the_cli(tmp_path: Path) -> None:
    text = GOOD + "uplink: {broker: 'mqtt://127.0.0.1:18830'}\n"
    path = write(tmp_path, text)
    report = check_config(path)
    assert report.errors == [], report.errors
    assert report.warnings and "lockout" in report.warnings[0]
    out = subprocess.run([sys.executable, "-m", "gateway", "check", str(path)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "warning: flashing: the config trusts no signing key" in out.stdout


def test_cli_prints_all_three(tmp_path: Path) -> None:
    text = (GOOD.replace("unit: 1, profile", "unit: 1, pol_interval: 1s, profile")
            .replace("point: do1", "point: do9").replace("room: tx-3f, set", "room: tx-4f, set"))
    out = subprocess.run([sys.executable, "-m", "gateway", "check",
                          str(write(tmp_path, text))],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 1
    assert "3 error(s)" in out.stdout, out.stdout
