"""A rate rule keeps its window through restarts of a real `roomwarden run` process (issue 11:
warm start from what the gateway recorded, gateway/rules/warm.py).

One simulated T/H sensor (Modbus TCP on loopback, polled every second) reports a slow rise of
1 °C/min (60 °C/h) in an equipment room. The temperature-rate rule runs with a 2-minute window
judged after 60 s of samples (`min_span`). A cold window could therefore say nothing — neither
"exceeded" nor, with the two-sided noise guard, "not exceeded" — until 60 s after the first
sample of a new process. The scene:

1. the gateway runs with the rate limit at 300 °C/h (no alarm) while the rise goes on for
   more than `min_span`; SIGTERM (its windows are saved at the stop);
2. restarted with the limit at 30 °C/h (a config whose rule parameters changed): the alarm is
   raised at once — well before 60 s after the process started;
3. after the periodic save (every 12 s for a 2-minute window), SIGKILL; restarted with the
   limit at 300 °C/h again: the alarm the journal held active returns at once — "not
   exceeded" judged confidently from the warm window;
4. SIGKILL again, restarted at 30 °C/h: raised again at once.

Evidence: the alarm journal's events (times of raise and return against the process start)
and the gateway's `rate_windows_restored` log line."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config.loader import load_gateway_config
from gateway.sim.signals import Ramp
from gateway.sim.site import SimulatedSite
from tests.apply.test_service_process import GatewayProcess, processes

__all__ = ["processes"]

pytestmark = pytest.mark.slow

RULE = "environment.temperature_rate"
POINT = "th-1.temperature"
MIN_SPAN = 60.0
AT_ONCE = 30.0
"""A raise or return this soon after the process's `gateway_start` came from the warm window: a
cold one needs MIN_SPAN of new samples, which begin after it."""

SITE = {
    "gateway": {"id": "gw-warm", "site": "warm-site", "timezone": "UTC"},
    "rooms": [{"id": "tx", "type": "equipment"}],
    "buses": [{"id": "tcp-1", "type": "modbus_tcp", "host": "127.0.0.1", "port": 1}],
    "devices": [{"id": "th-1", "bus": "tcp-1", "unit": 1, "profile": "generic_th_sensor",
                 "room": "tx", "poll_interval": "1s"}],
    "panel": {"enabled": False},
    "rules": {"packs": ["environment"]},
}


def _limit(data: dict[str, Any], rate_c_per_h: float) -> None:
    data["rules"]["parameters"] = [{"rule": RULE, "set": {
        "window": "2m", "min_span": f"{MIN_SPAN:g}s", "rate_c_per_h": rate_c_per_h}}]


def _events(journal: Path) -> list[tuple[int, str]]:
    """(ts ns, state) of the rate alarm's events, in order."""
    if not journal.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
        return list(db.execute("SELECT ts, state FROM events WHERE rule = ? AND subject = ? "
                               "ORDER BY seq", (RULE, POINT)))


async def _event_after(journal: Path, since_ns: int, states: tuple[str, ...],
                       seconds: float) -> int:
    """The time (ns) of the first event after `since_ns` into one of `states`."""
    deadline = time.monotonic() + seconds
    while True:
        found = [ts for ts, state in _events(journal) if ts > since_ns and state in states]
        if found:
            return found[0]
        assert time.monotonic() < deadline, (states, _events(journal))
        await asyncio.sleep(0.2)


def _started_ns(log: Path, after: int) -> int:
    """The time of the first `gateway_start` line after byte `after` of the log (its local
    time stamp, to the millisecond), as ns since the epoch."""
    text = log.read_bytes()[after:].decode(errors="replace")
    found = re.search(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*event=gateway_start",
                      text, re.MULTILINE)
    assert found is not None, text[-2000:]
    seconds = time.mktime(time.strptime(found.group(1), "%Y-%m-%d %H:%M:%S"))
    return int(seconds * 1e9) + int(found.group(2)) * 1_000_000


def _restored(log: Path, after: int) -> list[tuple[int, int]]:
    """(points, samples) of each `rate_windows_restored` line after byte `after` of the log."""
    text = log.read_bytes()[after:].decode(errors="replace")
    return [(int(p), int(s)) for p, s in
            re.findall(r"event=rate_windows_restored points=(\d+) samples=(\d+)", text)]


async def test_a_rate_rule_is_judged_at_once_after_a_sigterm_and_a_sigkill_restart(
        tmp_path: Path, processes: list[GatewayProcess]) -> None:
    site_path = tmp_path / "site.yaml"
    site_path.write_text(yaml.safe_dump(SITE, sort_keys=False), encoding="utf-8")
    async with SimulatedSite(load_gateway_config(site_path)) as site:
        data = site.rewritten_config()
        config = tmp_path / "gateway.yaml"
        state = tmp_path / "state"
        journal = state / "alarms.sqlite"
        gw = GatewayProcess(config, state, tmp_path / "control.sock")
        processes.append(gw)

        def start(limit: float) -> tuple[int, int]:
            _limit(data, limit)
            config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
            offset = gw.log.stat().st_size if gw.log.exists() else 0
            began = time.time_ns()
            gw.start()
            return began, offset

        async def stop(sig: signal.Signals) -> None:
            assert gw.proc is not None
            gw.proc.send_signal(sig)
            code = await asyncio.to_thread(gw.proc.wait, 30)
            assert code == (0 if sig is signal.SIGTERM else -signal.SIGKILL), code

        site.set_signal(POINT, Ramp(start=20.0, end=30.0, duration=600.0))  # 60 °C/h
        # 1. no alarm at 300 °C/h while the rise runs past min_span; then a clean stop
        began, _ = start(300.0)
        rising_since = time.monotonic()
        while time.monotonic() - rising_since < MIN_SPAN + 25.0:
            await asyncio.sleep(1.0)
            assert gw.proc is not None and gw.proc.poll() is None
        assert _events(journal) == []
        await stop(signal.SIGTERM)
        assert (state / "rate_windows.bin").stat().st_mode & 0o777 == 0o600

        # 2. SIGTERM restart at 30 °C/h: raised at once from the warm window
        began, offset = start(30.0)
        raised = await _event_after(journal, began, ("active_unacknowledged",), 120.0)
        since_start = (raised - _started_ns(gw.log, offset)) / 1e9
        assert since_start < AT_ONCE, since_start
        restored = _restored(gw.log, offset)
        assert restored and restored[0][0] == 1 and restored[0][1] >= 20, restored
        await asyncio.sleep(26.0)  # two periodic saves (every 12 s) of this process

        # 3. SIGKILL restart at 300 °C/h: the held alarm returns at once
        await stop(signal.SIGKILL)
        began, offset = start(300.0)
        returned = await _event_after(journal, began, ("returned_unacknowledged", "normal"),
                                      120.0)
        since_start = (returned - _started_ns(gw.log, offset)) / 1e9
        assert since_start < AT_ONCE, since_start
        assert _restored(gw.log, offset)[0][1] >= 20
        await asyncio.sleep(26.0)

        # 4. SIGKILL restart at 30 °C/h: raised again at once
        await stop(signal.SIGKILL)
        began, offset = start(30.0)
        raised = await _event_after(journal, began, ("active_unacknowledged",), 120.0)
        since_start = (raised - _started_ns(gw.log, offset)) / 1e9
        assert since_start < AT_ONCE, since_start
        assert _restored(gw.log, offset)[0][1] >= 20
