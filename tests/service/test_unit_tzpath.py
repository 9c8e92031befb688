"""The unit gives Python its time-zone search path (`PYTHONTZPATH`, issue 15): zoneinfo, which
the config models import, then finds time zones without loading the interpreter's build
settings (`_sysconfigdata_*`, 0.14 MiB), and the panel's site time still resolves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.service.unitfile import unit_environment

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys
import gateway.cli, gateway.supervisor, gateway.panel.server, gateway.daemon
from gateway.panel.events import site_zone
zone = site_zone("Asia/Shanghai")
build = sorted(m for m in sys.modules if m.startswith("_sysconfigdata"))
print(json.dumps({"zone": str(zone), "utc": zone.key == "UTC", "build_settings": build}))
"""


def probe(env: dict[str, str]) -> dict[str, object]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**env, "PYTHONPATH": path})
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(found, dict)
    return found


def test_the_unit_s_tz_path_keeps_the_build_settings_out_and_finds_zones() -> None:
    tzpath = unit_environment()["PYTHONTZPATH"]
    base = {k: v for k, v in os.environ.items() if k != "PYTHONTZPATH"}
    assert probe({**base, "PYTHONTZPATH": tzpath}) == {
        "zone": "Asia/Shanghai", "utc": False, "build_settings": []}
    without = probe(base)  # what the unit saves: Python's default path, from its build settings
    assert without["zone"] == "Asia/Shanghai" and without["build_settings"]


def test_the_unit_s_tz_path_is_python_s_own_default() -> None:
    import sysconfig

    assert unit_environment()["PYTHONTZPATH"] == sysconfig.get_config_var("TZPATH")
