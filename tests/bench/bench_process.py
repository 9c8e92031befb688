"""Whole-process benchmark: a real `roomwarden run` on a simulated Modbus TCP site, publishing
to a real Mosquitto (QoS 1, durable outbox), as systemd runs it (the unit's `Environment=`:
docstrings and asserts stripped, byte-code cached in a directory of this benchmark's, filled
by a first short start; a notify socket this benchmark owns, `WATCHDOG_USEC` as in the unit,
the panel on).

For each load it measures the gateway process only (the simulator, the broker and this
benchmark are other processes), from /proc over a window after warm-up:

- CPU % of one core: utime + stime + cutime + cstime of /proc/<pid>/stat over the window (with
  the children it waited for: the boot's config check);
- RSS: VmRSS sampled every second (median, last) and VmHWM (the peak since start);
- wake-ups: voluntary context switches per second, summed over the process's threads
  (/proc/<pid>/task/*/status) — a thread that sleeps in epoll/futex and is woken counts one;
- threads; polls and rule evaluations per second (from the control socket's status);
  telemetry points per second arriving at the broker's subscriber;
- start-up: seconds from spawning the process to the first telemetry message at the broker,
  and the CPU seconds the process had used by then;
- storage: bytes the process had written to disk over the window (/proc/<pid>/io
  `write_bytes`), as GB a day — what it costs a Raspberry Pi's SD card (the wear audit of
  6 Dec 2026: 99 % of it the outbox's commits; the file system's journal comes on top).

Loads: 1 point @1 s, 200 points @1 s (2 block reads), 2,000 points @1 s (10 devices × 200 in
rooms of five types, so the five rule packs bind and evaluate), the same in whole units
(registers ×1 instead of ×0.01: most values stay as they were from one poll to the next, as on
a real site, so the change-driven rules have less to do), 200 points @100 ms, and 1 point @1 s
without an uplink (what the rest of the gateway costs). At ×0.01 every register changes every
second (noise); the exception filter's deadband is 0, so every change is published.

Environment: BENCH_PROCESS_WINDOW (s, default 30), BENCH_PROCESS_WARMUP (s, default 10),
BENCH_PROCESS_LOADS (comma-separated load keys, default all but the ablations),
BENCH_PROCESS_RUNS (default 1: runs per load, each a fresh process; the table gives the run
with the lowest CPU and lists the others — on a machine shared with other work the lowest is
the least disturbed), BENCH_PROCESS_ABLATE (default 0: rounds of `p2000` and of the same load
without the flight recorder, without the rule packs, without the uplink, without all three,
and with the uplink alone, interleaved, each part's cost in the whole process — what `p2000`
loses without it; only these runs unless BENCH_PROCESS_LOADS names loads too), BENCH_PROCESS_SAMPLE
(`<start>,<seconds>[,<path>]`: each gateway runs under tests/bench/sampled_run.py's CPU-time
sampler from `start` s for `seconds`, and where its CPU went is printed after its load),
BENCH_PROCESS_SOAK (s, default 0: a run of that many seconds at 2,000 points reporting RSS
every minute, for "no growth"), BENCH_PROCESS_DELIVERY (`ingest`, the default: a real
`roomwarden ingest` process writing to a real VictoriaMetrics acknowledges what it stored, as
on a real site, so the outbox lets go of entries on its watermark; `puback`: no ingest, entries
leave on the broker's PUBACK — what the benchmark measured before 2026-12-07, when the outbox
kept every message on disk until it left, so the mode did not change what it wrote).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from gateway.control import ControlError, request
from gateway.localservices import free_port
from gateway.uplink.settings import UplinkSettings
from tests.apply.test_service_process import NotifySocket
from tests.bench.common import REPO, emit_json, simulator
from tests.bench.services import mosquitto, stop_process, victoria_metrics, wait_until
from tests.service.unitfile import as_the_unit_runs

QUANTITIES = [("temperature", "°C"), ("phase_voltage", "V"), ("phase_current", "A")]
HUMIDITY = ("relative_humidity", "%")
"""One humidity point per device (register 0): rules pair each humidity with every
temperature of its device for the dew point, and no real device has dozens of each."""
ROOM_TYPES = ["data_center", "equipment", "battery", "distribution", "ups"]
WATCHDOG_USEC = 30_000_000
"""As systemd/roomwarden.service (WatchdogSec=30s)."""


def holding_profile(points: int, scale: float = 0.01) -> dict[str, Any]:
    """`points` int16 holding registers at 0..points-1 (×0.01: the simulator's noise of 1/40
    of a quantity's normal band moves every register at every second's draw): a humidity
    (with more than one point), then temperature, phase voltage and current in turn."""
    kinds = [HUMIDITY] * (points > 1) + [QUANTITIES[i % len(QUANTITIES)]
                                        for i in range(points - (points > 1))]
    return {
        "kind": "modbus", "id": f"bench_hr{points}", "manufacturer": "bench",
        "model": f"{points} holding registers", "generic": True,
        "points": [{"name": f"r{i}", "register": "holding", "address": i, "type": "int16",
                    "scale": scale, "quantity": quantity, "unit": unit}
                   for i, (quantity, unit) in enumerate(kinds)],
    }


@dataclass(frozen=True)
class Load:
    key: str
    title: str
    devices: int
    points: int
    """Per device."""
    interval: str
    uplink: bool = True
    scale: float = 0.01
    """Of the registers: 0.01 moves every value at every poll (the noise); 1 (whole units)
    leaves most values as they were, as on a real site between polls."""
    sections: tuple[tuple[str, Any], ...] = ()
    """Config sections set in the gateway's config (an ablation: a part turned off)."""
    ablation: bool = False
    """Run only when named in BENCH_PROCESS_LOADS, or by BENCH_PROCESS_ABLATE."""


LOADS = [
    Load("p1", "1 point @1 s", 1, 1, "1s"),
    Load("p200", "200 points @1 s", 1, 200, "1s"),
    Load("p2000", "2,000 points @1 s, 5 rule packs", 10, 200, "1s"),
    Load("p2000w", "2,000 points @1 s, 5 rule packs, whole units", 10, 200, "1s", scale=1.0),
    Load("p200f", "200 points @100 ms", 1, 200, "100ms"),
    Load("p1local", "1 point @1 s, no uplink", 1, 1, "1s", uplink=False),
    Load("p2000norec", "2,000 points @1 s, 5 rule packs, no flight recorder", 10, 200, "1s",
         sections=(("recorder", {"enabled": False}),), ablation=True),
    Load("p2000norules", "2,000 points @1 s, no rule packs", 10, 200, "1s",
         sections=(("rules", {"packs": []}),), ablation=True),
    Load("p2000local", "2,000 points @1 s, 5 rule packs, no uplink", 10, 200, "1s",
         uplink=False, ablation=True),
    Load("p2000field", "2,000 points @1 s, no rule packs, recorder or uplink", 10, 200, "1s",
         uplink=False, sections=(("recorder", {"enabled": False}), ("rules", {"packs": []})),
         ablation=True),
    Load("p2000uplink", "2,000 points @1 s, no rule packs or recorder", 10, 200, "1s",
         sections=(("recorder", {"enabled": False}), ("rules", {"packs": []})), ablation=True),
]
ABLATIONS = {"p2000norec": "the flight recorder", "p2000norules": "the rules and alarms",
             "p2000local": "the uplink",
             "p2000field": "all three (what is left: polling, decoding, the event loop)",
             "p2000uplink": "the rules and the recorder (the uplink on: sampled alone, "
                            "its own cost is p2000uplink less p2000field)"}
"""What each ablation load leaves out of `p2000` (BENCH_PROCESS_ABLATE)."""


def site(load: Load, profiles: Path) -> dict[str, Any]:
    rooms = [{"id": f"room-{i}", "type": ROOM_TYPES[i % len(ROOM_TYPES)]}
             for i in range(load.devices)]
    return {
        "gateway": {"id": f"bench-{load.key}", "site": "bench"},
        "profiles_dir": str(profiles),
        "rooms": rooms,
        "buses": [{"id": "tcp", "type": "modbus_tcp", "host": "192.0.2.1", "timeout": "1s"}],
        "devices": [{"id": f"d{i}", "bus": "tcp", "unit": i + 1,
                     "profile": f"bench_hr{load.points}", "room": rooms[i]["id"],
                     "poll_interval": load.interval} for i in range(load.devices)],
    }


# --- /proc ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcSample:
    at: float
    cpu_seconds: float
    rss_kib: int
    hwm_kib: int
    voluntary: int
    involuntary: int
    threads: int
    written_bytes: int = 0
    """Bytes the process has had written to storage (`/proc/<pid>/io` write_bytes: what
    reached the block layer — its fsyncs included, the file system's own journal not)."""
    loop_cpu_seconds: float = 0.0
    """The main thread's own CPU, the event loop's (/proc/<pid>/task/<pid>/stat)."""


def _status_fields(path: Path) -> dict[str, str]:
    fields = {}
    for line in path.read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


def proc_sample(pid: int) -> ProcSample:
    """One reading of the process's CPU (with its children's that it waited for: the
    child that checks a config at boot), memory, threads and context switches."""
    base = Path(f"/proc/{pid}")
    stat = (base / "stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = sum(int(field) for field in stat[11:15]) / tick
    loop = _thread_cpu(base / "task" / str(pid) / "stat", tick)
    status = _status_fields(base / "status")
    voluntary = involuntary = 0
    for task in (base / "task").iterdir():
        with suppress(OSError):  # a thread that ended between listing and reading
            fields = _status_fields(task / "status")
            voluntary += int(fields["voluntary_ctxt_switches"])
            involuntary += int(fields["nonvoluntary_ctxt_switches"])
    return ProcSample(time.monotonic(), cpu, int(status["VmRSS"].split()[0]),
                      int(status["VmHWM"].split()[0]), voluntary, involuntary,
                      int(status["Threads"]), _written_bytes(base), loop)


def _thread_cpu(stat: Path, tick: int) -> float:
    """A thread's own CPU seconds (utime + stime of its /proc stat; 0.0 if it is gone)."""
    with suppress(OSError):
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick
    return 0.0


def _written_bytes(base: Path) -> int:
    """`write_bytes` of `/proc/<pid>/io` (0 where it cannot be read: another user's process)."""
    with suppress(OSError, ValueError):
        for line in (base / "io").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == "write_bytes":
                return int(value)
    return 0


# --- what arrives at the broker, what systemd would hear -------------------------------------


class TelemetryCounter:
    """Subscribes to every gateway's telemetry; counts messages, points, batches received
    again (a `seq` seen before: a redelivery the ingest would drop) and rows no newer than a
    row already received for their point (sent twice under different `seq`s); notes the
    first."""

    def __init__(self, port: int) -> None:
        self.messages = 0
        self.points = 0
        self.repeated = 0
        self.old_rows = 0
        self._seen: set[tuple[str, int]] = set()
        self._newest: dict[str, int] = {}
        self.first_at: float | None = None
        self.first_cpu: float | None = None
        self.pid: int | None = None
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"bench-process-{os.getpid()}")

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            batch = json.loads(msg.payload)
            rows, key = len(batch["samples"]), (msg.topic, int(batch["seq"]))
            t0 = int(batch["t0"])
            with self._lock:
                if key in self._seen:
                    self.repeated += 1
                self._seen.add(key)
                for point, _value, dt, _quality in batch["samples"]:
                    if self._newest.get(point, -1) >= t0 + dt:
                        self.old_rows += 1
                    else:
                        self._newest[point] = t0 + dt
                if self.first_at is None:
                    self.first_at = time.monotonic()
                    if self.pid is not None:
                        with suppress(OSError):
                            self.first_cpu = proc_sample(self.pid).cpu_seconds
                self.messages += 1
                self.points += rows

        start_subscriber(self.client, port, ["roomwarden/+/+/telemetry"], on_message)

    def reset(self, pid: int) -> None:
        with self._lock:
            self.messages = self.points = self.repeated = self.old_rows = 0
            self._seen.clear()
            self._newest.clear()
            self.first_at = self.first_cpu = None
            self.pid = pid

    def counts(self) -> tuple[int, int, int, int]:
        with self._lock:
            return self.messages, self.points, self.repeated, self.old_rows

    def close(self) -> None:
        with suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


def start_subscriber(client: mqtt.Client, port: int, topics: Sequence[str],
                     on_message: Callable[[mqtt.Client, Any, mqtt.MQTTMessage], None]) -> None:
    """Connect `client` to the broker on loopback, subscribe it to `topics` (QoS 1) on every
    connect, and return once the first subscription is acknowledged."""
    subscribed = threading.Event()

    def on_connect(client: mqtt.Client, *_: Any) -> None:
        client.subscribe([(topic, 1) for topic in topics])

    def on_subscribe(*_: Any) -> None:
        subscribed.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    if not subscribed.wait(10):
        raise RuntimeError("benchmark subscriber did not subscribe")


def _status(control: Path) -> dict[str, Any] | None:
    try:
        for answer in request(control, {"op": "status"}, timeout=10):
            if "status" in answer:
                return dict(answer["status"])
    except (ControlError, OSError):
        return None
    return None


def _evaluation_ms(panel_port: int) -> float | None:
    """Mean duration of one round of the safety core since start, from /metrics (scraped after
    the window: the first scrape loads prometheus_client into the gateway)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{panel_port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("roomwarden_rule_evaluation_seconds_sum",
                    "roomwarden_rule_evaluation_seconds_count"):
            values[name] = float(value)
    count = values.get("roomwarden_rule_evaluation_seconds_count")
    return 1000 * values["roomwarden_rule_evaluation_seconds_sum"] / count if count else None


def _polls(status: dict[str, Any] | None) -> int:
    return sum(int(b["polls"]) for b in status["buses"]) if status else 0


# --- one load ---------------------------------------------------------------------------------


def _roomwarden(env: dict[str, str] | None = None) -> list[str]:
    if env and env.get("ROOMWARDEN_SAMPLE"):  # (BENCH_PROCESS_SAMPLE)
        return [sys.executable, "-m", "tests.bench.sampled_run"]
    script = Path(sys.executable).with_name("roomwarden")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway"]


@contextmanager
def gateway_process(config: Path, work: Path, env: dict[str, str], panel_port: int) -> Iterator[
        subprocess.Popen[bytes]]:
    log = (work / "gateway.log").open("wb")
    process = subprocess.Popen(
        [*_roomwarden(env), "run", str(config), "--state-dir", str(work / "state"),
         "--control", str(work / "control.sock"), "--panel-port", str(panel_port)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        yield process
    finally:
        stop_process(process)
        log.close()


def _bindings(log: Path) -> int | None:
    for line in log.read_text(errors="replace").splitlines():
        if "event=gateway_start" in line:
            for part in line.split():
                if part.startswith("bindings="):
                    return int(part[len("bindings="):])
    return None


def write_site(load: Load, work: Path) -> Path:
    """Make `work` with the load's profile and site (for the simulator); return the site."""
    work.mkdir(parents=True)
    profiles = work / "profiles"
    profiles.mkdir()
    (profiles / f"bench_hr{load.points}.yaml").write_text(
        yaml.safe_dump(holding_profile(load.points, load.scale), sort_keys=False))
    site_path = work / "site.yaml"
    site_path.write_text(yaml.safe_dump(site(load, profiles), sort_keys=False))
    return site_path


@contextmanager
def ingest_process(work: Path, broker_port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A real `roomwarden ingest` (MQTT 5, its own persistent session) writing to a real
    VictoriaMetrics, both stopped at the end: it publishes the acknowledgement watermarks the
    gateways' outboxes wait for in `delivery: ingest`."""
    work.mkdir(parents=True, exist_ok=True)
    with victoria_metrics(work / "vm") as vm:
        central = work / "central.yaml"
        central.write_text(yaml.safe_dump({
            "mqtt": {"host": "127.0.0.1", "port": broker_port, "protocol": "5",
                     "client_id": f"bench-process-ingest-{os.getpid()}"},
            "influx": {"url": vm.url, "token": "t", "org": "o", "bucket": "b",
                       "store": "victoriametrics"},
            "dead_letter": str(work / "dead.jsonl"),
            "catalog_store": str(work / "catalogs.sqlite")}))
        log = (work / "ingest.log").open("wb")
        process = subprocess.Popen([sys.executable, "-m", "gateway", "ingest", "--config",
                                    str(central)], cwd=REPO, stdout=log,
                                   stderr=subprocess.STDOUT)
        try:
            time.sleep(1.0)
            if process.poll() is not None:
                raise RuntimeError(f"the ingest exited ({process.returncode}): "
                                   + (work / "ingest.log").read_text(errors="replace")[-2000:])
            yield process
        finally:
            stop_process(process)
            log.close()


def run_load(load: Load, work: Path, broker_port: int, counter: TelemetryCounter, *,
             window: float, warmup: float, soak: float = 0.0,
             delivery: str = "ingest", sample: bool = True) -> dict[str, Any]:
    """One load in a fresh gateway process with the unit's environment (stripped byte-code,
    cached beside `work`: shared by the runs of one benchmark). `delivery`: the uplink's mode
    (`ingest` needs an ingest answering on the broker: `main` runs one)."""
    site_path = write_site(load, work)
    with simulator(site_path, work) as sim_config:
        config = gateway_config_of(load, yaml.safe_load(sim_config.read_text()), broker_port,
                                   delivery)
        gateway_config = work / "gateway.yaml"
        gateway_config.write_text(yaml.safe_dump(config, sort_keys=False))
        notify = NotifySocket(work / "notify.sock")
        env = {**as_the_unit_runs(dict(os.environ), pycache=work.parent / "pycache"),
               "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": str(WATCHDOG_USEC),
               "PYTHONPATH": os.pathsep.join(  # this checkout's code, not the one the venv's
                   p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}  # editable
        # install names (a git worktree measured its main checkout's code before 6 Dec)
        env.pop("WATCHDOG_PID", None)
        sampled = _sample_spec(work) if sample else None
        if sampled:
            env["ROOMWARDEN_SAMPLE"] = sampled
        try:
            panel_port = free_port()
            started = time.monotonic()
            with gateway_process(gateway_config, work, env, panel_port) as process:
                counter.reset(process.pid)
                wait_until(lambda: notify.seen("READY=1"), 60, "READY", process)
                ready = time.monotonic()
                if load.uplink:
                    wait_until(lambda: counter.first_at is not None, 60, "the first point",
                               process)
                first = counter.first_at
                figures = measure(process.pid, work / "control.sock", counter,
                                  window=window, warmup=warmup, soak=soak)
                if process.poll() is not None:
                    raise RuntimeError(f"the gateway exited ({process.returncode})")
                figures["evaluation_ms_mean"] = _evaluation_ms(panel_port)
        finally:
            notify.close()
    if sampled:
        _print_samples(Path(sampled.split(",", 2)[2]), load)
    figures.update({
        "load": load.title, "devices": load.devices, "points": load.devices * load.points,
        "interval": load.interval, "uplink": load.uplink,
        "delivery": delivery if load.uplink else None,
        "startup_to_first_point_s": (first - started) if first is not None else None,
        "startup_cpu_s": counter.first_cpu if load.uplink else None,
        "ready_s": ready - started,
        "watchdog_pings": sum(m.splitlines().count("WATCHDOG=1") for m in notify.messages),
        "rule_bindings": _bindings(work / "gateway.log"),
    })
    return figures


def gateway_config_of(load: Load, config: dict[str, Any], broker_port: int, delivery: str
                      ) -> dict[str, Any]:
    """The gateway's config for `load`: the simulator's site `config` (its buses pointing at
    the simulator), the uplink to the broker if the load has one, the load's sections."""
    config = dict(config)
    if load.uplink:
        config["uplink"] = {"broker": "127.0.0.1", "port": broker_port,
                            "exception": {"deadband": 0}}
        if "delivery" in {f.name for f in dataclasses.fields(UplinkSettings)}:
            config["uplink"]["delivery"] = delivery
    config.update(load.sections)
    return config


def _sample_spec(work: Path) -> str | None:
    """ROOMWARDEN_SAMPLE for tests/bench/sampled_run.py from BENCH_PROCESS_SAMPLE
    (`<start>,<seconds>[,<path>]`: the collapsed stacks kept at `path`, else in `work`)."""
    spec = os.environ.get("BENCH_PROCESS_SAMPLE")
    if not spec:
        return None
    parts = spec.split(",", 2)
    if len(parts) < 2:
        raise SystemExit("BENCH_PROCESS_SAMPLE is <start s>,<seconds>[,<path>]")
    path = Path(parts[2]) if len(parts) == 3 else work / "cpu-samples.txt"
    return f"{float(parts[0])},{float(parts[1])},{path.resolve()}"


def _print_samples(path: Path, load: Load) -> None:
    top = Path(f"{path}.top")
    if not top.exists():
        print(f"(no CPU samples for {load.key}: the run ended before the sampling did)")
        return
    print(f"\n== Where {load.title} spent its CPU (sampled; stacks: {path})")
    print("".join(top.read_text().splitlines(keepends=True)[:28]), end="")


class PublishedCounts(Protocol):
    """What `measure` reads from a subscriber: messages, points, batches received again and
    rows older than one already received, so far."""

    def counts(self) -> tuple[int, int, int, int]: ...


def first_start(work: Path, broker_port: int, counter: TelemetryCounter,
                delivery: str = "ingest") -> dict[str, Any]:
    """A short run at 1 point with an empty byte-code cache beside `work`, as a gateway's first
    start after an install or upgrade: it compiles what the gateway imports, so the measured
    runs start as a gateway does every other time (and carry no compiler's leftovers)."""
    return run_load(LOADS[0], work / "first-start", broker_port, counter, window=1.0,
                    warmup=0.0, delivery=delivery, sample=False)


def measure(pid: int, control: Path | None, counter: PublishedCounts, *, window: float,
            warmup: float, soak: float = 0.0) -> dict[str, Any]:
    """The process's figures over `window` after `warmup` (`control`: a roomwarden control
    socket for polls and evaluations; None for another program)."""
    time.sleep(warmup)
    status_before = _status(control) if control else None
    published_before = counter.counts()
    before = proc_sample(pid)
    rss: list[int] = []
    minutes: list[float] = []
    parts: list[dict[str, float]] = []
    seconds = max(window, soak)
    end = before.at + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        sample = proc_sample(pid)
        rss.append(sample.rss_kib)
        if soak and len(rss) % 60 == 0:
            minutes.append(sample.rss_kib / 1024)
            parts.append(rss_parts(pid))
    after = proc_sample(pid)
    published_after = counter.counts()
    status_after = _status(control) if control else None
    elapsed = after.at - before.at
    evaluations = ((status_after or {}).get("evaluations", 0)
                   - (status_before or {}).get("evaluations", 0))
    figures: dict[str, Any] = {
        "window_s": elapsed,
        "cpu_pct_of_core": 100 * (after.cpu_seconds - before.cpu_seconds) / elapsed,
        "loop_thread_cpu_pct": 100 * (after.loop_cpu_seconds - before.loop_cpu_seconds)
        / elapsed,
        "rss_mib_median": statistics.median(rss) / 1024 if rss else after.rss_kib / 1024,
        "rss_mib_last": after.rss_kib / 1024,
        "rss_mib_max": after.hwm_kib / 1024,
        "wakeups_per_s": (after.voluntary - before.voluntary) / elapsed,
        "involuntary_per_s": (after.involuntary - before.involuntary) / elapsed,
        "threads": after.threads,
        "polls_per_s": (_polls(status_after) - _polls(status_before)) / elapsed,
        "evaluations_per_s": evaluations / elapsed,
        "published_points_per_s": (published_after[1] - published_before[1]) / elapsed,
        "published_messages_per_s": (published_after[0] - published_before[0]) / elapsed,
        "repeated_batches": published_after[2] - published_before[2],
        "old_rows": published_after[3] - published_before[3],
        "alarms_active": len((status_after or {}).get("alarms", [])),
        # what the outbox holds at the end (it stays small when what it sends is acknowledged)
        "outbox_depth_end": ((status_after or {}).get("uplink") or {}).get("outbox_depth"),
        # what a gateway costs its SD card (the wear audit, 6 Dec 2026): bytes a day at this rate
        "disk_written_mb_per_day": (after.written_bytes - before.written_bytes) / elapsed
        * 86_400 / 1e6,
    }
    if minutes:
        figures["soak_rss_mib_per_minute"] = minutes
        figures["soak_rss_parts_per_minute"] = parts
    return figures


def rss_parts(pid: int) -> dict[str, float]:
    """MiB of the resident set that is anonymous (heap, stacks: the process's own data) and
    file-backed (the interpreter, libraries, extension modules), from smaps_rollup."""
    fields: dict[str, float] = {}
    with suppress(OSError), open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            if name in ("Rss", "Anonymous"):
                fields[name] = int(rest.split()[0]) / 1024
    rss, anon = fields.get("Rss", 0.0), fields.get("Anonymous", 0.0)
    return {"rss": rss, "anon": anon, "file": rss - anon}


# --- the table --------------------------------------------------------------------------------


def _others(result: dict[str, Any]) -> str:
    """The other runs' CPU, when a load ran more than once: " (of 1.02, 1.31)"."""
    runs = result.get("cpu_pct_runs") or []
    return f" (of {', '.join(f'{c:.2f}' for c in runs)})" if len(runs) > 1 else ""


def _opt(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def main() -> dict[str, Any]:
    window = float(os.environ.get("BENCH_PROCESS_WINDOW", "30"))
    warmup = float(os.environ.get("BENCH_PROCESS_WARMUP", "10"))
    soak = float(os.environ.get("BENCH_PROCESS_SOAK", "0"))
    runs = max(1, int(os.environ.get("BENCH_PROCESS_RUNS", "1")))
    wanted = os.environ.get("BENCH_PROCESS_LOADS")
    delivery = os.environ.get("BENCH_PROCESS_DELIVERY", "ingest")
    if delivery not in ("ingest", "puback"):
        raise SystemExit("BENCH_PROCESS_DELIVERY must be ingest or puback")
    ablate = max(0, int(os.environ.get("BENCH_PROCESS_ABLATE", "0")))
    loads = [load for load in LOADS
             if (load.key in wanted.split(",") if wanted else not load.ablation)]
    if ablate and not wanted:
        loads = []  # (the ablation's own runs only, unless loads are named as well)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="roomwarden-bench-process-") as tmp:
        work = Path(tmp)
        with mosquitto(work / "broker") as broker, contextlib.ExitStack() as stack:
            if delivery == "ingest":
                stack.enter_context(ingest_process(work / "ingest", broker.port))
            counter = TelemetryCounter(broker.port)
            try:
                first = first_start(work, broker.port, counter, delivery)
                for load in loads:
                    tries = [run_load(load, work / f"{load.key}-{i}", broker.port, counter,
                                      window=window, warmup=warmup, delivery=delivery)
                             for i in range(runs)]
                    best = min(tries, key=lambda r: float(r["cpu_pct_of_core"]))
                    best["cpu_pct_runs"] = [r["cpu_pct_of_core"] for r in tries]
                    results[load.key] = best
                if ablate:
                    results["ablation"] = run_ablation(
                        ablate, work, broker.port, counter, window=window, warmup=warmup,
                        delivery=delivery)
                if soak:
                    results["soak"] = run_load(LOADS[2], work / "soak", broker.port, counter,
                                               window=window, warmup=warmup, soak=soak,
                                               delivery=delivery)
            finally:
                counter.close()
    rows = []
    for key, r in results.items():
        if key == "ablation":
            continue
        rows.append((
            r["load"] if key != "soak" else f"soak {soak:g} s: {r['load']}",
            f"{r['cpu_pct_of_core']:.2f} %" + _others(r),
            f"{r['rss_mib_median']:.1f} / {r['rss_mib_max']:.1f}",
            f"{r['wakeups_per_s']:.0f}", f"{r['threads']}",
            f"{r['polls_per_s']:.1f} / {r['evaluations_per_s']:.1f} / "
            + _opt(r.get("evaluation_ms_mean"), ".1f"),
            f"{r['published_points_per_s']:.0f}",
            _opt(r["startup_to_first_point_s"], ".2f") + " / " + _opt(r["startup_cpu_s"], ".2f"),
            f"{r['disk_written_mb_per_day'] / 1000:.2f}",
            _opt(r.get("outbox_depth_end"), "d") + f" / {r.get('repeated_batches', 0)}",
        ))
    answered = ("a real ingest acknowledging (delivery: ingest)" if delivery == "ingest"
                else "no ingest, entries leave on PUBACK (delivery: puback)")
    if rows:
        print_rows(f"Whole process: roomwarden run, Modbus TCP simulator, Mosquitto QoS 1, "
                   f"{answered}, {window:g} s windows after {warmup:g} s", rows)
    if rows:
        print("of which the event loop's thread (the main thread; the rest: the MQTT client's, "
              "the outbox writer's and the other threads): " + ", ".join(
                  f"{key} {r['loop_thread_cpu_pct']:.2f} %" for key, r in results.items()
                  if key != "ablation"))
    print(f"first start (empty byte-code cache, as after an install or upgrade): first point "
          f"after {_opt(first['startup_to_first_point_s'], '.2f')} s, "
          f"{_opt(first['startup_cpu_s'], '.2f')} CPU s; the runs above read the cache")
    results["first_start"] = {k: first[k] for k in ("startup_to_first_point_s",
                                                    "startup_cpu_s")}
    if "ablation" in results:
        _print_ablation(results["ablation"], window, warmup)
    if "soak" in results:
        _print_soak(results["soak"], warmup)
    emit_json("process", results)
    return results


def run_ablation(rounds: int, work: Path, broker_port: int, counter: TelemetryCounter, *,
                 window: float, warmup: float, delivery: str) -> dict[str, Any]:
    """`rounds` rounds of `p2000` and each of its ablations (ABLATIONS), interleaved — so a
    machine's slow hour weighs on all of them alike —, each run a fresh process: the CPU of
    each run, and what each part costs in the whole process (the median of `p2000` less the
    median without the part: its cache misses and wake-ups included, which an in-process
    benchmark of the part on its own does not see)."""
    keys = ["p2000", *ABLATIONS]
    by_key = {load.key: load for load in LOADS}
    cpu: dict[str, list[float]] = {key: [] for key in keys}
    for i in range(rounds):
        for key in keys:
            result = run_load(by_key[key], work / f"ablation-{key}-{i}", broker_port, counter,
                              window=window, warmup=warmup, delivery=delivery)
            cpu[key].append(float(result["cpu_pct_of_core"]))
            print(f"ablation round {i + 1}/{rounds}: {key} {cpu[key][-1]:.2f} % of a core",
                  flush=True)
    whole = statistics.median(cpu["p2000"])
    return {"rounds": rounds, "cpu_pct_runs": cpu,
            "part_cpu_pct": {ABLATIONS[key]: whole - statistics.median(cpu[key])
                             for key in ABLATIONS}}


def _print_ablation(result: dict[str, Any], window: float, warmup: float) -> None:
    runs = result["cpu_pct_runs"]
    rows = [("all of it (p2000)", f"{statistics.median(runs['p2000']):.2f} %", "",
             ", ".join(f"{c:.2f}" for c in runs["p2000"]))]
    for key, part in ABLATIONS.items():
        rows.append((f"without {part} ({key})", f"{statistics.median(runs[key]):.2f} %",
                     f"{result['part_cpu_pct'][part]:.2f} %",
                     ", ".join(f"{c:.2f}" for c in runs[key])))
    print_rows(f"What each part costs at 2,000 points @1 s: {result['rounds']} interleaved "
               f"rounds, {window:g} s windows after {warmup:g} s, medians", rows,
               ("run", "CPU of a core", "the part's share", "each run"))


HEADERS = ("load", "CPU of a core", "RSS MiB (median / max)", "wake-ups/s", "threads",
           "polls/s / evaluations/s / ms each", "points/s out", "first point s / CPU s",
           "GB written/day", "outbox depth at end / batches sent again")


def print_rows(title: str, rows: Sequence[tuple[str, ...]],
               headers: Sequence[str] = HEADERS) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print(f"\n== {title}")
    print("  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def _print_soak(result: dict[str, Any], warmup: float) -> None:
    """The soak's RSS a minute at a time: total, anonymous and file-backed MiB."""
    parts = result.get("soak_rss_parts_per_minute", [])
    print(f"\n== Soak at 2,000 points: RSS every minute after {warmup:g} s of warm-up "
          "(MiB: total, anonymous = heap, file-backed = libraries)")
    for minute, part in enumerate(parts, start=1):
        print(f"  minute {minute:3d}  {part['rss']:6.1f}  anon {part['anon']:6.1f}  "
              f"file {part['file']:5.1f}")


if __name__ == "__main__":
    main()
