"""`roomwarden check`, run as a technician runs it, on where outputs point (the output chain
audit, F3 and F5):

* an output on a disabled device (`enabled: false`: not polled; alone on its bus, nothing ever
  writes it) is refused, naming the file, the line, the output and the device; the loader
  (`roomwarden run`) refuses it too;
* two outputs with one feedback point (two fans in one duct on one airflow switch, or a
  copy-paste slip) are accepted — both are supervised by it — with a warning naming both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config.loader import ConfigErrors, load_gateway_config

SITE = """\
gateway: {id: gw, site: test}
rooms:
  - {id: batt, type: battery}
buses:
  - {id: rs485, type: modbus_rtu, port: /dev/ttyUSB0, baudrate: 38400}
  - {id: rs485-2, type: modbus_rtu, port: /dev/ttyUSB1, baudrate: 38400}
devices:
  - {id: h2, bus: rs485, unit: 1, profile: generic_h2_detector, room: batt}
  - {id: di1, bus: rs485, unit: 3, profile: generic_di_module, room: batt}
  - {id: do1, bus: rs485-2, unit: 2, profile: generic_relay_module, room: batt,
     enabled: false}
outputs:
  - {id: siren, role: siren, device: do1, point: do1}
"""

SHARED = """\
gateway: {id: gw, site: test}
rooms:
  - {id: batt, type: battery}
buses:
  - {id: rs485, type: modbus_rtu, port: /dev/ttyUSB0, baudrate: 38400}
devices:
  - {id: h2, bus: rs485, unit: 1, profile: generic_h2_detector, room: batt}
  - {id: do1, bus: rs485, unit: 2, profile: generic_relay_module, room: batt}
  - {id: di1, bus: rs485, unit: 3, profile: generic_di_module, room: batt}
outputs:
  - {id: fan-a, role: exhaust_fan, device: do1, point: do3,
     feedback: {device: di1, point: di7, within: 20s}}
  - {id: fan-b, role: exhaust_fan, device: do1, point: do4,
     feedback: {device: di1, point: di7, within: 20s}}
"""


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "check", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.process
def test_check_refuses_an_output_on_a_disabled_device(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(SITE)
    done = _check(path)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert f"FAIL {path}: 1 error(s)" in out, out
    line = SITE.splitlines().index("  - {id: siren, role: siren, device: do1, point: do1}") + 1
    assert (f"{path}:{line}: outputs[siren].device: device 'do1' is disabled (`enabled: false`: "
            "not polled), so output 'siren' cannot be relied on (never written when nothing "
            "else on bus 'rs485-2' is polled); enable the device, or take the output (and its "
            "interlocks) out of the file while the device is out of service") in out, out
    assert "Traceback" not in out
    # `roomwarden run` loads it the same way: refused before anything starts
    with pytest.raises(ConfigErrors) as caught:
        load_gateway_config(path)
    [error] = caught.value.errors
    assert error.path == ("outputs", 0, "device") and error.line == line
    assert "device 'do1' is disabled" in error.reason and "'siren'" in error.reason


@pytest.mark.process
def test_check_accepts_an_enabled_output_device(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(SITE.replace(",\n     enabled: false}", "}"))
    done = _check(path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "disabled" not in done.stdout, done.stdout


@pytest.mark.process
def test_check_warns_about_outputs_sharing_a_feedback_point(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(SHARED)
    done = _check(path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"ok   {path}: "), done.stdout
    line = SHARED.splitlines().index(
        "     feedback: {device: di1, point: di7, within: 20s}}", 13) + 1
    assert (f"  warning: {path}:{line}: outputs[fan-b].feedback: di1.di7 is also the feedback "
            "of outputs[fan-a]: both outputs are supervised by it") in done.stdout, done.stdout
    # each fan with its own switch: no warning
    path.write_text(SHARED.replace("point: do4,\n     feedback: {device: di1, point: di7",
                                   "point: do4,\n     feedback: {device: di1, point: di8"))
    done = _check(path)
    assert done.returncode == 0 and "feedback" not in done.stdout, done.stdout


DISABLED_POINT = SHARED.split("devices:")[0] + """\
devices:
  - {id: h2, bus: rs485, unit: 1, profile: generic_h2_detector, room: batt}
  - {id: do1, bus: rs485, unit: 2, profile: generic_relay_module, room: batt,
     points: {do1: {enabled: false}}}
outputs:
  - {id: siren, role: siren, device: do1, point: do1}
"""


def test_an_output_on_a_disabled_point_is_refused(tmp_path: Path) -> None:
    """The outputs audit: with the siren's coil point disabled in the device's overrides (as the
    shipped site disables unused inputs), the coil was never read back — switched off by hand
    at the module during a fire alarm, it stayed off, unrepaired and unreported."""
    path = tmp_path / "site.yaml"
    path.write_text(DISABLED_POINT)
    with pytest.raises(ConfigErrors) as refused:
        load_gateway_config(path)
    [error] = [str(e) for e in refused.value.errors]
    assert "outputs[0].point" in error and "'do1' of device 'do1' is disabled" in error
