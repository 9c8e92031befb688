"""Private starters for the uplink and ingest benchmarks: a real mosquitto and a real
VictoriaMetrics on free loopback ports (never 1883/8086/8428), stopped at the end.

Kept here on purpose (the test fixtures may move): the benchmarks only need start, stop and a
count of stored samples.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway.localservices import free_port, port_open

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
VICTORIA = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"


def wait_until(check: Callable[[], bool], timeout: float, what: str,
               proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Mosquitto:
    port: int
    process: subprocess.Popen[bytes]


@contextmanager
def mosquitto(workdir: Path, *, max_queued: int = 1_000_000) -> Iterator[Mosquitto]:
    """An in-memory mosquitto (no persistence) that queues up to `max_queued` QoS-1 messages
    per offline persistent session (the default of 1,000 would drop a pre-loaded backlog)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text("\n".join([
        f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false",
        f"max_queued_messages {max_queued}", "max_queued_bytes 0",
        f"log_dest file {workdir / 'mosquitto.log'}", "log_type error", "log_type warning",
        f"user {getpass.getuser()}"]) + "\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_open(port), 10, "mosquitto", proc)
        yield Mosquitto(port, proc)
    finally:
        stop_process(proc)


class VictoriaMetrics:
    def __init__(self, port: int, process: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.process = process
        self.url = f"http://127.0.0.1:{port}"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=0.5) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def count_samples(self, match: str) -> int:
        """Raw samples stored in every series matching `match` (after a forced flush)."""
        with urllib.request.urlopen(self.url + "/internal/force_flush", timeout=10):
            pass
        body = urllib.parse.urlencode({"match[]": match, "start": "0"}).encode()
        total = 0
        with urllib.request.urlopen(self.url + "/api/v1/export", data=body, timeout=60) as r:
            for line in r:
                if line.strip():
                    total += len(json.loads(line)["values"])
        return total


@contextmanager
def victoria_metrics(workdir: Path) -> Iterator[VictoriaMetrics]:
    port = free_port()
    proc = subprocess.Popen(
        [VICTORIA, f"-httpListenAddr=127.0.0.1:{port}",
         f"-storageDataPath={workdir / 'vm-data'}", "-retentionPeriod=100y",
         "-search.latencyOffset=0s", "-loggerLevel=ERROR"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    vm = VictoriaMetrics(port, proc)
    try:
        wait_until(vm.healthy, 30, "victoria-metrics /health", proc)
        yield vm
    finally:
        stop_process(proc)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of another process (from /proc), e.g. the broker's."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
