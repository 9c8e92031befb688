"""Real mosquitto and VictoriaMetrics on free loopback ports, and helpers to query them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
VICTORIA = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in (1883, 8086, 8428):
            return port


def wait_for(check: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Broker:
    port: int
    process: subprocess.Popen[bytes]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if not os.path.exists(MOSQUITTO):
        pytest.skip("mosquitto is not installed")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 100000\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _port_open(port), what="mosquitto")
        yield Broker(port, proc)
    finally:
        proc.terminate()
        proc.wait(10)


class Victoria:
    """One VictoriaMetrics on a fixed port and data directory; `kill()` and `start()` again."""

    def __init__(self, data: Path) -> None:
        self.port = free_port()
        self.data = data
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [VICTORIA, f"-httpListenAddr=127.0.0.1:{self.port}",
             f"-storageDataPath={self.data}", "-retentionPeriod=100y",
             "-search.latencyOffset=0s"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.healthy, what="victoria-metrics /health")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=0.5) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """Stop the database (SIGTERM: `kill`). Not SIGKILL: VictoriaMetrics answers 204 before
        rows are on disk (in-memory parts, flushed every few seconds, even after
        /internal/force_flush), so SIGKILL loses acknowledged rows — InfluxDB's fsynced WAL
        does not."""
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def flush(self) -> None:
        with urllib.request.urlopen(self.url + "/internal/force_flush", timeout=5):
            pass

    def export(self, match: str) -> list[dict[str, Any]]:
        """Raw samples of every series matching `match` (flushed first)."""
        self.flush()
        body = urllib.parse.urlencode({"match[]": match, "start": "0"}).encode()
        with urllib.request.urlopen(self.url + "/api/v1/export", data=body, timeout=10) as r:
            return [json.loads(line) for line in r.read().decode().splitlines() if line]


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[Victoria]:
    if not os.path.exists(VICTORIA):
        pytest.skip("victoria-metrics is not installed")
    vm = Victoria(tmp_path / "vm-data")
    vm.start()
    try:
        yield vm
    finally:
        vm.stop()
