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
from gateway.field.bus_loop import BusLoop
from gateway.field.buses import build_bus_loops
from gateway.field.latest import LatestSamples
from gateway.field.sample import Sample
from gateway.panel.backend import CommandRefused
from gateway.panel.server import PanelServer
from gateway.panel.views import AlarmRef, AlarmView, PanelState, SuppressionView
from gateway.safety import SafetyCore
from gateway.status import health_view, room_views

log = logging.getLogger("roomwarden.daemon")

TICK = 1.0
"""The rules are evaluated at least this often (stale data, delays, expiries)."""
MIN_EVALUATION_SPACING = 0.05
"""…and at most this often, however many batches arrive (bounds the CPU on a large site)."""


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
        self.sinks = [self.latest.update, self.core.ingest, *(extra_sinks or [])]
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
        """Set once the panel listens and the loops run."""

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
        return events

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
        if self.panel is not None:
            self.panel_port = await self.panel.start()
            log.info("event=panel_listening bind=%s port=%d", cfg.panel.bind, self.panel_port)
        self.started.set()
        try:
            async with asyncio.TaskGroup() as group:
                for loop in self.bus_loops:
                    group.create_task(loop.run(), name=f"bus:{loop.bus_id}")
                group.create_task(self._evaluator(), name="evaluator")
        finally:
            if self.panel is not None:
                await self.panel.stop()
            self.core.close()

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
        health = health_view(self.loaded, self.bus_loops, self.core.planner, self.driver,
                             self.clock.monotonic() - self.started_mono,
                             flood=self.core.alarms.flood.active)
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
