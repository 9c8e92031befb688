"""The demo's terminal is calm (issue 14): the log goes to a file, the terminal gets one line
per alarm event and output switch and a status line only when something changed, with where
the panel, the simulator and the log are under it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"


@pytest.mark.timeout(240)
def test_the_demo_prints_events_not_a_flood(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", str(SITE), "--no-uplink", "--panel-port", "0",
         "--duration", "45s"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=220, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    # about 1,790 lines in 4 minutes before; now the guide and a few dozen lines
    assert len(lines) < 120, len(lines)
    assert out.stderr.count("level=INFO") == 0 and "level=INFO" not in out.stdout
    log = (tmp_path / "roomwarden-demo.log").read_text()
    assert "event=gateway_start" in log and "event=gateway_stopped" in log
    # one line per alarm event, as it happens
    fire = [x for x in lines if x.startswith("*** ") and "ALARM CRITICAL "
            "fire.smoke_coincidence @tx-3f" in x]
    assert len(fire) == 1, lines
    assert sum("ALARM MAJOR fire.smoke_detector" in x for x in lines) == 2
    assert any(x.startswith("*** ") and "siren siren-3f ON" in x for x in lines)
    # the status comes with where things are, so the guide's essentials stay on screen
    pinned = [i for i, x in enumerate(lines) if "panel http://127.0.0.1:" in x
              and "simctl port" in x]
    assert pinned and pinned[-1] > lines.index(fire[0])
    assert f"log {tmp_path / 'roomwarden-demo.log'}" in lines[pinned[-1]]
    assert lines[-1] == "demo stopped."
