"""The panel's HTTP layer against a small backend of our own protocol, on a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from gateway.clock import ManualClock
from gateway.config.section import replaced
from gateway.config.site import Panel, PanelUser
from gateway.panel.backend import CommandRefused
from gateway.panel.passwords import hash_password
from gateway.panel.server import PanelServer
from gateway.panel.views import (
    Acknowledged,
    AlarmRef,
    BusView,
    DeviceView,
    HealthView,
    OutputView,
    PanelAlarm,
    PanelState,
    PointView,
    RoomView,
    SkippedAlarm,
)

NOW_NS = 1_700_000_000_000_000_000
USER = "ops"
PASSWORD = "correct horse battery staple"
HASH = hash_password(PASSWORD)
JSON = {"Content-Type": "application/json"}
"""The header of every POST to the panel's API."""
ALARM = {"rule": "h2_high", "subject": "h2-batt-01.h2"}
"""The alarm of `sample_state`."""
ACK = {"alarms": [ALARM]}
SHELVE = {"alarm": ALARM, "minutes": 30, "reason": "sensor being replaced"}


def alarm(**over: Any) -> PanelAlarm:
    data: dict[str, Any] = {
        "rule": "h2_high",
        "subject": "h2-batt-01.h2",
        "title": "Hydrogen high in battery room 1",
        "severity": "critical",
        "level": 2,
        "state": "active_unacknowledged",
        "value": 27.5,
        "room": "battery-1",
        "activated_ns": NOW_NS - 95 * 10**9,
        "first_out": True,
    }
    data.update(over)
    return PanelAlarm(**data)


def sample_state(alarms: list[PanelAlarm] | None = None, **health: Any) -> PanelState:
    return PanelState(
        gateway="gw-bj-01",
        site="bj-yizhuang-idc",
        name="Yizhuang IDC, battery rooms",
        now_ns=NOW_NS,
        alarms=[alarm()] if alarms is None else alarms,
        rooms=[
            RoomView(
                id="battery-1",
                name="Battery room 1",
                type="battery",
                devices=[
                    DeviceView(
                        id="h2-batt-01",
                        name="H2 detector",
                        bus="rs485-1",
                        online=True,
                        last_error=None,
                        points=[
                            PointView(name="h2", value=27.5, unit="%LEL", quantity="h2_lel",
                                      quality="good", age_s=0.8),
                            PointView(name="status", value=2, unit=None, quantity=None,
                                      quality="good", age_s=0.8, label="alarm"),
                        ],
                    ),
                    DeviceView(
                        id="th-batt-01",
                        name=None,
                        bus="rs485-1",
                        online=False,
                        last_error="timeout after 500 ms",
                        points=[
                            PointView(name="temperature", value=None, unit="°C",
                                      quantity="temperature", quality="comm_error", age_s=42.0),
                        ],
                    ),
                ],
            )
        ],
        health=HealthView(
            buses=[BusView(id="rs485-1", type="modbus_rtu", devices_online=1, devices_total=2,
                           polls=1234, overruns=3, last_poll_ms=212.0)],
            outputs=[
                OutputView(id="siren-1", role="siren", on=True, confirmed=True, failed=False,
                           error=None, blocked_by=None, reasons=["h2_high/h2-batt-01.h2"]),
                OutputView(id="fan-1", role="exhaust_fan", on=False, confirmed=False, failed=True,
                           error="read-back mismatch", blocked_by="door-open", reasons=[]),
            ],
            devices_online=1,
            devices_total=2,
            uplink="not configured",
            flood=health.get("flood", False),
            uptime_s=3725.0,
        ),
    )


@dataclass
class FakeBackend:
    """Holds a PanelState and records the commands it is given (`refuse` makes it refuse)."""

    state: PanelState = field(default_factory=sample_state)
    commands: list[tuple[Any, ...]] = field(default_factory=list)
    refuse: str | None = None

    def panel_state(self) -> PanelState:
        return self.state

    def _check(self) -> None:
        if self.refuse is not None:
            raise CommandRefused(self.refuse)

    def acknowledge(self, alarms: list[AlarmRef], actor: str, note: str | None) -> int:
        self._check()
        self.commands.append(("acknowledge", list(alarms), actor, note))
        return len(alarms)

    def acknowledge_waiting(self, alarms: list[AlarmRef], actor: str,
                            note: str | None) -> Acknowledged:
        """Acknowledges those the state shows unacknowledged, skips the others."""
        self._check()
        shown = {(a.rule, a.subject): a for a in self.state.alarms}
        waiting, skipped = [], []
        for ref in alarms:
            a = shown.get((ref.rule, ref.subject))
            if a is not None and a.state.endswith("_unacknowledged"):
                waiting.append(ref)
            else:
                skipped.append(SkippedAlarm(rule=ref.rule, subject=ref.subject,
                                            title=a.title if a else None,
                                            state=a.state if a else None,
                                            acked_by=a.acked_by if a else None))
        self.commands.append(("acknowledge_waiting", list(waiting), actor, note))
        return Acknowledged(changed=len(waiting), skipped=skipped)

    def reset_alarm(self, alarm: AlarmRef, actor: str, note: str | None) -> int:
        self._check()
        self.commands.append(("reset", alarm, actor, note))
        return 1

    def shelve(self, alarm: AlarmRef, actor: str, minutes: float, reason: str) -> None:
        self._check()
        self.commands.append(("shelve", alarm, actor, minutes, reason))

    def unshelve(self, alarm: AlarmRef, actor: str) -> None:
        self._check()
        self.commands.append(("unshelve", alarm, actor))

    def suppress(self, scope: str, actor: str, minutes: float, reason: str) -> None:
        self._check()
        self.commands.append(("suppress", scope, actor, minutes, reason))

    def unsuppress(self, scope: str, actor: str) -> None:
        self._check()
        self.commands.append(("unsuppress", scope, actor))

    def reset_output(self, output: str, actor: str, note: str | None) -> str:
        self._check()
        self.commands.append(("reset_output", output, actor, note))
        return f"output {output} released"


def panel_settings(**over: Any) -> Panel:
    settings = Panel(bind="127.0.0.1", users=(PanelUser(name=USER, password_hash=HASH),), **over)
    # Panel.port must be 1..65535 in a config file; port 0 (any free port) only in tests.
    return replaced(settings, port=0)


@dataclass
class Running:
    server: PanelServer
    backend: FakeBackend
    clock: ManualClock
    url: str


async def _running(settings: Panel) -> AsyncIterator[Running]:
    backend = FakeBackend()
    clock = ManualClock()
    server = PanelServer(backend, settings, clock)
    port = await server.start()
    try:
        yield Running(server, backend, clock, f"http://127.0.0.1:{port}")
    finally:
        await server.stop()


@pytest.fixture
async def panel() -> AsyncIterator[Running]:
    async for running in _running(panel_settings()):
        yield running


@pytest.fixture
async def private_panel() -> AsyncIterator[Running]:
    async for running in _running(panel_settings(login_to_view=True)):
        yield running


@pytest.fixture
async def client(panel: Running) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client of the panel; `unsafe`: it keeps cookies for a bare IP (127.0.0.1)."""
    async with aiohttp.ClientSession(
        base_url=panel.url, cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as session:
        yield session
