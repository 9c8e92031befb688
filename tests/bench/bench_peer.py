"""Peer benchmark: the ThingsBoard IoT Gateway (PyPI `thingsboard-gateway`, 3.8.5) beside
`roomwarden run`, on the same machine, the same simulated Modbus TCP site and the same real
Mosquitto, measured the same way (issue 15 states its targets relative to this peer).

For each load it runs one process under test at a time, RoomWarden then ThingsBoard then
RoomWarden ... (`BENCH_PEER_RUNS` pairs, so the machine's noise falls on both), and measures
that process only, from /proc over a window after warm-up (bench_process's `measure`): CPU %
of one core from utime + stime, RSS (median of one-second samples), wake-ups (voluntary
context switches per second over all threads), threads, and the values per second arriving at
a subscriber on the broker (RoomWarden: points in `roomwarden/+/+/telemetry` batches;
ThingsBoard: values in `v1/gateway/telemetry` messages).

RoomWarden runs exactly as bench_process runs it (`run_load`: systemd notify socket, panel on,
QoS 1 uplink with `delivery: puback`, exception deadband 0). ThingsBoard runs from its own
virtualenv (`BENCH_PEER_VENV`, default ~/.cache/roomwarden-bench/tb-gateway-<version>, made on
first use with pip; never the project's .venv), configured the leanest documented way for the
job: its Modbus connector reads each device's 200 registers as one address range ("0-199",
`maxRegistersPerRequest` 125: two requests per poll, as RoomWarden's two block reads) into
`r<address>` int16 timeseries with `divider` 100; memory storage; QoS 1; statistics, remote
configuration, remote shell, gRPC, device filtering and inactivity checks off; report
strategy ON_CHANGE (a value is sent when it differs from the last one sent: what RoomWarden's
exception filter with deadband 0 does, so both send the same values per second; at 1 s every
register changes at nearly every poll, at 100 ms only once a second). Its default, ON_RECEIVED
(`BENCH_PEER_TB_REPORT=ON_RECEIVED`), sends every value read: the same at 1 s, ten times the
values at 100 ms, and dearer there (7.25 % against 5.67 % of a core, 4 Dec 2026).
`BENCH_PEER_TB_RANGES=0` configures one timeseries entry per register instead (one request
each), as most published examples do.

ThingsBoard's update check (an HTTPS POST to updates.thingsboard.io at start and hourly) is
sent to a closed loopback port through the standard proxy variables, so nothing leaves the
machine. ThingsBoard publishes nothing to a plain broker until the platform answers its
`getSessionLimits` RPC (tb-mqtt-client waits for it without a time-out), so the benchmark's
subscriber answers it as a platform with no rate limits would (GatewayTelemetryCounter).

Environment: BENCH_PEER_WINDOW (s, default 30), BENCH_PEER_WARMUP (s, default 10),
BENCH_PEER_RUNS (default 2: pairs per load), BENCH_PEER_LOADS (keys, default p1,p200,p200f,
p2000), BENCH_PEER_VENV, BENCH_PEER_TB_VERSION (default 3.8.5), BENCH_PEER_TB_RANGES (1),
BENCH_PEER_TB_REPORT (ON_CHANGE).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from gateway.localservices import free_port
from tests.bench.bench_process import (
    LOADS,
    Load,
    TelemetryCounter,
    first_start,
    measure,
    print_rows,
    proc_sample,
    run_load,
    start_subscriber,
    write_site,
)
from tests.bench.common import emit_json, simulator
from tests.bench.services import mosquitto, stop_process, wait_until

TB_VERSION = os.environ.get("BENCH_PEER_TB_VERSION", "3.8.5")
TB_VENV = Path(os.environ.get(
    "BENCH_PEER_VENV", Path.home() / ".cache" / "roomwarden-bench" / f"tb-gateway-{TB_VERSION}"))
PEER_LOADS = ("p1", "p200", "p200f", "p2000")
MAX_REGISTERS_PER_REQUEST = 125
"""The most holding registers one Modbus read (function 3) may ask for."""
PYMODBUS_FALLBACK = "3.9.2"
"""What thingsboard-gateway 3.8.5's Modbus connector pins (it pip-installs it at start when
another version is present); read from the installed connector when possible."""


PEER_DELIVERY = "puback"
"""RoomWarden's uplink mode here: no ingest runs beside the two gateways."""


# --- the peer's virtualenv ----------------------------------------------------------------------


def _tb_python() -> Path:
    return TB_VENV / "bin" / "python"


def _in_tb_venv(code: str) -> str | None:
    """What `code` prints, run by the peer's interpreter; None if it fails."""
    done = subprocess.run([str(_tb_python()), "-c", code], capture_output=True, text=True,
                          check=False)
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def _tb_package_dir() -> Path:
    found = _in_tb_venv("import thingsboard_gateway, pathlib; "
                        "print(pathlib.Path(thingsboard_gateway.__file__).parent)")
    if found is None:
        raise RuntimeError(f"thingsboard_gateway does not import in {TB_VENV}")
    return Path(found)


def installed_tb_version() -> str | None:
    if not _tb_python().exists():
        return None
    return _in_tb_venv(
        "from importlib.metadata import version; print(version('thingsboard-gateway'))")


def _pip(*args: str) -> bool:
    done = subprocess.run([str(_tb_python()), "-m", "pip", "install", "-q", *args],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=False)
    if done.returncode != 0:
        print(f"pip install {' '.join(args)} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
    return done.returncode == 0


def _connector_pymodbus() -> str:
    """The pymodbus version thingsboard-gateway's Modbus connector requires."""
    connector = _tb_package_dir() / "connectors" / "modbus" / "modbus_connector.py"
    with suppress(OSError):
        match = re.search(r"required_version\s*=\s*'([^']+)'", connector.read_text())
        if match:
            return match.group(1)
    return PYMODBUS_FALLBACK


def ensure_thingsboard() -> str:
    """Install thingsboard-gateway (TB_VERSION, else the newest 3.8.x) into TB_VENV when it is
    missing, with the Modbus libraries its connector would otherwise pip-install at start;
    return the installed version."""
    version = installed_tb_version()
    if version is not None:
        return version
    TB_VENV.parent.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(TB_VENV)], check=True)
    print(f"installing thingsboard-gateway into {TB_VENV} ...", file=sys.stderr)
    if not _pip(f"thingsboard-gateway=={TB_VERSION}"):
        print(f"thingsboard-gateway {TB_VERSION} not installable; trying the newest 3.8.x",
              file=sys.stderr)
        if not _pip("thingsboard-gateway>=3.8,<3.9"):
            shutil.rmtree(TB_VENV, ignore_errors=True)
            raise RuntimeError("cannot install thingsboard-gateway from PyPI (see above)")
    if not _pip(f"pymodbus=={_connector_pymodbus()}", "pyserial", "pyserial-asyncio"):
        shutil.rmtree(TB_VENV, ignore_errors=True)
        raise RuntimeError("cannot install the Modbus connector's libraries")
    version = installed_tb_version()
    if version is None:
        raise RuntimeError(f"thingsboard-gateway did not install into {TB_VENV}")
    return version


# --- the peer's configuration -------------------------------------------------------------------


def _shipped_config_dir() -> Path:
    return _tb_package_dir() / "config"


def tb_main_config(broker_port: int) -> dict[str, Any]:
    """tb_gateway.json: our Mosquitto, any access token, memory storage, QoS 1, the optional
    services off (the shipped file's other settings as shipped)."""
    config: dict[str, Any] = json.loads((_shipped_config_dir() / "tb_gateway.json").read_text())
    board = config["thingsboard"]
    board.update({
        "host": "127.0.0.1", "port": broker_port, "remoteShell": False,
        "remoteConfiguration": False, "latencyDebugMode": False, "qos": 1,
        "security": {"type": "accessToken", "accessToken": "roomwarden-bench"},
        "statistics": {"enable": False, "enableCustom": False,
                       "statsSendPeriodInSeconds": 60, "customStatsSendPeriodInSeconds": 3600},
        "deviceFiltering": {"enable": False},
        "checkingDeviceActivity": {"checkDeviceInactivity": False},
        "reportStrategy": {"type": os.environ.get("BENCH_PEER_TB_REPORT", "ON_CHANGE")},
    })
    config["storage"] = {"type": "memory", "read_records_count": 100,
                         "max_records_count": 100000}
    config["grpc"] = {"enabled": False}
    config["connectors"] = [{"type": "modbus", "name": "Modbus", "configuration": "modbus.json"}]
    return config


def _timeseries(points: int, ranges: bool) -> list[dict[str, Any]]:
    # ×0.01 as holding_profile's scale: divider 100
    if ranges:
        return [{"tag": "r${address}", "type": "16int", "functionCode": 3, "objectsCount": 1,
                 "address": f"0-{points - 1}", "divider": 100,
                 "maxRegistersPerRequest": MAX_REGISTERS_PER_REQUEST}]
    return [{"tag": f"r{i}", "type": "16int", "functionCode": 3, "objectsCount": 1,
             "address": i, "divider": 100} for i in range(points)]


def tb_modbus_config(load: Load, host: str, port: int, ranges: bool) -> dict[str, Any]:
    """modbus.json: one slave per simulated device (unit ids 1..n, as bench_process's site)."""
    interval_ms = {"1s": 1000, "100ms": 100}[load.interval]
    slaves = [{
        "host": host, "port": port, "type": "tcp", "method": "socket", "unitId": i + 1,
        "deviceName": f"d{i}", "deviceType": "default", "timeout": 1, "byteOrder": "BIG",
        "wordOrder": "BIG", "retries": 1, "retryOnEmpty": True, "retryOnInvalid": True,
        "pollPeriod": interval_ms, "connectAttemptTimeMs": 5000, "connectAttemptCount": 5,
        "waitAfterFailedAttemptsMs": 30000, "attributes": [],
        "timeseries": _timeseries(load.points, ranges), "attributeUpdates": [], "rpc": [],
    } for i in range(load.devices)]
    return {"name": "Modbus", "logLevel": "INFO", "master": {"slaves": slaves}}


# --- what the peer publishes --------------------------------------------------------------------


SESSION_LIMITS = {"maxPayloadSize": 65536, "maxInflightMessages": 100, "rateLimits": {},
                  "gatewayRateLimits": {}}
"""The platform's answer to `getSessionLimits` with no rate limits set (65536: the platform's
default MQTT payload limit; 100: the client's own default in-flight window)."""


class GatewayTelemetryCounter:
    """Counts ThingsBoard gateway-API telemetry at the broker: messages on v1/gateway/telemetry
    and the values in them ({"device": [{"ts": .., "values": {..}}, ..]}).

    It also plays the platform's part in the one exchange the gateway waits for: on connecting,
    tb-mqtt-client sends the client-side RPC `getSessionLimits` (v1/devices/me/rpc/request/<n>)
    and sends no telemetry until the platform answers (it has no time-out for it), so against a
    plain broker it would never publish. This answers it on v1/devices/me/rpc/response/<n> as a
    platform with no rate limits would (SESSION_LIMITS)."""

    TOPIC = "v1/gateway/telemetry"
    RPC_REQUESTS = "v1/devices/me/rpc/request/+"
    RPC_RESPONSE = "v1/devices/me/rpc/response/"

    def __init__(self, port: int) -> None:
        self.messages = 0
        self.values = 0
        self.limits_answered = 0
        self.first_at: float | None = None
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"bench-peer-{os.getpid()}")

        def on_message(client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            if msg.topic != self.TOPIC:
                request = json.loads(msg.payload)
                if isinstance(request, dict) and request.get("method") == "getSessionLimits":
                    client.publish(self.RPC_RESPONSE + msg.topic.rsplit("/", 1)[1],
                                   json.dumps(SESSION_LIMITS), qos=1)
                    with self._lock:
                        self.limits_answered += 1
                return
            values = count_gateway_values(json.loads(msg.payload))
            with self._lock:
                if self.first_at is None:
                    self.first_at = time.monotonic()
                self.messages += 1
                self.values += values

        start_subscriber(self.client, port, [self.TOPIC, self.RPC_REQUESTS], on_message)

    def reset(self) -> None:
        with self._lock:
            self.messages = self.values = self.limits_answered = 0
            self.first_at = None

    def counts(self) -> tuple[int, int, int, int]:
        with self._lock:
            return self.messages, self.values, 0, 0

    def close(self) -> None:
        with suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


def count_gateway_values(payload: Any) -> int:
    """Values in one gateway telemetry message: per device a list of {"ts", "values"} entries
    (or one such entry, or bare key/values)."""
    if not isinstance(payload, dict):
        return 0
    total = 0
    for entries in payload.values():
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, dict) and isinstance(entry.get("values"), dict):
                total += len(entry["values"])
            elif isinstance(entry, dict):
                total += len(entry) - ("ts" in entry)
    return total


# --- one ThingsBoard run ------------------------------------------------------------------------


@contextmanager
def tb_process(config_dir: Path, work: Path) -> Iterator[subprocess.Popen[bytes]]:
    (work / "logs").mkdir(exist_ok=True)  # the shipped logs.json writes ./logs/*.log
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: the update check fails here
    env = {**os.environ, "TB_GW_CONFIG_DIR": str(config_dir), "HTTPS_PROXY": closed,
           "HTTP_PROXY": closed, "https_proxy": closed, "http_proxy": closed}
    for name in ("NO_PROXY", "no_proxy", "PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(name, None)
    log = (work / "thingsboard.log").open("wb")
    process = subprocess.Popen([str(TB_VENV / "bin" / "thingsboard-gateway")], cwd=work,
                               stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(2)  # SIGINT: its own stop path
            with suppress(subprocess.TimeoutExpired):
                process.wait(15)
        stop_process(process)
        log.close()


def run_thingsboard(load: Load, work: Path, broker_port: int,
                    counter: GatewayTelemetryCounter, *, window: float, warmup: float,
                    ranges: bool) -> dict[str, Any]:
    with simulator(write_site(load, work), work) as sim_config:
        bus = yaml.safe_load(sim_config.read_text())["buses"][0]
        config_dir = work / "tb-config"
        shutil.copytree(_shipped_config_dir(), config_dir)
        (config_dir / "tb_gateway.json").write_text(json.dumps(tb_main_config(broker_port)))
        (config_dir / "modbus.json").write_text(
            json.dumps(tb_modbus_config(load, str(bus["host"]), int(bus["port"]), ranges)))
        started = time.monotonic()
        counter.reset()
        with tb_process(config_dir, work) as process:
            wait_until(lambda: counter.first_at is not None, 90, "ThingsBoard's first value",
                       process)
            first = counter.first_at
            first_cpu = proc_sample(process.pid).cpu_seconds
            figures = measure(process.pid, None, counter, window=window, warmup=warmup)
            children = _children(process.pid)
            if process.poll() is not None:
                raise RuntimeError(f"ThingsBoard exited ({process.returncode})")
    figures.update({
        "load": load.title, "devices": load.devices, "points": load.devices * load.points,
        "interval": load.interval,
        "startup_to_first_point_s": (first - started) if first is not None else None,
        "startup_cpu_s_at_first_value_seen": first_cpu, "child_processes": children,
        "session_limits_answered": counter.limits_answered,
        "modbus_ranges": ranges,
    })
    return figures


def _children(pid: int) -> int:
    """Processes whose parent is `pid` (work done outside the measured process)."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                count += int(stat[1]) == pid
    return count


# --- the table ----------------------------------------------------------------------------------


MEDIAN_KEYS = ("cpu_pct_of_core", "rss_mib_median", "wakeups_per_s", "threads",
               "published_points_per_s")


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the runs of one program at one load, and every run's CPU."""
    summary: dict[str, Any] = {key: statistics.median(float(r[key]) for r in runs)
                               for key in MEDIAN_KEYS}
    summary["cpu_pct_runs"] = [round(float(r["cpu_pct_of_core"]), 3) for r in runs]
    summary["runs"] = runs
    return summary


def _cells(s: dict[str, Any]) -> tuple[str, ...]:
    runs = ", ".join(f"{c:.2f}" for c in s["cpu_pct_runs"])
    return (f"{s['cpu_pct_of_core']:.2f} % ({runs})", f"{s['rss_mib_median']:.1f}",
            f"{s['wakeups_per_s']:.0f}", f"{s['threads']:.0f}",
            f"{s['published_points_per_s']:.0f}")


HEADERS = ("load", "TB CPU (runs)", "TB RSS MiB", "TB wake-ups/s", "TB threads",
           "TB values/s", "RW CPU (runs)", "RW RSS MiB", "RW wake-ups/s", "RW threads",
           "RW points/s", "CPU TB/RW")


def main() -> dict[str, Any]:
    window = float(os.environ.get("BENCH_PEER_WINDOW", "30"))
    warmup = float(os.environ.get("BENCH_PEER_WARMUP", "10"))
    runs = max(1, int(os.environ.get("BENCH_PEER_RUNS", "2")))
    ranges = os.environ.get("BENCH_PEER_TB_RANGES", "1") != "0"
    wanted = os.environ.get("BENCH_PEER_LOADS", ",".join(PEER_LOADS)).split(",")
    loads = [load for load in LOADS if load.key in wanted]
    version = ensure_thingsboard()
    load_before = os.getloadavg()
    results: dict[str, Any] = {"thingsboard_gateway_version": version,
                               "thingsboard_modbus_ranges": ranges,
                               "thingsboard_report_strategy": tb_main_config(0)["thingsboard"]
                               ["reportStrategy"]["type"]}
    with tempfile.TemporaryDirectory(prefix="roomwarden-bench-peer-") as tmp:
        work = Path(tmp)
        with mosquitto(work / "broker") as broker:
            rw_counter = TelemetryCounter(broker.port)
            tb_counter = GatewayTelemetryCounter(broker.port)
            try:
                # no ingest here (ThingsBoard has none either): RoomWarden's entries leave on
                # the broker's PUBACK, as this module's docstring says — `run_load`'s default
                # waits for an ingest's acknowledgements, which would never come, and every
                # batch went to disk and was sent again (7 Dec: 17 GB a day at 2,000 points)
                first_start(work, broker.port, rw_counter, PEER_DELIVERY)  # its byte-code cache
                for load in loads:
                    rw: list[dict[str, Any]] = []
                    tb: list[dict[str, Any]] = []
                    for i in range(runs):
                        rw.append(run_load(load, work / f"{load.key}-rw-{i}", broker.port,
                                           rw_counter, window=window, warmup=warmup,
                                           delivery=PEER_DELIVERY))
                        tb.append(run_thingsboard(load, work / f"{load.key}-tb-{i}",
                                                  broker.port, tb_counter, window=window,
                                                  warmup=warmup, ranges=ranges))
                    results[load.key] = {"load": load.title, "roomwarden": _summary(rw),
                                         "thingsboard": _summary(tb),
                                         "loadavg_after": os.getloadavg()}
                    print(f"{load.title}: done (load average {os.getloadavg()[0]:.2f})",
                          file=sys.stderr)
            finally:
                rw_counter.close()
                tb_counter.close()
    results["loadavg_before"] = load_before
    results["loadavg_after"] = os.getloadavg()
    rows = []
    for load in loads:
        r = results[load.key]
        ratio = r["thingsboard"]["cpu_pct_of_core"] / max(r["roomwarden"]["cpu_pct_of_core"],
                                                          1e-9)
        pairs = [t / max(w, 1e-9) for t, w in zip(r["thingsboard"]["cpu_pct_runs"],
                                                   r["roomwarden"]["cpu_pct_runs"], strict=True)]
        r["cpu_ratio_tb_over_rw"] = ratio
        r["cpu_ratio_per_pair"] = pairs
        rows.append((load.title, *_cells(r["thingsboard"]), *_cells(r["roomwarden"]),
                     f"{ratio:.1f}x (pairs {', '.join(f'{q:.1f}' for q in pairs)})"))
    print_rows(
        f"ThingsBoard IoT Gateway {version} (TB) vs roomwarden run (RW): Modbus TCP simulator, "
        f"Mosquitto QoS 1, medians of {runs} interleaved runs, {window:g} s windows after "
        f"{warmup:g} s; TB: Modbus {'address ranges' if ranges else 'one entry per register'}"
        f", report strategy {results['thingsboard_report_strategy']}; "
        f"load average {load_before[0]:.2f} before, {results['loadavg_after'][0]:.2f} after",
        rows, HEADERS)
    emit_json("peer", results)
    return results


if __name__ == "__main__":
    main()
