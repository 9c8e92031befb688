"""Durations with units on every command-line option, as in the config files (issue 14)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.cli import build_parser
from gateway.config.duration import parse_duration

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"


@pytest.mark.parametrize(("argv", "dest", "seconds"), [
    (["run", "x.yaml", "--duration", "3s"], "duration", 3.0),
    (["run", "x.yaml", "--duration", "2m"], "duration", 120.0),
    (["run", "x.yaml", "--print", "500ms"], "print_every", 0.5),
    (["run", "x.yaml", "--duration", "7"], "duration", 7.0),  # a bare number is seconds
    (["demo", "--duration", "2m"], "duration", 120.0),
    (["demo", "--print", "10s"], "print_every", 10.0),
    (["simulate", "x.yaml", "--write-config", "y.yaml", "--duration", "1h"], "duration",
     3600.0),
])
def test_options_take_units(argv: list[str], dest: str, seconds: float) -> None:
    assert getattr(build_parser().parse_args(argv), dest) == seconds


@pytest.mark.parametrize(("argv", "dest"), [
    (["flash", "x.yaml", "--gateway", "g", "--broker", "mqtt://127.0.0.1:1", "--timeout",
      "10s"], "timeout"),
    (["ack", "--all", "--gateway", "g", "--site", "s", "--broker", "mqtt://127.0.0.1:1",
      "--valid-for", "90s", "--timeout", "500ms"], "valid_for"),
    (["shelve", "--alarm", "r@s", "--for", "30m", "--reason", "test", "--gateway", "g",
      "--site", "s", "--broker", "mqtt://127.0.0.1:1"], "duration"),
])
def test_string_options_are_durations_of_the_same_parser(argv: list[str], dest: str) -> None:
    value = getattr(build_parser().parse_args(argv), dest)
    assert parse_duration(value) > 0


def test_a_wrong_duration_is_refused_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["run", "x.yaml", "--duration", "3 parsecs"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--duration" in err and "500ms, 5s, 2m, 1h" in err


def test_run_duration_3s_stops_a_real_gateway(tmp_path: Path) -> None:
    """`roomwarden run --duration 3s` (was refused: invalid float value) runs and stops."""
    began = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "run", str(SITE), "--duration", "3s",
         "--state-dir", str(tmp_path / "state"), "--panel-port", "0"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "event=gateway_stopped" in out.stderr
    assert time.monotonic() - began >= 3.0
