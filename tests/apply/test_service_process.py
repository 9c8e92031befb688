"""`roomwarden run` as a real process: SIGKILL in the middle of applying a config leaves the
last-known-good config in force after a restart; SIGTERM stops cleanly (READY and STOPPING
told to systemd's notify socket, exit code 0, sirens and strobes switched off)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config.loader import load_gateway_config
from gateway.control import ControlError, request
from gateway.flashing.store import ConfigStore
from gateway.sim.signals import Constant
from gateway.sim.site import SimulatedSite
from tests.apply.conftest import SITE, device, edit_config, for_tests, until

SIREN, STROBE = "do-tx-01.do1", "do-tx-01.do2"


class NotifySocket:
    """A fake systemd notify socket: records every datagram the service sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def seen(self, line: str) -> bool:
        return any(line in m.splitlines() for m in list(self.messages))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class GatewayProcess:
    def __init__(self, factory: Path, state: Path, control: Path,
                 env: dict[str, str] | None = None, *,
                 base: dict[str, str] | None = None) -> None:
        """`env` on top of `base` (default: this process's environment)."""
        self.args = [sys.executable, "-m", "gateway", "run", str(factory), "--state-dir",
                     str(state), "--control", str(control)]
        self.control = control
        self.env = {**(os.environ if base is None else base), **(env or {})}
        self.log = state.parent / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=log, env=self.env)

    def status(self) -> dict[str, Any] | None:
        try:
            answers = list(request(self.control, {"op": "status"}, timeout=5))
        except (ControlError, OSError):
            return None
        final = answers[-1]
        return final["status"] if final.get("ok") else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def devices_online(status: dict[str, Any] | None) -> bool:
    if status is None:
        return False
    devices = [d for bus in status["buses"] for d in bus["devices"]]
    return bool(devices) and all(d["online"] for d in devices)


async def smoke_coincidence(site: SimulatedSite) -> None:
    """Both smoke detectors of the telecom room in alarm; returns once siren and strobe are
    on (fire.smoke_coincidence)."""
    site.set_signal("smoke-tx-01.alarm", Constant(value=True))
    site.set_signal("smoke-tx-02.alarm", Constant(value=True))
    await until(lambda: site.read_point(SIREN) is True
                and site.read_point(STROBE) is True, 30, "siren and strobe on")


@pytest.fixture
def processes() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for proc in started:
        proc.stop()


async def test_sigkill_in_the_middle_of_an_apply_keeps_the_last_known_good(
        tmp_path: Path, processes: list[GatewayProcess]) -> None:
    async with SimulatedSite(load_gateway_config(SITE)) as site:
        factory = site.write_config(tmp_path / "gateway.yaml")
        factory.write_text(edit_config(factory.read_text(), lambda d: for_tests(d, "60s")))
        state, control = tmp_path / "state", tmp_path / "control.sock"
        gw = GatewayProcess(factory, state, control)
        processes.append(gw)
        gw.start()
        await until(lambda: devices_online(gw.status()), 40, "the gateway up, devices online")

        def wrong_unit(data: dict[str, Any]) -> None:
            device(data, "th-tx-a03")["unit"] = 99  # never answers: health check waits 60 s

        text = edit_config(factory.read_text(), wrong_unit)
        seen: list[str] = []

        def apply() -> None:
            try:
                for answer in request(control, {"op": "apply", "config": text,
                                                "author": "tech"}, timeout=90):
                    if "progress" in answer:
                        seen.append(answer["progress"]["state"])
            except (ControlError, OSError):
                pass  # the process was killed under us

        worker = threading.Thread(target=apply, daemon=True)
        worker.start()
        await until(lambda: "applying" in seen, 30, "the apply under way")

        def new_loops_polling() -> bool:  # the candidate (version 1) runs, its loops have polled
            status = gw.status()
            return (status is not None and status["config_version"] == 1
                    and all(bus["polls"] > 0 for bus in status["buses"]))

        await until(new_loops_polling, 30, "the new config's loops polling")
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGKILL)
        gw.proc.wait(10)
        worker.join(10)
        store = ConfigStore(state / "config")
        assert store.applying, "killed while applying: the marker must still be there"

        gw.start()  # same state directory
        await until(lambda: devices_online(gw.status()), 40, "restarted, devices online")
        status = gw.status()
        assert status is not None and status["config_version"] == 0
        assert not store.applying
        meta = store.active_meta()
        assert meta is None or meta.version == 0
        assert "event=config_apply_interrupted" in gw.log.read_text()


async def test_sigterm_stops_cleanly_with_outputs_off_and_tells_systemd(
        tmp_path: Path, processes: list[GatewayProcess]) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    try:
        async with SimulatedSite(load_gateway_config(SITE)) as site:
            factory = site.write_config(tmp_path / "gateway.yaml")
            factory.write_text(edit_config(factory.read_text(), for_tests))
            gw = GatewayProcess(factory, tmp_path / "state", tmp_path / "control.sock",
                                env={"NOTIFY_SOCKET": str(notify.path)})
            processes.append(gw)
            gw.start()
            await until(lambda: notify.seen("READY=1"), 40, "READY=1")
            await until(lambda: devices_online(gw.status()), 40, "devices online")
            await smoke_coincidence(site)
            # what a technician types: `roomwarden status` renders the running gateway
            shown = await asyncio.to_thread(subprocess.run, [
                sys.executable, "-m", "gateway", "status", "--control", str(gw.control)],
                capture_output=True, text=True, timeout=30)
            assert shown.returncode == 0, shown.stderr
            for expected in ("fsu-gz-tianhe-0301", "rs485-env", "th-tx-a03",
                             "fire.smoke_coincidence", "siren-3f"):
                assert expected in shown.stdout, (expected, shown.stdout)
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(gw.proc.wait, 30)
            assert code == 0, gw.log.read_text()[-3000:]
            assert notify.seen("STOPPING=1")
            assert site.read_point(SIREN) is False
            assert site.read_point(STROBE) is False
            log = gw.log.read_text()
            assert "event=gateway_stopped" in log
    finally:
        notify.close()


def test_status_says_so_when_no_gateway_runs(tmp_path: Path) -> None:
    shown = subprocess.run([sys.executable, "-m", "gateway", "status", "--control",
                            str(tmp_path / "none.sock")], capture_output=True, text=True,
                           timeout=30)
    assert shown.returncode == 3
    assert "no gateway is running here" in shown.stderr
