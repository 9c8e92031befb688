"""The pieces of the uplink fault test: the simulator and the gateway as real processes (so a
SIGKILL is a real one), an independent MQTT observer, and read-only views of the gateway's
SQLite files and of what VictoriaMetrics stored."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.contract.wire import AlarmEventMessage, Channel, TelemetryBatch, decode, topic_filter
from gateway.localservices import free_port, port_open
from gateway.uplink.outbox_numbers import BLOCK
from tests.fixtures.services import MOSQUITTO, VICTORIA, Broker, Subscriber, Victoria, wait_for

REPO = Path(__file__).resolve().parents[2]
SeriesKey = tuple[str, str, str]
"""(point, quality, field): `field` is `value` (numbers, booleans) or `no_value` (null)."""


def field_of(value: object) -> str:
    if value is None:
        return "no_value"
    if isinstance(value, str):
        return "text"
    return "value"


class Proc:
    """A `python -m gateway ...` child with its output appended to a log file."""

    def __init__(self, name: str, args: list[str], log: Path) -> None:
        self.name = name
        self.args = args
        self.log = log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.popen is None or self.popen.poll() is not None
        with self.log.open("ab") as out:
            out.write(f"--- start {self.name} {time.strftime('%H:%M:%S')}\n".encode())
            out.flush()
            self.popen = subprocess.Popen([sys.executable, "-m", "gateway", *self.args],
                                          stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                          env={**os.environ, "PYTHONUNBUFFERED": "1"})

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int, wait: float = 20.0) -> int:
        assert self.popen is not None
        self.popen.send_signal(sig)
        try:
            return self.popen.wait(wait)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"{self.name} did not exit on signal {sig}") from None

    def close(self) -> None:
        if self.alive:
            assert self.popen is not None
            self.popen.kill()
            self.popen.wait()

    def tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


class Simulator(Proc):
    def __init__(self, config: Path, directory: Path) -> None:
        self.control_port = free_port()
        self.written = directory / "sim.yaml"
        super().__init__("simulator", ["simulate", str(config), "--write-config",
                                       str(self.written), "--control-port",
                                       str(self.control_port)], directory / "simulator.log")

    def start(self) -> None:
        super().start()
        wait_for(lambda: self.written.exists() and port_open(self.control_port), 60,
                 "the simulator's config and control port")

    def command(self, **cmd: Any) -> dict[str, Any]:
        """One JSON line over the control channel (what `roomwarden simctl` sends)."""
        with socket.create_connection(("127.0.0.1", self.control_port), timeout=10) as s:
            s.sendall(json.dumps(cmd).encode() + b"\n")
            reply = s.makefile("rb").readline()
        answer: dict[str, Any] = json.loads(reply)
        assert answer.get("ok"), answer
        return answer


class GatewayProcess(Proc):
    """`roomwarden run` on the simulator's config, with `uplink.port` set to the test's broker
    and any other `uplink` settings the test gives."""

    def __init__(self, sim_config: Path, broker_port: int, directory: Path,
                 **uplink: Any) -> None:
        data = yaml.safe_load(sim_config.read_text(encoding="utf-8"))
        data["uplink"].update(uplink, port=broker_port)
        self.config = directory / "gateway.yaml"
        self.config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        self.state_dir = directory / "state"
        super().__init__("gateway", ["run", str(self.config), "--state-dir",
                                     str(self.state_dir)], directory / "gateway.log")
        self.site = str(data["gateway"]["site"])
        self.gateway_id = str(data["gateway"]["id"])

    @property
    def outbox_path(self) -> Path:
        return self.state_dir / "uplink" / "outbox.sqlite"

    def _read(self, path: Path, sql: str) -> list[tuple[Any, ...]]:
        if not path.exists():
            return []
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return list(db.execute(sql))
        finally:
            db.close()

    def outbox_depth(self) -> int:
        """Messages committed in the outbox and not yet acknowledged by the broker (read-only,
        while the gateway runs: WAL readers never block its writer)."""
        rows = self._read(self.outbox_path, "SELECT COUNT(*) FROM messages")
        return int(rows[0][0]) if rows else 0

    def outbox_rows(self) -> list[tuple[str, bytes]]:
        """(topic, payload) of every message still in the outbox."""
        return [(str(t), bytes(p)) for t, p in
                self._read(self.outbox_path, "SELECT topic, payload FROM messages ORDER BY id")]

    def journal_events(self) -> dict[int, tuple[str, str, str]]:
        """The alarm journal: seq → (rule, subject, state)."""
        return {int(seq): (str(rule), str(subject), str(state)) for seq, rule, subject, state in
                self._read(self.state_dir / "alarms.sqlite",
                           "SELECT seq, rule, subject, state FROM events")}


@dataclass
class Observed:
    """What the observer saw, deduplicated by the gateway's sequence numbers."""

    batches: dict[int, TelemetryBatch] = field(default_factory=dict)
    alarms: dict[int, AlarmEventMessage] = field(default_factory=dict)
    deliveries: int = 0
    conflicting: list[int] = field(default_factory=list)
    """Sequence numbers seen with two different payloads (must never happen)."""

    def add(self, topic: str, payload: bytes) -> None:
        message = decode(topic, payload)
        self.deliveries += 1
        if isinstance(message, TelemetryBatch):
            old = self.batches.setdefault(message.seq, message)
            if old != message:
                self.conflicting.append(message.seq)
        elif isinstance(message, AlarmEventMessage):
            old_event = self.alarms.setdefault(message.seq, message)
            if old_event != message:
                self.conflicting.append(message.seq)

    def series(self) -> dict[SeriesKey, list[int]]:
        """(point, quality, field) → sample times in ms (as VictoriaMetrics stores them)."""
        out: dict[SeriesKey, list[int]] = defaultdict(list)
        for batch in self.batches.values():
            for point, value, dt, quality in batch.samples:
                out[(point, quality.value, field_of(value))].append((batch.t0 + dt) // 10**6)
        return out

    def points(self) -> int:
        return sum(len(b.samples) for b in self.batches.values())

    def span_s(self) -> float:
        times = [b.t0 + dt for b in self.batches.values() for _p, _v, dt, _q in b.samples]
        return (max(times) - min(times)) / 1e9 if times else 0.0


class Observer:
    """An MQTT client with a persistent session (clean_session false, fixed client id, QoS 1):
    the broker queues for it across its own restarts, so it sees every batch the gateway got a
    PUBACK for — an independent record of what was produced."""

    def __init__(self, port: int, root: str = "roomwarden") -> None:
        self.sub = Subscriber(port, [topic_filter(Channel.TELEMETRY, root=root),
                                     topic_filter(Channel.ALARMS, root=root)],
                              client_id="fault-test-observer", clean_session=False)

    def observed(self) -> Observed:
        out = Observed()
        for m in self.sub.snapshot():
            out.add(m.topic, m.payload)
        return out

    def count(self) -> int:
        return len(self.sub.snapshot())

    def close(self) -> None:
        self.sub.close()


@dataclass
class Stored:
    """What VictoriaMetrics holds for one gateway."""

    series: dict[SeriesKey, list[int]]
    """(point, quality, field) → sample times (ms), as stored (duplicates kept)."""
    alarm_seqs: list[int]
    other_metrics: Counter[str]
    doubled: list[str]
    """Every series (telemetry, alarm_events_*, gateway_state_*) holding a timestamp twice."""


def stored(vm: Victoria, site: str, gateway: str) -> Stored:
    series: dict[SeriesKey, list[int]] = defaultdict(list)
    alarm_seqs: list[int] = []
    other: Counter[str] = Counter()
    doubled: list[str] = []
    for s in vm.export(f'{{site="{site}",gateway="{gateway}"}}'):
        labels = s["metric"]
        name = str(labels["__name__"])
        if len(set(s["timestamps"])) != len(s["timestamps"]):
            doubled.append(json.dumps(labels, sort_keys=True))
        if "point" in labels:
            fld = "no_value" if name.endswith("_no_value") else (
                "text" if name.endswith("_text") else "value")
            series[(labels["point"], labels["quality"], fld)] += [int(t) for t in
                                                                  s["timestamps"]]
        elif name == "alarm_events_seq":
            alarm_seqs += [int(v) for v in s["values"]]
        else:
            other[name] += len(s["timestamps"])
    return Stored(series, alarm_seqs, other, doubled)


@contextlib.contextmanager
def broker_and_database(tmp_path: Path, **broker_options: Any
                        ) -> Iterator[tuple[Broker, Victoria]]:
    """A Mosquitto (with `broker_options`) and a VictoriaMetrics without dedup (so a double
    write would show), both stopped afterwards; skips when either is not installed."""
    import pytest

    if not (Path(MOSQUITTO).exists() and Path(VICTORIA).exists()):
        pytest.skip("mosquitto and victoria-metrics are needed")
    broker = Broker(tmp_path / "broker", **broker_options)
    vm = Victoria(tmp_path / "vm-data", dedup=False)
    broker.start()
    try:
        vm.start()
        try:
            yield broker, vm
        finally:
            vm.stop()
    finally:
        broker.stop()


def stop_all(*procs: Proc) -> None:
    for p in procs:
        with contextlib.suppress(Exception):
            if p.alive:
                p.signal(signal.SIGTERM, wait=10)
        p.close()


def check_exactly_once(seen: Observed, unsent_batches: dict[int, TelemetryBatch],
                       unsent_alarms: set[int], db: Stored,
                       journal: dict[int, tuple[str, str, str]], *, kills: int = 0) -> None:
    """Nothing committed went missing, and the database holds what was delivered, once.

    `unsent_*`: what the stopped gateway's outbox still holds (sent at its next start; with
    end-to-end acknowledgement it may also have been delivered already — the ingest's
    watermark had not covered it yet). `kills`: the gateway was SIGKILLed this often — each
    time the restarted process numbers on above the block of numbers the killed one had
    reserved (gateway.uplink.outbox_numbers: telemetry goes out from memory before it is
    committed), one gap in `seq` of at most a block; what the killed process held only in
    memory and the broker never accepted is in that gap too."""
    # --- telemetry seq 1..N: delivered or still queued, but for one gap a SIGKILL
    delivered = set(seen.batches)
    everything = sorted(delivered | set(unsent_batches))
    gaps = [(a, b) for a, b in itertools.pairwise(everything) if b != a + 1]
    assert everything[0] == 1 and len(gaps) <= kills \
        and all(b - a <= BLOCK + 1 for a, b in gaps), f"missing telemetry seqs: {gaps[:20]}"
    for seq in delivered & set(unsent_batches):
        assert seen.batches[seq] == unsent_batches[seq], f"seq {seq}: two payloads"

    # --- the database holds exactly what was delivered, per series, once
    expected = seen.series()
    assert not [k for k in expected if k[2] == "text"], "string points cannot be counted in VM"
    assert not db.doubled, f"series with a timestamp written twice: {db.doubled[:5]}"
    assert set(db.series) == set(expected), (
        f"series only in the database: {sorted(set(db.series) - set(expected))[:5]}; "
        f"only delivered: {sorted(set(expected) - set(db.series))[:5]}")
    wrong = {k: (len(expected[k]), len(db.series[k])) for k in expected
             if sorted(expected[k]) != sorted(db.series[k])}
    for k in list(wrong)[:2]:  # where the difference lies, for whoever reads a failure
        lost = sorted(set(expected[k]) - set(db.series[k]))
        extra = sorted(set(db.series[k]) - set(expected[k]))
        print(f"{k}: delivered from {min(expected[k])} ms; not stored {lost[:30]}; "
              f"stored, never delivered {extra[:30]}")
    assert not wrong, f"(delivered, stored) samples differ in {len(wrong)} series: " \
                      f"{list(wrong.items())[:5]}"
    assert sum(len(ts) for ts in db.series.values()) == seen.points()

    # --- every alarm event arrived, once (or waits in the outbox)
    assert len(journal) >= 4, f"the h2 drives made only {len(journal)} alarm events"
    assert len(db.alarm_seqs) == len(set(db.alarm_seqs)), "an alarm event written twice"
    assert set(seen.alarms) == set(db.alarm_seqs)
    assert set(journal) == set(db.alarm_seqs) | unsent_alarms, \
        f"alarm events lost: {sorted(set(journal) - set(db.alarm_seqs) - unsent_alarms)}"


class Run:
    """A fault test's timeline: t = 0 when the observer sees the first batch; each step at
    its time, logged with the outbox, the observer and the ingest; then the stopped gateway's
    leftovers and a wait until the ingest and the observer settle. `ingest` returns the
    running ingest service (a test may replace it)."""

    def __init__(self, gw: GatewayProcess, observer: Observer,
                 ingest: Callable[[], Any]) -> None:
        self.gw = gw
        self.observer = observer
        self.ingest = ingest
        self.t0 = 0.0

    def log(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", flush=True)

    def begin(self, began: float) -> None:
        wait_for(lambda: self.observer.count() > 0, 60, "the first batch at the observer")
        self.t0 = time.monotonic()
        self.log(f"production started ({self.t0 - began:.1f}s of setup)")

    def at(self, t: float, what: str, action: Callable[[], object]) -> None:
        delay = self.t0 + t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        assert self.gw.alive or what.startswith("gateway restart"), \
            f"the gateway died before {what!r}:\n{self.gw.tail()}"
        action()
        self.log(f"{what}: outbox {self.gw.outbox_depth()}, observer {self.observer.count()}, "
                 f"ingest {self.ingest().status()}")

    def unsent(self) -> tuple[dict[int, TelemetryBatch], set[int]]:
        """What the stopped gateway's outbox still holds (sent at its next start)."""
        unsent = [decode(t, p) for t, p in self.gw.outbox_rows()]
        return ({m.seq: m for m in unsent if isinstance(m, TelemetryBatch)},
                {m.seq for m in unsent if isinstance(m, AlarmEventMessage)})

    def settle(self) -> None:
        """Until nothing more arrives at the observer or the ingest, and the ingest is idle."""
        last = [-1]

        def settled() -> bool:
            st = self.ingest().status()
            n = self.observer.count() + int(st["received"])
            quiet = bool(st["connected"]) and st["pending"] == 0 and st["parked"] == 0
            if n == last[0] and quiet:
                return True
            last[0] = n
            return False

        wait_for(settled, 60, "the ingest and the observer to settle", 1.0)
        self.log(f"settled: ingest {self.ingest().status()}")
