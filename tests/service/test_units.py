"""The systemd units: `systemd-analyze verify` is clean, the gateway unit is rated "OK" or
better by `systemd-analyze security --offline=yes`, and the gateway really runs under the
hardest of its restrictions that can be applied without systemd (MemoryDenyWriteExecute)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.service.unitfile import REPO, UNITS, directives, unit_environment

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")

# systemd's analyze-security.c: the first row whose threshold (tenths) the exposure reaches
RATINGS = [(10.0, "DANGEROUS"), (9.0, "UNSAFE"), (7.5, "EXPOSED"), (5.0, "MEDIUM"),
           (1.0, "OK"), (0.1, "SAFE"), (0.0, "PERFECT")]
OK_OR_BETTER = {"OK", "SAFE", "PERFECT"}


def analyze_root(tmp: Path) -> Path:
    """A root with the units, the executables they name, and systemd's own units (verify
    follows the dependencies), so the installed files are checked unmodified."""
    root = tmp / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in ("roomwarden.service", "roomwarden-ingest.service"):
        shutil.copy(UNITS / unit, root / "etc/systemd/system" / unit)
    stub = root / "opt/roomwarden/venv/bin/roomwarden"
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    (root / "bin").mkdir()
    shutil.copy("/bin/kill", root / "bin/kill")
    for system in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if system.is_dir():
            shutil.copytree(system, root / "usr/lib/systemd/system", symlinks=True)
            break
    return root


def verify(root: Path, *units: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, "verify", "--man=no", f"--root={root}", *units],
                          capture_output=True, text=True, timeout=120, check=False)


@needs_analyze
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    root = analyze_root(tmp_path)
    result = verify(root, "roomwarden.service", "roomwarden-ingest.service")
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and output == "", output
    # and it does notice a broken unit (warnings exit 0, so the output is what counts)
    unit = root / "etc/systemd/system/roomwarden.service"
    unit.write_text(unit.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    broken = verify(root, "roomwarden.service")
    assert "Failed to parse service restart specifier" in broken.stdout + broken.stderr
    (root / "opt/roomwarden/venv/bin/roomwarden").unlink()
    missing = verify(root, "roomwarden-ingest.service")
    assert missing.returncode != 0 and "is not executable" in missing.stderr


def security(unit: str) -> tuple[float, str, str]:
    assert ANALYZE is not None
    result = subprocess.run([ANALYZE, "security", "--offline=yes", "--no-pager",
                             str(UNITS / unit)], capture_output=True, text=True, timeout=120,
                            check=False)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1)), match.group(2), result.stdout


@needs_analyze
@pytest.mark.parametrize("unit", ["roomwarden.service", "roomwarden-ingest.service"])
def test_the_units_are_rated_ok_or_better(unit: str) -> None:
    exposure, rating, report = security(unit)
    expected = next(name for threshold, name in RATINGS if exposure >= threshold)
    assert rating == expected, report  # the thresholds we read the rating by
    assert rating in OK_OR_BETTER and exposure < 5.0, report
    # what is left open is what the gateway needs: the network, its serial ports
    open_items = {line.split()[1] for line in report.splitlines() if line.startswith("✗")}
    allowed = {"RootDirectory=/RootImage=", "SupplementaryGroups=", "PrivateDevices=",
               "PrivateUsers=", "ProcSubset=",
               "RestrictAddressFamilies=~AF_UNIX", "RestrictAddressFamilies=~AF_(INET|INET6)",
               "PrivateNetwork=", "DeviceAllow=", "IPAddressDeny=", "UMask="}
    assert open_items <= allowed, open_items - allowed
    if unit == "roomwarden.service" and systemd_version() == 252:  # the README's systemd
        readme = (REPO / "README.md").read_text()
        figure = re.search(r"gateway unit \*\*(\d+\.\d) (\w+)\*\*", readme)
        assert figure, "the README states the gateway unit's security figure"
        assert (float(figure.group(1)), figure.group(2)) == (exposure, rating), report


def systemd_version() -> int | None:
    assert ANALYZE is not None
    out = subprocess.run([ANALYZE, "--version"], capture_output=True, text=True, timeout=30,
                         check=False).stdout
    match = re.match(r"systemd (\d+)", out)
    return int(match.group(1)) if match else None


def test_the_gateway_unit_is_what_the_issue_asks() -> None:
    found = directives("roomwarden.service")
    one = {key: values[-1] for key, values in found.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert one["ExecStart"] == ("/opt/roomwarden/venv/bin/roomwarden run "
                                "/etc/roomwarden/gateway.yaml")
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["WatchdogSec"] == "30s" and one["Restart"] == "on-failure"
    assert (one["User"], one["Group"], one["SupplementaryGroups"]) == (
        "roomwarden", "roomwarden", "dialout")
    assert (one["StateDirectory"], one["RuntimeDirectory"], one["ConfigurationDirectory"]) \
        == ("roomwarden",) * 3
    assert one["CapabilityBoundingSet"] == "" and one["AmbientCapabilities"] == ""
    assert one["DevicePolicy"] == "closed" and one["PrivateDevices"] == "no"
    assert {"char-ttyUSB rw", "char-ttyAMA rw", "char-ttyS rw"} <= set(found["DeviceAllow"])
    assert one["MemoryDenyWriteExecute"] == "yes" and one["UMask"] == "0027"
    assert found["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    # stripped byte-code without column tables, cached where the service may write
    # (tests/service/test_unit_run.py); Python's own time-zone path (test_unit_tzpath.py)
    assert unit_environment() == {
        "PYTHONUNBUFFERED": "1", "PYTHONOPTIMIZE": "2", "PYTHONNODEBUGRANGES": "1",
        "PYTHONPYCACHEPREFIX": "/var/cache/roomwarden/pycache", "MALLOC_ARENA_MAX": "1",
        "MALLOC_MMAP_THRESHOLD_": "40960", "MALLOC_TRIM_THRESHOLD_": "2097152",  # gateway.heap
        "PYTHONTZPATH": ("/usr/share/zoneinfo:/usr/lib/zoneinfo:/usr/share/lib/zoneinfo:"
                         "/etc/zoneinfo")}
    assert one["CacheDirectory"] == "roomwarden" and one["CacheDirectoryMode"] == "0750"
    ingest = {key: values[-1] for key, values in directives("roomwarden-ingest.service").items()}
    assert ingest["ExecStart"] == ("/opt/roomwarden/venv/bin/roomwarden ingest "
                                   "--config /etc/roomwarden/central.yaml")
    assert ingest["Type"] == "notify" and ingest["PrivateDevices"] == "yes"


PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1


def mdwe_supported() -> bool:
    """Linux ≥ 6.3 applies MemoryDenyWriteExecute to a process itself (prctl PR_SET_MDWE):
    the same rule systemd enforces with seccomp (no W+X mapping, no adding PROT_EXEC)."""
    if not sys.platform.startswith("linux"):
        return False
    probe = subprocess.run([sys.executable, "-c", MDWE_PRELUDE + "print('ok')"],
                           capture_output=True, text=True, timeout=30, check=False)
    return probe.stdout.strip() == "ok"


MDWE_PRELUDE = f"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:
    sys.exit(3)
"""


@pytest.mark.skipif(not mdwe_supported(), reason="the kernel has no PR_SET_MDWE (Linux < 6.3)")
def test_the_gateway_runs_with_memory_deny_write_execute(tmp_path: Path) -> None:
    """The simulated telecom room (RTU on ptys, TCP, serial text) polled by `roomwarden run`
    with W^X enforced on the gateway process: CPython, pymodbus, pydantic-core, SQLite,
    h11, asyncio and ssl must not need a writable+executable mapping."""
    control = subprocess.run([sys.executable, "-c", MDWE_PRELUDE + """
import mmap
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except PermissionError:
    print("refused")
"""], capture_output=True, text=True, timeout=30, check=False)
    assert control.stdout.strip() == "refused"  # the rule is really in force
    sim_config = tmp_path / "sim.yaml"
    roomwarden = Path(sys.executable).with_name("roomwarden")
    simulator = subprocess.Popen(
        [str(roomwarden), "simulate", str(REPO / "firmware_configs/telecom_equipment_room.yaml"),
         "--write-config", str(sim_config), "--duration", "60"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if sim_config.exists() and sim_config.stat().st_size:
                break
            time.sleep(0.1)
        assert sim_config.exists()
        script = MDWE_PRELUDE + f"""
import ssl
ssl.create_default_context()
from gateway.cli import main
sys.exit(main(["run", {str(sim_config)!r}, "--duration", "6", "--print", "2",
               "--panel-port", "0", "--state-dir", {str(tmp_path / "state")!r}]))
"""
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=120, check=False, cwd=tmp_path)
    finally:
        simulator.terminate()
        simulator.wait(10)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert "Traceback" not in output and "event=gateway_start" in output, output[-3000:]
    assert "h2-batt-01" in run.stdout  # live readings were printed
