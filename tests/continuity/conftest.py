"""The scene of the continuity tests: the telecom site (plus two smoke detectors in the battery
room, for a latched fire alarm) simulated on loopback, five alarms of five kinds held active,
and an observer that polls the panel's `/api/state` every 100 ms, records every write to the
relay module's coils, and (with a real Mosquitto) every alarm event the uplink publishes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from gateway.config.loader import load_gateway_config
from gateway.config.profile import RegisterType
from gateway.localservices import free_port
from gateway.sim.signals import Constant, Ramp
from gateway.sim.site import SimulatedSite
from tests.fixtures.services import Broker, Subscriber, broker, subscribers

__all__ = ["broker", "subscribers"]  # fixtures shared with the other suites

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"
RELAY = "do-tx-01"
SIREN, STROBE, FAN = 0, 1, 2  # coil addresses of do1..do3 (siren, strobe, fan)

Key = tuple[str, str]
THRESHOLD: Key = ("explosion.h2_alarm", "h2-batt-01.h2")  # 25 %LEL, on-delay 2 s
RATE: Key = ("fire.heat_rate_of_rise", "th-tx-a03.temperature")
COINCIDENCE: Key = ("fire.smoke_coincidence", "tx-3f")  # two detectors, condition held
LATCHED: Key = ("fire.smoke_coincidence", "batt-3f")  # condition gone, latched until ack
CONTACT: Key = ("environment.water_leak", "di-tx-01.di3")  # on-delay 3 s
KINDS: dict[str, Key] = {"threshold with on-delay": THRESHOLD, "rate of change": RATE,
                         "two-detector coincidence": COINCIDENCE, "latching": LATCHED,
                         "contact": CONTACT}


def scene_config(tmp: Path) -> Path:
    """The telecom site with two more smoke detectors (battery room) and a faster T/H sensor."""
    data = yaml.safe_load(SITE.read_text(encoding="utf-8"))
    data["devices"] += [
        {"id": "smoke-batt-01", "bus": "rs485-env", "unit": 13,
         "profile": "generic_smoke_detector", "room": "batt-3f", "poll_interval": "2s"},
        {"id": "smoke-batt-02", "bus": "rs485-env", "unit": 14,
         "profile": "generic_smoke_detector", "room": "batt-3f", "poll_interval": "2s"}]
    path = tmp / "scene.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def prepare(data: dict[str, Any], panel_port: int, broker: Broker | None,
            rate_limit: float = 1.0) -> None:
    """The test settings of a running config (applied to the simulator's rewritten config)."""
    data["panel"] = {"enabled": True, "bind": "127.0.0.1", "port": panel_port}
    data.setdefault("flashing", {})["health_timeout"] = "8s"
    if broker is not None:
        data["uplink"] = {"broker": "127.0.0.1", "port": broker.port, "protocol": "5"}
    device(data, "th-tx-a03")["poll_interval"] = "1s"
    rules = data.setdefault("rules", {})
    rules["parameters"] = [
        {"rule": "fire.heat_rate_of_rise", "device": "th-tx-a03",
         "set": {"rate_c_per_min": rate_limit, "window": "20s"}}]
    for output in data["outputs"]:
        if output["id"] == "siren-3f":
            output["on_stop"] = "hold"  # a planned stop leaves the siren as it is


def device(data: dict[str, Any], device_id: str) -> dict[str, Any]:
    return next(d for d in data["devices"] if d["id"] == device_id)


def edit(text: str, change: Callable[[dict[str, Any]], None]) -> str:
    data = yaml.safe_load(text)
    change(data)
    return yaml.safe_dump(data, sort_keys=False)


@contextlib.asynccontextmanager
async def simulated(tmp: Path) -> Any:
    async with SimulatedSite(load_gateway_config(scene_config(tmp))) as site:
        yield site


def write_config(site: SimulatedSite, tmp: Path, broker: Broker | None) -> tuple[Path, int]:
    port = free_port()
    factory = site.write_config(tmp / "gateway.yaml")
    factory.write_text(edit(factory.read_text(encoding="utf-8"),
                            lambda d: prepare(d, port, broker)), encoding="utf-8")
    return factory, port


def watched(site: SimulatedSite, tmp: Path, broker: Broker,
            subscribers: list[Subscriber]) -> tuple[Path, Observer]:
    """The site's gateway config for the scene (written to `tmp`) and an observer of it that
    also subscribes to everything on `broker`."""
    factory, port = write_config(site, tmp, broker)
    subscriber = Subscriber(broker.port, "#")
    subscribers.append(subscriber)
    return factory, Observer(site, port, subscriber)


def raise_hazards(site: SimulatedSite) -> None:
    site.set_signal("h2-batt-01.h2", Constant(value=30.0))
    site.set_signal("th-tx-a03.temperature", Ramp(start=16.0, end=28.0, duration=360.0))
    site.set_signal("smoke-tx-01.alarm", Constant(value=True))
    site.set_signal("smoke-tx-02.alarm", Constant(value=True))
    site.set_signal("smoke-batt-01.alarm", Constant(value=True))
    site.set_signal("smoke-batt-02.alarm", Constant(value=True))
    site.set_signal("di-tx-01.di3", Constant(value=True))


def clear_battery_room_smoke(site: SimulatedSite) -> None:
    """The battery-room detectors reset: the fire alarm there stays latched until acked."""
    site.set_signal("smoke-batt-01.alarm", Constant(value=False))
    site.set_signal("smoke-batt-02.alarm", Constant(value=False))


@dataclass
class Poll:
    at: float
    alarms: dict[Key, tuple[str, int | None]] | None
    """(state, activation ns) of every listed alarm; None when the panel did not answer."""


@dataclass
class Observer:
    """What the operator and the field see while something is done to the gateway."""

    site: SimulatedSite
    panel_port: int
    subscriber: Subscriber | None = None
    polls: list[Poll] = field(default_factory=list)
    writes: list[tuple[float, int, bool]] = field(default_factory=list)
    """(monotonic time, coil address, value) of every coil write to the relay module."""
    _task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        image = self.site.modbus.images[RELAY]
        original = image.apply_write

        def recording(register: RegisterType, address: int,
                      values: Sequence[int] | Sequence[bool]) -> None:
            if register is RegisterType.COIL:
                for offset, value in enumerate(values):
                    self.writes.append((time.monotonic(), address + offset, bool(value)))
            original(register, address, values)

        image.apply_write = recording  # type: ignore[method-assign]

    async def state(self) -> dict[Key, tuple[str, int | None]] | None:
        url = f"http://127.0.0.1:{self.panel_port}/api/state"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http, \
                    http.get(url) as response:
                if response.status != 200:
                    return None
                body = await response.json()
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None
        return {(a["rule"], a["subject"]): (a["state"], a["activated_ns"])
                for a in body["alarms"]}

    async def _poll(self) -> None:
        while True:
            began = time.monotonic()
            self.polls.append(Poll(began, await self.state()))
            await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - began)))

    def start(self) -> float:
        self.polls.clear()
        self.writes.clear()
        self._task = asyncio.get_running_loop().create_task(self._poll())
        return time.monotonic()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def alarm_events_published(self, since: float, after_seq: int) -> list[dict[str, Any]]:
        """Alarm events the uplink published since `since` that are new (journal `seq` above
        `after_seq`); an older event sent again (not yet acknowledged by an ingest) is the
        uplink's at-least-once delivery, not a new event."""
        if self.subscriber is None:
            return []
        events = [json.loads(m.payload) for m in self.subscriber.snapshot()
                  if m.topic.endswith("/alarms") and m.at >= since]
        return [e for e in events if e["seq"] > after_seq]


def expected_states(before: dict[Key, tuple[str, int | None]]) -> dict[Key, tuple[str, int]]:
    """The five alarms as they must stay: active (the latched one unacknowledged)."""
    out = {}
    for kind, key in KINDS.items():
        assert key in before, f"{kind} alarm {key} is not raised: {sorted(before)}"
        state, activated = before[key]
        assert state == "active_unacknowledged", (kind, state)
        assert activated is not None
        out[key] = (state, activated)
    return out


def check_held(observer: Observer, expected: dict[Key, tuple[str, int]],
               min_answers: int) -> int:
    """Every answer of the panel shows each alarm in its state with its activation time."""
    answered = [p for p in observer.polls if p.alarms is not None]
    assert len(answered) >= min_answers, (len(answered), len(observer.polls))
    for poll in answered:
        assert poll.alarms is not None
        for key, want in expected.items():
            assert poll.alarms.get(key) == want, (key, poll.alarms.get(key), want)
    siren_off = [w for w in observer.writes if w[1] == SIREN and not w[2]]
    assert siren_off == [], f"the siren coil was written off: {siren_off}"
    return len(answered)


def journal_events(path: Path, after_seq: int) -> list[tuple[int, str, str, str, str]]:
    """(seq, kind, rule, subject, state) of journal events after `after_seq` (read-only)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return list(db.execute("SELECT seq, kind, rule, subject, state FROM events "
                               "WHERE seq > ? ORDER BY seq", (after_seq,)))


def last_seq(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        row = db.execute("SELECT max(seq) FROM events").fetchone()
    return int(row[0] or 0)


async def until(check: Callable[[], bool], seconds: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def read_state(observer: Observer, seconds: float = 20.0) -> dict[
        Key, tuple[str, int | None]]:
    """The panel's alarms, asked again until it answers (a `None` from `Observer.state` is a
    request not answered in 2 s on a loaded machine, not "no alarms")."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (state := await observer.state()) is None:
        assert loop.time() < deadline, f"the panel did not answer in {seconds:.0f} s"
        await asyncio.sleep(0.2)
    return state


async def settle(observer: Observer, journal: Path, quiet: float = 4.0,
                 seconds: float = 90.0) -> dict[Key, tuple[str, int]]:
    """Wait until the five alarms are raised (the battery-room fire then latched) and the
    journal has been quiet for `quiet` seconds; the five alarms as they stand."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    cleared = False
    while True:
        assert loop.time() < deadline, "the scene never settled"
        state = await observer.state() or {}
        if not cleared and all(k in state for k in KINDS.values()):
            clear_battery_room_smoke(observer.site)
            cleared = True
        if cleared and all(state.get(k, ("",))[0] == "active_unacknowledged"
                           for k in KINDS.values()):
            seq = last_seq(journal)
            await asyncio.sleep(quiet)
            if last_seq(journal) == seq and not observer.site.read_point(
                    "smoke-batt-01.alarm"):
                return expected_states(await read_state(observer))
        await asyncio.sleep(0.5)
