"""The demo's terminal, calm (issue 14): the gateway's log goes to a file; the terminal gets one
line per alarm event and per output switch, and a short status line (with where the panel,
the simulator and the log are) only when the status changed — so the guide stays on screen."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from gateway.daemon import Gateway

QUIET_REPRINT_S = 60.0
"""With nothing changing, the status line comes again this often (the uplink's counters)."""
LOG_FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


def log_to_file(path: Path) -> Callable[[], None]:
    """Send every log line to `path` instead of the terminal; returns how to undo it."""
    root = logging.getLogger()
    terminal = [h for h in root.handlers
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    for handler in terminal:
        root.removeHandler(handler)
    to_file = logging.FileHandler(path, mode="w", encoding="utf-8")
    to_file.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(to_file)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)

    def undo() -> None:
        root.removeHandler(to_file)
        to_file.close()
        for handler in terminal:
            root.addHandler(handler)

    return undo


def alarm_line(seconds: float, event: object) -> str:
    """`*** 35 s: ALARM CRITICAL fire.smoke_coincidence @tx-3f: Fire confirmed … (active,
    unacknowledged)`, or who acknowledged it."""
    rule, subject = getattr(event, "rule", "?"), getattr(event, "subject", "?")
    severity = getattr(event, "severity", None)
    state = str(getattr(event, "state", "")).replace("_", " ")
    actor = getattr(event, "actor", "")
    kind = str(getattr(event, "kind", "alarm")).upper()
    text = f"*** {seconds:.0f} s: {kind} {str(severity).upper() if severity else ''} " \
           f"{rule} @{subject}: {getattr(event, 'title', '')} ({state}"
    if actor and actor not in ("system", "gateway"):
        text += f", by {actor}"
    note = getattr(event, "note", None)
    if note and actor not in ("system", "gateway"):
        text += f": {note}"
    return " ".join(text.split()) + ")"


def status_line(gateway: Gateway, outputs: str, backend: str | None) -> str:
    """Devices online, active alarms, outputs and the uplink in a line or two."""
    healths = [h for loop in gateway.bus_loops for h in loop.stats.device_health.values()]
    online = sum(1 for h in healths if h.online)
    active = [v for v in gateway.core.alarms.active() if v.annunciated]
    unacked = sum(1 for v in active if str(v.state.value).endswith("unacknowledged"))
    alarms = (f"{len(active)} alarm{'s' * (len(active) != 1)} active, {unacked} unacknowledged"
              if active else "no alarms")
    if active:
        worst = min(active, key=lambda v: v.severity.level)
        alarms += f" (worst: {worst.severity.value} {worst.key.rule})"
    parts = [f"devices {online}/{len(healths)} online", alarms, outputs.removeprefix("outputs: ")]
    if backend:
        parts.append(backend)
    return " · ".join(parts)


async def watch(gateway: Gateway, started: float, *, every: float, pinned: str,
                outputs: Callable[[], str], backend: Callable[[], str | None]) -> None:
    """Print alarm events and output switches as they happen, and the status when it changed
    (at most every `every` seconds), with `pinned` (where things are) under it."""
    seen_seq = gateway.core.alarms.last_seq
    coils: dict[str, bool] = {}
    last_status, last_print = "", 0.0
    while True:
        await asyncio.sleep(0.25)
        now = time.monotonic() - started
        alarms = gateway.core.alarms
        if alarms.last_seq > seen_seq:
            for event in alarms.events_since(seen_seq, limit=200):
                print(alarm_line(now, event), flush=True)
                seen_seq = max(seen_seq, event.seq)
            seen_seq = max(seen_seq, alarms.last_seq)
        for output in gateway.loaded.config.outputs:
            coil = gateway.latest.latest.get(f"{output.device}.{output.point}")
            if coil is None or not isinstance(coil.value, bool):
                continue
            on = coil.value == output.on_value
            if output.id in coils and coils[output.id] != on:
                print(f"*** {now:.0f} s: {output.role} {output.id} {'ON' if on else 'off'} "
                      f"(coil {output.device}.{output.point} "
                      f"{'energised' if coil.value else 'released'})", flush=True)
            coils[output.id] = on
        if now - last_print >= every:
            key = status_line(gateway, outputs(), None)  # counters alone do not reprint it
            if key != last_status or now - last_print >= QUIET_REPRINT_S:
                status = status_line(gateway, outputs(), backend())
                print(f"[{now:4.0f} s] {status}\n         {pinned}", flush=True)
                last_status, last_print = key, now
