"""A `roomwarden` command whose stdout is closed under it (`roomwarden plan … | head`) ends
quietly: exit 141 (a shell's status for a command that wrote into a closed pipe), nothing on
stderr. It ended with a BrokenPipeError traceback (and Python's `Exception ignored … Broken
pipe` at exit)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "firmware_configs" / "telecom_equipment_room.yaml"
OTHER_SITE = ROOT / "firmware_configs" / "power_distribution_room.yaml"

pytestmark = pytest.mark.process


def _env() -> dict[str, str]:
    # each print its own write, as in a terminal session with PYTHONUNBUFFERED set
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def test_plan_piped_into_head_ends_quietly() -> None:
    """The audit's own command line: `roomwarden plan SITE | head -1`."""
    writer = subprocess.Popen([sys.executable, "-m", "gateway", "plan", str(SITE)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    assert writer.stdout is not None and writer.stderr is not None
    head = subprocess.run(["head", "-1"], stdin=writer.stdout, capture_output=True, text=True,
                          timeout=60, check=False)
    writer.stdout.close()  # head has it now; only head reads the pipe
    err = writer.stderr.read().decode()
    writer.stderr.close()
    code = writer.wait(60)
    assert head.stdout.startswith("bus "), head.stdout
    assert "Traceback" not in err and "Broken pipe" not in err, err
    assert err == ""
    assert code in (0, 141)  # 0 only if everything fitted in the pipe before head left


@pytest.mark.parametrize("argv", [
    ["plan", str(SITE)],
    ["schema"],
    ["check", str(SITE)],
    ["config", "diff", str(SITE), str(OTHER_SITE)],
    ["ingest", "--config", "CENTRAL", "--check"],
    ["--help"],
], ids=lambda argv: argv[0])
def test_a_closed_stdout_ends_every_command_quietly(argv: list[str], tmp_path: Path) -> None:
    """stdout is a pipe whose reader is gone before the command writes a byte."""
    if "CENTRAL" in argv:  # a central config whose --check passes (it names no files)
        central = tmp_path / "central.yaml"
        central.write_text("mqtt: {host: 127.0.0.1, client_id: ingest-1}\n"
                           "influx: {url: 'http://127.0.0.1:9', token: t, org: o, bucket: b}\n")
        argv = [str(central) if a == "CENTRAL" else a for a in argv]
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "gateway", *argv], cwd=ROOT,
                                stdout=write_end, stderr=subprocess.PIPE, text=True,
                                timeout=120, env=_env(), check=False)
    finally:
        os.close(write_end)
    assert "Traceback" not in result.stderr and "Broken pipe" not in result.stderr, (
        result.stderr)
    # argparse's --help swallows the error itself (and exits 0)
    expected = (0, 141) if argv == ["--help"] else (141,)
    assert result.returncode in expected, (result.returncode, result.stderr)


def test_a_socket_broken_pipe_is_still_an_error() -> None:
    """Only stdout's closing is quiet: a BrokenPipeError from elsewhere (a socket) while
    stdout is fine is raised as before."""
    code = ("import sys\nimport gateway.cli as cli\n"
            "def boom(argv):\n    raise BrokenPipeError(32, 'Broken pipe (a socket)')\n"
            "cli._main = boom\nsys.exit(cli.main([]))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 1 and "BrokenPipeError" in result.stderr, result.stderr
