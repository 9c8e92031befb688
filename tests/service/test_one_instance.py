"""One gateway per state directory (liveness audit L2). A second `roomwarden run` on the state
directory of a running gateway used to start fully: it journalled its own events into the
first one's journal (numbered from the same last seq: events overwritten), marked its open
incident interrupted and shared its outbox and MQTT client id. Now it refuses before it opens
anything there, naming the directory and the PID that holds it, and exits non-zero; what reads
a running gateway's state directory (`roomwarden incident list`, `status`) still works; a
gateway killed with SIGKILL leaves no lock behind (the kernel drops it)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from gateway.config.loader import load_gateway_config
from gateway.sim.site import SimulatedSite
from tests.apply.conftest import SITE, edit_config, for_tests, until
from tests.apply.test_service_process import GatewayProcess, devices_online

LOCK_NAME = "gateway.lock"
"""gateway.service.instance.LOCK_NAME (written here: the name is what people look for)"""


def journal_rows(state: Path) -> list[tuple[Any, ...]]:
    """Every event row of the journal in `state`, read-only (the gateway keeps it open)."""
    uri = f"{(state / 'alarms.sqlite').resolve().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        return conn.execute("SELECT * FROM events ORDER BY seq").fetchall()


def roomwarden(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=timeout)


async def test_a_second_gateway_on_the_same_state_directory_refuses_and_touches_nothing(
        tmp_path: Path) -> None:
    state, control = tmp_path / "state", tmp_path / "control.sock"
    async with SimulatedSite(load_gateway_config(SITE)) as site:
        factory = site.write_config(tmp_path / "gateway.yaml")
        factory.write_text(edit_config(factory.read_text(), for_tests))
        first = GatewayProcess(factory, state, control)
        try:
            first.start()
            await until(lambda: devices_online(first.status()), 40, "the first gateway up")
            assert first.proc is not None
            before = journal_rows(state)

            # the same state directory, another socket; --duration: before the lock it ran
            second = await asyncio.to_thread(
                roomwarden, "run", str(factory), "--state-dir", str(state), "--socket",
                str(tmp_path / "other.sock"), "--duration", "8s")
            assert second.returncode == 1, second.stderr[-3000:]
            assert "cannot start" in second.stderr and str(state) in second.stderr, \
                second.stderr
            assert f"PID {first.proc.pid}" in second.stderr, second.stderr
            assert "event=gateway_start" not in second.stderr
            assert not (tmp_path / "other.sock").exists()

            # the first one's journal, lock file and socket are as they were
            assert journal_rows(state) == before
            assert (state / LOCK_NAME).read_text().strip() == str(first.proc.pid)
            assert devices_online(first.status())
            # what reads a running gateway's state directory takes no lock
            listed = await asyncio.to_thread(roomwarden, "incident", "list", "--state-dir",
                                             str(state))
            assert listed.returncode == 0, listed.stderr

            # a gateway killed outright leaves no lock: the next one starts
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(10)
            again = await asyncio.to_thread(
                roomwarden, "run", str(factory), "--state-dir", str(state), "--socket",
                str(control), "--duration", "2s")
            assert again.returncode == 0, again.stderr[-3000:]
            assert "event=gateway_stopped" in again.stderr
        finally:
            first.stop()
