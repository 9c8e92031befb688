"""Small builders shared by tests: profiles, devices and bound points made in code; `until`,
the wait on a state (instead of a sleep that guesses how long the state takes to come);
`calls_made`, what a piece of code calls (a CPU cost that does not depend on the machine)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config.loader import ConfigErrors, load_gateway_config
from gateway.config.profile import ModbusProfile
from gateway.config.section import validator
from gateway.config.site import Device
from gateway.field.points import BoundPoint, bind_points


def modbus_profile(points: list[dict[str, Any]], **extra: Any) -> ModbusProfile:
    return validator(ModbusProfile).validate_python({
        "kind": "modbus", "id": "test_profile", "manufacturer": "test", "model": "test",
        "generic": True, "points": points, **extra})


def bound(points: list[dict[str, Any]], device_id: str = "dev1", **extra: Any) -> list[BoundPoint]:
    profile = modbus_profile(points, **extra)
    device = Device(id=device_id, bus="bus1", profile=profile.id, room="room1")
    return bind_points(device, profile)


def registers(addresses: list[int], kind: str = "uint16", register: str = "holding",
              ) -> list[dict[str, Any]]:
    return [{"name": f"p{a}", "register": register, "address": a, "type": kind}
            for a in addresses]


async def until(check: Callable[[], object], seconds: float = 15.0, what: str = "a condition",
                interval: float = 0.02) -> None:
    """Return as soon as `check()` is true; fail after `seconds` naming `what`. The bound
    separates "slow" from "never": it is not a time the test asserts."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not check():
        assert loop.time() < deadline, f"timed out after {seconds:g} s waiting for {what}"
        await asyncio.sleep(interval)


def calls_made(run: Callable[[], object]) -> Counter[str]:
    """The calls Python code makes while `run()` runs, by function name (`sys.setprofile`'s
    `call` and `c_call` events: what a loop of Python statements pays per element; calls C code
    makes itself — a `map` — are not seen)."""
    seen: Counter[str] = Counter()

    def hook(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            seen[frame.f_code.co_name] += 1
        elif event == "c_call":
            seen[getattr(arg, "__name__", "?")] += 1

    sys.setprofile(hook)
    try:
        run()
    finally:
        sys.setprofile(None)
    return seen


def refused_in(path: Path, section: str) -> str:
    """The errors of the config at `path`, which must be refused, each naming the file, a line
    and a place in `section` (as a technician reads them); all of them as one text."""
    with pytest.raises(ConfigErrors) as caught:
        load_gateway_config(path)
    text = "\n".join(str(e) for e in caught.value.errors)
    assert all(re.match(rf"{re.escape(str(path))}:\d+: {re.escape(section)}\.", str(e))
               for e in caught.value.errors), text
    return text


class Locker:
    """Another process's write transaction on a SQLite file (what `sqlite3 alarms.sqlite` with
    `BEGIN IMMEDIATE;` typed in does): the liveness audit's locked journal. `EXCLUSIVE`: a
    backup's or a stuck writer's."""

    def __init__(self, path: Path, how: str = "IMMEDIATE") -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute(f"BEGIN {how}")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


def import_threads_probe(names: tuple[str, ...]) -> str:
    """The start of a probe for `tests.ops.test_lazy_imports.run_fresh`: it records in
    `on_main` (name → bool) whether each of `names` was first imported on the main thread —
    the event loop's, in a gateway — or in another (issue 15, DESIGN principle 13)."""
    return f"""
    import importlib.abc, sys, threading
    on_main = {{}}
    class Where(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name in {names!r}:
                on_main.setdefault(name, threading.current_thread() is threading.main_thread())
            return None
    sys.meta_path.insert(0, Where())
"""


PROBE_UNTIL = """
    async def until(pred, what):
        deadline = time.monotonic() + 30
        while not pred():
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.05)
"""
"""A probe's `await until(predicate, what)` (it needs `asyncio` and `time` imported)."""


PROBE_PANEL_PORT = """
    ports = []
    class Port(logging.Handler):
        def emit(self, record):
            found = re.search(r"event=panel_started .*port=(\\d+)", record.getMessage())
            if found:
                ports.append(int(found[1]))
    logging.getLogger("gateway.panel.server").addHandler(Port())
    logging.getLogger("gateway.panel.server").setLevel(logging.INFO)
"""
"""A probe's `ports`: the panel's port once it listens (it needs `logging` and `re`)."""
