"""A Mosquitto and a VictoriaMetrics of our own, on free loopback ports, for the demo (and tests).

Each runs as a child process in its own session (a Ctrl-C in the terminal reaches only the
parent, which stops the children in order) with its files in `workdir`. Ports are picked free
on 127.0.0.1 and never the well-known ones (1883, 8086, 8428), so a system broker or database
on the same machine is never touched. `start()` waits until the service answers; `stop()`
sends SIGTERM, waits, then kills. Both are context managers. On Linux a child also gets SIGTERM
if the thread that started it ends (so start them from the main thread): a crashed or killed
parent leaves no broker or database behind.

    with LocalMosquitto(tmp / "mqtt") as broker, LocalVictoria(tmp / "vm") as vm:
        ... broker.port ... vm.url ...
"""

from __future__ import annotations

import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self

RESERVED_PORTS = frozenset({1883, 8086, 8428})
"""The system services' ports: never ours."""
HOST = "127.0.0.1"


class ServiceError(RuntimeError):
    """A local service could not be started."""


class ServiceNotInstalled(ServiceError):
    """Its binary is not on this machine."""


LISTEN_PORTS_FROM = 20_000
"""Ports for our listeners are drawn from here up to the kernel's ephemeral range."""


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections (Linux's default if it
    cannot be read)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, not one of RESERVED_PORTS, and below the kernel's
    ephemeral range when there is room: a port from that range (what binding port 0 gives) can
    be taken by any outgoing connection's local end between this check and the server's own
    bind, and the server then exits with "address already in use". Below it, only another
    listener can take it."""
    low, _high = _ephemeral_range()
    for _ in range(64 if low - LISTEN_PORTS_FROM >= 1_000 else 0):
        port = random.randrange(LISTEN_PORTS_FROM, low)
        if port not in RESERVED_PORTS and _bindable(port):
            return port
    while True:
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port not in RESERVED_PORTS:
            return port


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def find_binary(name: str, *fallbacks: str) -> str | None:
    """`which name`, else the first existing executable of `fallbacks` (/usr/sbin is not on
    every user's PATH)."""
    found = shutil.which(name)
    if found:
        return found
    return next((f for f in fallbacks if os.access(f, os.X_OK)), None)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def _libc_prctl() -> Callable[..., int] | None:
    if sys.platform != "linux":
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _libc_prctl()  # looked up here, not in the forked child
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """The child gets SIGTERM when the thread that started it ends (the process dies, even by
    SIGKILL): no orphaned broker or database after a crash."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def log_tail(path: Path, lines: int = 5) -> str:
    """The last `lines` lines of a service's log, on one line."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def wait_until_ready(process: subprocess.Popen[bytes], ready: Callable[[], bool], *, name: str,
                     where: str, timeout: float, log: Path) -> None:
    """Wait until `ready()`; a ServiceError with the log's tail if the process exits first
    (at once, not at the deadline) or does not answer within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise ServiceError(f"{name} exited with {process.returncode} at start: "
                               f"{log_tail(log)}")
        if time.monotonic() > deadline:
            raise ServiceError(f"{name} did not answer on {where} within {timeout:g}s: "
                               f"{log_tail(log)}")
        time.sleep(0.05)


class _LocalService:
    """One child process; subclasses give its command line and readiness check."""

    name = "service"
    binary = ""
    fallbacks: tuple[str, ...] = ()
    package = ""
    """The Debian package that installs it (for the error message)."""
    ready_timeout = 30.0
    attempts = 3
    """Start again on a fresh port if the child exits early (another process took the port)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def executable(self) -> str:
        path = find_binary(self.binary, *self.fallbacks)
        if path is None:
            raise ServiceNotInstalled(
                f"{self.binary} is not installed (not on PATH, nor {', '.join(self.fallbacks)});"
                f" on Debian: apt-get install {self.package}")
        return path

    def command(self, executable: str, port: int) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def _start(self) -> int:
        if self.process is not None:
            raise ServiceError(f"{self.name} is already running (pid {self.process.pid})")
        executable = self.executable()
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, self.attempts + 1):
            self.port = free_port()
            self._log = self.log_path.open("ab")
            self.process = subprocess.Popen(
                self.command(executable, self.port), cwd=self.workdir,
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if _PRCTL is not None else None)
            try:
                self._wait_ready()
                return self.port
            except ServiceError:
                self.stop()
                if attempt == self.attempts:
                    raise
        raise AssertionError("unreachable")

    def _wait_ready(self) -> None:
        assert self.process is not None
        wait_until_ready(self.process, self.ready, name=self.name, where=f"{HOST}:{self.port}",
                         timeout=self.ready_timeout, log=self.log_path)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Idempotent."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self._start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class LocalMosquitto(_LocalService):
    """An in-memory Mosquitto (no persistence) on 127.0.0.1, anonymous access."""

    name = "mosquitto"
    binary = "mosquitto"
    fallbacks = ("/usr/sbin/mosquitto",)
    package = "mosquitto"
    ready_timeout = 10.0

    def start(self) -> int:
        """Start and wait until it accepts connections; the port."""
        return self._start()

    def command(self, executable: str, port: int) -> list[str]:
        conf = self.workdir / "mosquitto.conf"
        lines = [f"listener {port} {HOST}", "allow_anonymous true", "persistence false",
                 "max_queued_messages 100000", "log_dest stderr",
                 "log_type error", "log_type warning"]
        if os.geteuid() == 0:  # as root it would switch to the `mosquitto` user
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        return [executable, "-c", str(conf)]

    def ready(self) -> bool:
        return port_open(self.port)


class LocalVictoria(_LocalService):
    """A single-node VictoriaMetrics on 127.0.0.1 (InfluxDB line protocol on /api/v2/write,
    Prometheus query API on /api/v1/query, raw samples on /api/v1/export), data in workdir."""

    name = "victoria-metrics"
    binary = "victoria-metrics"
    fallbacks = ("/usr/bin/victoria-metrics",)
    package = "victoria-metrics"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> str:
        """Start and wait until /health answers; the base URL."""
        self._start()
        return self.url

    def command(self, executable: str, port: int) -> list[str]:
        # latencyOffset 0: a sample is queryable about a second after it is written (default:
        # 30 s later); Debian's 1.79 raises anything under 1 s to 1 s and flushes its buffer
        # about every second, so a query ending at "now" may still miss the newest second
        return [executable, f"-httpListenAddr={HOST}:{port}",
                f"-storageDataPath={self.workdir / 'data'}", "-retentionPeriod=1y",
                "-search.latencyOffset=0s", "-loggerLevel=ERROR"]

    def ready(self) -> bool:
        return _http_ok(self.url + "/health")

    def flush(self) -> None:
        """Make everything written so far visible to /api/v1/export."""
        with urllib.request.urlopen(self.url + "/internal/force_flush", timeout=10):
            pass


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return int(response.status) == 200
    except OSError:
        return False
