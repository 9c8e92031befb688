"""`roomwarden check`, run as a technician runs it, on where outputs point (the output chain
audit, F3):

* two outputs with one feedback point (two fans in one duct on one airflow switch, or a
  copy-paste slip) are accepted — both are supervised by it — with a warning naming both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
