"""`roomwarden run` with the environment systemd/roomwarden.service gives it: docstrings and
asserts stripped (PYTHONOPTIMIZE=2), byte-code cached in the unit's cache directory
(PYTHONPYCACHEPREFIX). The simulated telecom room is polled, a smoke coincidence sounds the
siren and strobe, SIGTERM switches them off; the cache then holds the gateway's stripped
byte-code and, for the modules only the config check imports, plain byte-code (the check's
child runs as `roomwarden check` does)."""

from __future__ import annotations

import asyncio
import marshal
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import CodeType

import pytest

import gateway
from gateway.config.loader import load_gateway_config
from gateway.isolated_check import child_environment
from gateway.precompile import UNIT_SETTINGS
from gateway.sim.site import SimulatedSite
from tests.apply.conftest import SITE, edit_config, for_tests, until
from tests.apply.test_service_process import (
    SIREN,
    STROBE,
    GatewayProcess,
    NotifySocket,
    devices_online,
    smoke_coincidence,
)
from tests.service.unitfile import as_the_unit_runs, unit_environment

REPO = Path(__file__).resolve().parents[2]


def cached(pycache: Path, module: str, optimization: str) -> Path:
    """Where PYTHONPYCACHEPREFIX puts the byte-code of `module` (e.g. "config/site") of the
    gateway package at this optimization level ("" or ".opt-2")."""
    package = Path(gateway.__file__).resolve().parent
    tag = sys.implementation.cache_tag
    return pycache / package.relative_to(package.anchor) / f"{module}.{tag}{optimization}.pyc"


async def run_as_the_unit(tmp_path: Path, pycache: Path) -> None:
    """The telecom room simulated, the gateway started as the unit starts it, polling, a smoke
    coincidence sounding siren and strobe, SIGTERM switching them off."""
    notify = NotifySocket(tmp_path / "notify.sock")
    gw: GatewayProcess | None = None
    try:
        async with SimulatedSite(load_gateway_config(SITE)) as site:
            factory = site.write_config(tmp_path / "gateway.yaml")
            factory.write_text(edit_config(factory.read_text(), for_tests))
            gw = GatewayProcess(factory, tmp_path / "state", tmp_path / "control.sock",
                                env={"NOTIFY_SOCKET": str(notify.path)},
                                base=as_the_unit_runs(dict(os.environ), pycache=pycache))
            assert gw.env["PYTHONOPTIMIZE"] == "2"
            gw.start()
            await until(lambda: notify.seen("READY=1"), 60, "READY=1")
            await until(lambda: devices_online(gw.status()), 40, "devices online")
            await smoke_coincidence(site)
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(gw.proc.wait, 30)
            log = gw.log.read_text()
            assert code == 0, log[-3000:]
            assert site.read_point(SIREN) is False and site.read_point(STROBE) is False
            assert "Traceback" not in log and "event=config_check_in_process" not in log
    finally:
        notify.close()
        if gw is not None:
            gw.stop()


async def test_the_gateway_runs_stripped_as_the_unit_starts_it(tmp_path: Path) -> None:
    pycache = tmp_path / "pycache"
    await run_as_the_unit(tmp_path, pycache)
    # the gateway imported its modules stripped ...
    for module in ("daemon", "rules/engine", "config/site"):
        assert cached(pycache, module, ".opt-2").is_file(), module
    # ... and the config check's child (its YAML reading only it imports) did not
    assert cached(pycache, "config/yamlsafe", "").is_file()
    assert not cached(pycache, "config/yamlsafe", ".opt-2").exists()


def byte_code(pycache: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in pycache.rglob("*.pyc")}


async def precompile(pycache: Path) -> None:
    """`python -m gateway.precompile` as systemd/install.sh runs it (tests/service/test_install.py
    holds its command line)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "gateway.precompile"], check=False,
        env={**env, "PYTHONPYCACHEPREFIX": str(pycache), "PYTHONNODEBUGRANGES": "1",
             "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def code_of(pyc: Path) -> CodeType:
    code = marshal.loads(pyc.read_bytes()[16:])  # after the header: magic, flags, source
    assert isinstance(code, CodeType)
    return code


async def test_install_time_byte_code_is_what_the_unit_compiles(tmp_path: Path) -> None:
    """What gateway.precompile writes is what the unit would have compiled at its first start:
    the same code objects — column tables included, which the unit's PYTHONNODEBUGRANGES
    leaves out (a cache compiled with them would still be read, and is 1 MB larger) — for every
    file the unit compiles."""
    assert unit_environment().items() >= UNIT_SETTINGS.items()
    by_unit, at_install = tmp_path / "unit", tmp_path / "install"
    await run_as_the_unit(tmp_path, by_unit)
    await precompile(at_install)
    compiled = sorted(by_unit.rglob("*.pyc"))
    assert len(compiled) > 300
    differ = [str(p.relative_to(by_unit)) for p in compiled
              if code_of(p) != code_of(at_install / p.relative_to(by_unit))]
    assert differ == []
    assert [pos for pos in code_of(cached(at_install, "daemon", ".opt-2")).co_positions()
            if pos[2] is not None] == []


async def test_install_time_compilation_leaves_the_first_start_nothing_to_compile(
        tmp_path: Path) -> None:
    """systemd/install.sh runs `python -m gateway.precompile` with the unit's cache directory:
    the first start after an install or upgrade then reads all its byte-code — the gateway's
    stripped, the config check's plain — instead of compiling it while the site is not
    polled."""
    pycache = tmp_path / "pycache"
    await precompile(pycache)
    before = byte_code(pycache)
    assert cached(pycache, "daemon", ".opt-2") in before
    assert cached(pycache, "config/yamlsafe", "") in before
    await run_as_the_unit(tmp_path, pycache)
    # what its first /metrics scrape, its first broker connection, its first apply's trim and
    # its first command, incident, config message and panel request import while it runs
    late = ("from gateway.ops.metrics import make_registry; make_registry(object()); "
            "import socket; socket.getaddrinfo('127.0.0.1', 1883); "
            "from gateway.heap import trim; trim(); "
            "import gateway.contract.wire, gateway.panel.views")
    unit = as_the_unit_runs(dict(os.environ), pycache=pycache)
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", late], check=False,
                                   env=unit, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    after = byte_code(pycache)
    new = sorted(str(p.relative_to(pycache)) for p in after.keys() - before.keys())
    assert new == [], f"compiled at the first start: {new}"
    assert [p for p in before if after[p] != before[p]] == [], "recompiled at the first start"


def test_precompile_refuses_without_the_cache_directory() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run([sys.executable, "-m", "gateway.precompile"], check=False,
                          env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert done.returncode == 2 and "PYTHONPYCACHEPREFIX is not set" in done.stderr


def test_precompile_refuses_without_the_unit_s_byte_code_settings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env = {**env, "PYTHONPATH": str(REPO), "PYTHONPYCACHEPREFIX": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "gateway.precompile"], check=False, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 2 and "with PYTHONNODEBUGRANGES=1" in done.stderr


def test_the_config_check_runs_unoptimized_whatever_the_gateway_runs_with(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """(and on glibc's own heap settings: the unit's thresholds are the gateway's)"""
    for key, value in unit_environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ROOMWARDEN_PROBE", "kept")
    env = child_environment()
    assert not {"PYTHONOPTIMIZE", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"} & set(env)
    assert env["ROOMWARDEN_PROBE"] == "kept" and env["MALLOC_ARENA_MAX"] == "1"
