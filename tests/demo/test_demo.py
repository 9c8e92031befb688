"""`roomwarden demo` as a newcomer runs it: one process that starts its own Mosquitto and
VictoriaMetrics, the ingest, the simulated room, the gateway and its panel; prints a guide;
plays the scene; and stops everything on SIGINT (exit code 0, no process or file left)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.localservices import (
    RESERVED_PORTS,
    LocalMosquitto,
    LocalVictoria,
    ServiceNotInstalled,
    find_binary,
    port_open,
)

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"
HAVE_SERVICES = (find_binary("mosquitto", "/usr/sbin/mosquitto") is not None
                 and find_binary("victoria-metrics", "/usr/bin/victoria-metrics") is not None)
needs_services = pytest.mark.skipif(not HAVE_SERVICES,
                                    reason="mosquitto and victoria-metrics are not installed")


class Output:
    """Everything the demo prints, collected by a thread (a full pipe would block it)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        assert proc.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def search(self, pattern: str) -> re.Match[str] | None:
        return re.search(pattern, self.text, re.MULTILINE)


def wait_for(check: Callable[[], object], seconds: float, what: str,
             proc: subprocess.Popen[str], out: Output) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"the demo exited ({proc.returncode}) before {what}:\n"
                                 f"{out.text[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{out.text[-3000:]}")
        time.sleep(0.25)


def export(url: str, match: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(url + "/internal/force_flush", timeout=5):
        pass
    body = urllib.parse.urlencode({"match[]": match, "start": "0"}).encode()
    with urllib.request.urlopen(url + "/api/v1/export", data=body, timeout=10) as r:
        return [json.loads(line) for line in r.read().decode().splitlines() if line]


def running(pid: int, name: str) -> bool:
    """`pid` is a live (not zombie) process whose command line names `name`."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return name in cmdline and state != "Z"


@needs_services
@pytest.mark.timeout(240)
def test_the_demo_runs_the_whole_picture_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", str(SITE), "--panel-port", "0",
         "--print", "5", "--duration", "200"],
        cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    out = Output(proc)
    try:
        # the guide: panel, broker and database, each on a loopback port of its own
        wait_for(lambda: out.search(r"^Stop with Ctrl-C"), 60, "the guide", proc, out)
        panel = out.search(r"local panel\s+(http://127\.0\.0\.1:(\d+)/)\s+\(user demo, "
                           r"password demo\)")
        broker = out.search(r"mosquitto on 127\.0\.0\.1:(\d+) \(pid (\d+)\)")
        database = out.search(r"VictoriaMetrics at (http://127\.0\.0\.1:(\d+)) \(pid (\d+)\)")
        assert panel and broker and database, out.text
        panel_url, database_url = panel[1], database[1]
        ports = {int(panel[2]), int(broker[1]), int(database[2])}
        assert len(ports) == 3 and not ports & RESERVED_PORTS
        broker_pid, database_pid = int(broker[2]), int(database[3])
        assert running(broker_pid, "mosquitto")
        assert running(database_pid, "victoria-metrics")

        with urllib.request.urlopen(panel_url + "healthz", timeout=5) as r:
            health = json.loads(r.read())
        assert r.status == 200 and health["ok"] is True, health

        # telemetry through gateway → mosquitto → ingest → VictoriaMetrics
        def temperatures() -> list[dict[str, Any]]:
            return [s for s in export(database_url, "temperature_value")
                    if s["metric"].get("device") == "th-tx-a03"]

        rows = wait_for(temperatures, 30, "telemetry rows in the database", proc, out)
        assert rows[0]["metric"]["gateway"] == "fsu-gz-tianhe-0301"
        assert rows[0]["metric"]["quality"] == "good"

        # the scene's confirmed fire (at 35 s): the siren coil, then the event in the database
        wait_for(lambda: out.search(r"^\*\*\* \d+ s: siren siren-3f ON \(coil do-tx-01\.do1 "
                                    r"energised\)"), 50, "the siren coil", proc, out)

        def fire_events() -> list[dict[str, Any]]:
            return [s for s in export(database_url, '{__name__=~"alarm_events_.*"}')
                    if s["metric"].get("rule") == "fire.smoke_coincidence"
                    and s["metric"].get("kind") == "alarm"]

        events = wait_for(fire_events, 15, "the fire alarm event in the database", proc, out)
        assert {e["metric"]["subject"] for e in events} == {"tx-3f"}
        assert events[0]["metric"]["severity"] == "critical"

        # the guide's own simctl command asks the relay module: the siren coil is energised
        line = next(x for x in out.lines if '"cmd": "get"' in x and "do-tx-01.do1" in x)
        reply = subprocess.run(shlex.split(line), cwd=REPO, capture_output=True, text=True,
                               timeout=60, check=True)
        answer = json.loads(reply.stdout)
        assert answer["ok"] is True and answer["read"] is True, answer

        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, out.text[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "demo stopped." in out.text
    assert not running(broker_pid, "mosquitto")
    assert not running(database_pid, "victoria-metrics")
    assert not port_open(int(broker[1])) and not port_open(int(database[2]))
    assert not list(tmp_path.glob("roomwarden-demo-*")), "the demo left its temporary directory"


@needs_services
def test_local_services_start_on_free_loopback_ports_and_stop(tmp_path: Path) -> None:
    with LocalMosquitto(tmp_path / "mqtt") as broker, LocalVictoria(tmp_path / "vm") as vm:
        assert broker.port not in RESERVED_PORTS and vm.port not in RESERVED_PORTS
        assert port_open(broker.port)
        with urllib.request.urlopen(vm.url + "/health", timeout=5) as r:
            assert r.status == 200
        pids = (broker.pid, vm.pid)
        assert pids[0] is not None and pids[1] is not None
        assert running(pids[0], "mosquitto") and running(pids[1], "victoria-metrics")
    assert broker.pid is None and vm.pid is None
    assert not running(pids[0], "mosquitto") and not running(pids[1], "victoria-metrics")
    assert not port_open(broker.port) and not port_open(vm.port)


def test_a_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    class Missing(LocalMosquitto):
        binary = "roomwarden-no-such-broker"
        fallbacks = (str(tmp_path / "nowhere" / "mosquitto"),)

    with pytest.raises(ServiceNotInstalled, match=r"roomwarden-no-such-broker is not "
                                                  r"installed.*apt-get install mosquitto"):
        Missing(tmp_path).start()
    assert not (tmp_path / "mosquitto.conf").exists()
