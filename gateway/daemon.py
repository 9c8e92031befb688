"""The composition root: config → bus loops → samples → safety core → output coils, + panel.

Samples flow one way: each bus loop hands its batches to the latest-value store and the rule
engine. The evaluator runs the safety core as soon as new samples arrive (at most every
`MIN_EVALUATION_SPACING`, and at least every `TICK`), and the output driver writes the coils
the core wants. The panel reads snapshots and sends operator commands, which re-plan the
outputs at once (an acknowledge silences the siren without waiting for the next tick).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from gateway.actions.driver import OutputDriver
from gateway.alarms.events import AlarmCommandError, AlarmEvent
from gateway.alarms.lifecycle import AlarmKey
from gateway.clock import Clock, SystemClock
from gateway.config.loader import LoadedConfig
from gateway.field.bus_loop import ONLINE_POINT, BusLoop
from gateway.field.buses import build_bus_loops
from gateway.field.latest import LatestSamples
from gateway.field.points import bind_points
from gateway.field.sample import Sample
from gateway.panel.backend import CommandRefused
from gateway.panel.server import PanelServer
from gateway.panel.views import AlarmRef, AlarmView, PanelState, SuppressionView
from gateway.safety import SafetyCore
from gateway.status import health_view, room_views
from gateway.uplink.contract import PointMeta
from gateway.uplink.publisher import Uplink

log = logging.getLogger("roomwarden.daemon")

TICK = 1.0
"""The rules are evaluated at least this often (stale data, delays, expiries)."""
MIN_EVALUATION_SPACING = 0.05
"""…and at most this often, however many batches arrive (bounds the CPU on a large site)."""


def catalog_points(loaded: LoadedConfig) -> dict[str, PointMeta]:
    """What the central side needs to tag every point this gateway reports."""
    points: dict[str, PointMeta] = {}
    for device in loaded.config.devices:
        if not device.enabled:
            continue
        for point in bind_points(device, loaded.profile_of(device)):
            points[point.id] = PointMeta(device=device.id, room=device.room,
                                         quantity=point.quantity, unit=point.unit)
            for flag in point.flags:
                points[flag.id] = PointMeta(device=device.id, room=device.room,
                                            quantity=flag.quantity)
        points[f"{device.id}.{ONLINE_POINT}"] = PointMeta(device=device.id, room=device.room,
                                                          quantity="device_online")
    return points


def default_state_dir() -> Path:
    """systemd's StateDirectory, else /var/lib/roomwarden if writable, else ./var."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    system = Path("/var/lib/roomwarden")
    if system.is_dir() and os.access(system, os.W_OK):
        return system
    return Path("var")


class Gateway:
    def __init__(self, loaded: LoadedConfig, *, state_dir: Path | None = None,
                 clock: Clock | None = None, rules_dir: Path | None = None,
                 extra_sinks: list[Callable[[list[Sample]], None]] | None = None,
                 panel_port: int | None = None) -> None:
        self.loaded = loaded
        self.clock = clock or SystemClock()
        self.state_dir = state_dir or default_state_dir()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.latest = LatestSamples()
        self.core = SafetyCore(loaded, self.clock, self.state_dir / "alarms.sqlite",
                               rules_dir=rules_dir)
        self.uplink = (Uplink(loaded.config.uplink, loaded.config.gateway.site,
                              loaded.config.gateway.id, self.state_dir, self.clock,
                              catalog_points(loaded))
                       if loaded.config.uplink is not None else None)
        self.sinks = [self.latest.update, self.core.ingest, *(extra_sinks or [])]
        if self.uplink is not None:
            self.sinks.append(self.uplink.on_samples)
        self.bus_loops: list[BusLoop] = build_bus_loops(loaded, self._on_samples, self.clock)
        self.driver = OutputDriver(loaded, self.bus_loops, self.latest, self.clock)
        settings = loaded.config.panel
        if panel_port is not None:  # tests and the demo pick a free port (0)
            settings = settings.model_copy(update={"port": panel_port})
        self.panel = PanelServer(self, settings, self.clock) if settings.enabled else None
        self.panel_port: int | None = None
        self.started_mono = self.clock.monotonic()
        self.evaluations = 0
        self._changed: asyncio.Event | None = None
        self.started = asyncio.Event()
        """Set once the loops run."""
        self.panel_ready = asyncio.Event()
        """Set once the panel listens (`panel_port`)."""

    # --- the data path -------------------------------------------------------------------

    def _on_samples(self, batch: list[Sample]) -> None:
        for sink in self.sinks:
            sink(batch)
        if self._changed is not None:
            self._changed.set()

    def evaluate_once(self) -> list[AlarmEvent]:
        """One round of the safety core, then drive the outputs it wants."""
        failed = {o: s.last_error for o, s in self.driver.state.items()}
        events = self.core.step(self.core.output_failures(failed, self.clock.now_ns()))
        self.evaluations += 1
        for event in events:
            log.info("event=alarm_%s rule=%s subject=%s state=%s previous=%s severity=%s "
                     "value=%r actor=%s", event.kind, event.rule, event.subject, event.state,
                     event.previous_state, event.severity, event.value, event.actor)
        self.driver.apply(self.core.wanted)
        self._hand_on(events)
        return events

    def _hand_on(self, events: list[AlarmEvent]) -> None:
        """Alarm events and the new active set to the uplink (never waits on the network)."""
        if self.uplink is not None and events:
            self.uplink.on_alarm_events(events)
            self.uplink.set_active_alarms(self.core.alarms.active(), seq=events[-1].seq)

    async def _evaluator(self) -> None:
        changed = self._changed
        assert changed is not None
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), TICK)
            changed.clear()
            began = loop.time()
            try:
                self.evaluate_once()
            except Exception:  # a rule bug must not stop the other rules for good
                log.exception("event=evaluation_failed")
            await asyncio.sleep(max(0.0, MIN_EVALUATION_SPACING - (loop.time() - began)))

    async def run(self) -> None:
        cfg = self.loaded.config
        self._changed = asyncio.Event()
        log.info("event=gateway_start gateway=%s site=%s buses=%d devices=%d rules=%d",
                 cfg.gateway.id, cfg.gateway.site, len(self.bus_loops), len(cfg.devices),
                 len(self.core.engine.bindings()))
        self.started.set()
        try:
            async with asyncio.TaskGroup() as group:
                if self.panel is not None:
                    group.create_task(self._serve_panel(), name="panel")
                for loop in self.bus_loops:
                    group.create_task(loop.run(), name=f"bus:{loop.bus_id}")
                group.create_task(self._evaluator(), name="evaluator")
                if self.uplink is not None:
                    group.create_task(self.uplink.run(), name="uplink")
        finally:
            if self.uplink is not None:
                await self.uplink.close()
            if self.panel is not None:
                await self.panel.stop()
            self.core.close()

    async def _serve_panel(self) -> None:
        """Start the panel; if its port is taken, keep trying — the safety functions run on
        regardless (a failing panel never delays an alarm)."""
        assert self.panel is not None
        bind = self.loaded.config.panel.bind
        delay = 1.0
        while True:
            try:
                self.panel_port = await self.panel.start()
            except OSError as exc:
                log.error("event=panel_start_failed bind=%s error=%r retry_in=%gs", bind, exc,
                          delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
                continue
            log.info("event=panel_listening bind=%s port=%d", bind, self.panel_port)
            self.panel_ready.set()
            return

    # --- the panel's backend ---------------------------------------------------------------

    def panel_state(self) -> PanelState:
        cfg = self.loaded.config
        now_ns = self.clock.now_ns()
        alarms = [AlarmView(
            rule=v.key.rule, subject=v.key.subject, title=v.title,
            severity=v.severity.value, level=v.severity.level, state=v.state.value,
            value=v.value, room=v.room, activated_ns=v.activated_ns, first_out=v.first_out,
            chattering=v.chattering, shelved_until_ns=v.shelf.until_ns if v.shelf else None,
            note=(f"acknowledged by {v.acked_by}" if v.acked_by else None))
            for v in self.core.alarms.active()]
        uplink, depth = "not configured", None
        if self.uplink is not None:
            status = self.uplink.status()
            uplink = "connected" if status.connected else (
                f"disconnected ({status.last_error})" if status.last_error else "disconnected")
            depth = status.outbox.depth
        health = health_view(self.loaded, self.bus_loops, self.core.planner, self.driver,
                             self.clock.monotonic() - self.started_mono,
                             flood=self.core.alarms.flood.active, uplink=uplink,
                             outbox_depth=depth)
        suppressions = [SuppressionView(scope=x.scope, actor=x.actor, reason=x.reason,
                                        since_ns=x.since_ns, until_ns=x.until_ns)
                        for x in self.core.alarms.suppressions()]
        return PanelState(gateway=cfg.gateway.id, site=cfg.gateway.site, name=cfg.gateway.name,
                          now_ns=now_ns, alarms=alarms,
                          rooms=room_views(self.loaded, self.bus_loops, self.latest, now_ns),
                          health=health, suppressions=suppressions)

    def _command(self, action: Callable[[], list[AlarmEvent]]) -> int:
        try:
            events = action()
        except AlarmCommandError as exc:
            raise CommandRefused(str(exc)) from exc
        self.core.plan_outputs()  # an acknowledge silences the siren now, not at the next tick
        self.driver.apply(self.core.wanted)
        self._hand_on(events)
        return sum(1 for e in events if e.kind == "alarm")

    def acknowledge(self, alarms: list[AlarmRef], actor: str, note: str | None) -> int:
        keys = [AlarmKey(a.rule, a.subject) for a in alarms]
        return self._command(lambda: self.core.alarms.acknowledge(keys, actor, note))

    def shelve(self, alarm: AlarmRef, actor: str, minutes: float, reason: str) -> None:
        until = self.clock.now_ns() + int(minutes * 60e9)
        self._command(lambda: self.core.alarms.shelve(AlarmKey(alarm.rule, alarm.subject),
                                                      actor, until, reason))

    def suppress(self, scope: str, actor: str, minutes: float, reason: str) -> None:
        until = self.clock.now_ns() + int(minutes * 60e9)
        self._command(lambda: self.core.alarms.suppress(scope, actor, reason, until))

    def unsuppress(self, scope: str, actor: str) -> None:
        self._command(lambda: self.core.alarms.unsuppress(scope, actor))
