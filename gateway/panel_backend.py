"""What the local panel reads and asks of a running gateway: its state snapshot (alarms with
their context, rooms, health, suppressions, a live drill's banner) and the operator commands
(through the one `OperatorCommands` service). A mixin of `gateway.daemon.Gateway`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from gateway.actions.driver import OutputDriver
from gateway.alarms.events import AlarmCommandError
from gateway.clock import Clock
from gateway.config.loaded import LoadedConfig
from gateway.field.bus_loop import BusLoop
from gateway.field.latest import LatestSamples
from gateway.operator.commands import OperatorCommands
from gateway.panel.describe import Describer
from gateway.safety import SafetyCore

if TYPE_CHECKING:  # the panel's models (pydantic) and its views of the gateway (gateway.status):
    # imported at the panel's first request (issue 15)
    from gateway.contract.wire import AlarmRef
    from gateway.evaluator import Evaluator
    from gateway.panel.views import Acknowledged, FloodView, PanelState, RoomView
    from gateway.uplink.publisher import Uplink

STARTING_MAX_S = 30.0
"""After this long the panel stops saying "starting" even if a device was never polled (a
bus that does not open: its devices' own alarms say so)."""


class PanelBackend:
    """The panel's side of `Gateway` (the attributes below are the gateway's)."""

    loaded: LoadedConfig
    clock: Clock
    core: SafetyCore
    driver: OutputDriver
    latest: LatestSamples
    bus_loops: list[BusLoop]
    uplink: Uplink | None
    commands: OperatorCommands
    started_mono: float
    config_version: int
    config_sha256: str
    _panel_describer: tuple[object, Describer] | None
    evaluations: int
    evaluator: Evaluator
    _panel_evaluated: bool = False

    def panel_state(self) -> PanelState:
        from gateway.panel.views import DrillBanner, PanelAlarm, PanelState, SuppressionView
        from gateway.status import health_view, room_views

        cfg = self.loaded.config
        now_ns = self.clock.now_ns()
        rooms = room_views(self.loaded, self.bus_loops, self.latest, now_ns)
        describe = self._describer(rooms)
        alarms = []
        for v in self.core.alarms.active():
            context = describe.context(v.key.rule, v.key.subject, v.room, v.title)
            alarms.append(PanelAlarm(
                rule=v.key.rule, subject=v.key.subject, title=v.title,
                severity=v.severity.value, level=v.severity.level, state=v.state.value,
                value=v.value, room=v.room, activated_ns=v.activated_ns, first_out=v.first_out,
                flood_first_out=v.flood_first_out, chattering=v.chattering,
                shelved_until_ns=v.shelf.until_ns if v.shelf else None,
                note=(f"acknowledged by {v.acked_by}" if v.acked_by else None),
                actions=list(v.actions), acked_by=v.acked_by, acked_ns=v.acked_ns,
                acked_note=v.acked_note, drill=v.drill,  # issue 12: drill alarms
                condition=v.condition or v.chattering,
                latched=(v.latching and v.state.demands_actions and not v.condition
                         and not v.chattering),
                hidden=v.hidden_drive,
                **dataclasses.asdict(context)))
        uplink, depth = "not configured", None
        if self.uplink is not None:
            status = self.uplink.status()
            from gateway.uplink.status import link_text

            uplink = link_text(status)  # `connected, not subscribed: …` warns too
            depth = status.outbox.depth
        health = health_view(self.loaded, self.bus_loops, self.core.planner, self.driver,
                             self.clock.monotonic() - self.started_mono,
                             flood=self.core.alarms.flood.active, uplink=uplink,
                             outbox_depth=depth, config_version=self.config_version,
                             config_sha256=self.config_sha256)
        planner = self.core.planner
        health = health.model_copy(update={"outputs": [  # held until an operator reset
            o.model_copy(update={"held": o.id in planner.state
                                 and planner.state[o.id].held_by_reset})
            for o in health.outputs]})
        suppressions = [SuppressionView(scope=x.scope, actor=x.actor, reason=x.reason,
                                        since_ns=x.since_ns, until_ns=x.until_ns)
                        for x in self.core.alarms.suppressions()]
        return PanelState(gateway=cfg.gateway.id, site=cfg.gateway.site, name=cfg.gateway.name,
                          now_ns=now_ns, timezone=cfg.gateway.timezone, alarms=alarms,
                          rooms=rooms, health=health, suppressions=suppressions,
                          drill=None if self.core.drill is None else DrillBanner(
                              **self.core.drill.banner_fields()),  # issue 12: live drills
                          flood=self._flood_view(describe), evaluated=self._evaluated())

    def _flood_view(self, describe: Describer) -> FloodView | None:
        """The flood on now and the alarm that started it, for the panel's banner (audit F7:
        the panel marked every room's first alarm alike and never said which one began it)."""
        flood = self.core.alarms.flood
        if not flood.active:
            return None
        from gateway.panel.views import FloodFirstOut, FloodView

        first = None
        if flood.first_out is not None:
            try:
                v = self.core.alarms.get(flood.first_out)
            except AlarmCommandError:  # not known to the manager now: named by its key
                first = FloodFirstOut(rule=flood.first_out.rule,
                                      subject=flood.first_out.subject)
            else:
                first = FloodFirstOut(
                    rule=v.key.rule, subject=v.key.subject, title=v.title, room=v.room,
                    room_name=describe.context(v.key.rule, v.key.subject, v.room,
                                               v.title).room_name,
                    activated_ns=v.activated_ns, state=v.state.value)
        return FloodView(since_ns=flood.since_ns, activations=flood.activations,
                         first_out=first)

    def _evaluated(self) -> bool:
        """Every device polled once (answering or not) and a round of the rules run since,
        or STARTING_MAX_S gone by: until then the page says the alarms are not known yet."""
        if self._panel_evaluated:
            return True
        polled = all(h.polls for loop in self.bus_loops
                     for h in loop.stats.device_health.values())
        self._panel_evaluated = (
            self.clock.monotonic() - self.started_mono >= STARTING_MAX_S
            or (polled and self.evaluations > 0 and self.evaluator.owed_since is None))
        return self._panel_evaluated

    def _describer(self, rooms: list[RoomView]) -> Describer:
        """The panel's alarm context for the running config and rules (issue 14), built once
        per rule engine."""
        engine = self.core.engine
        cached = self._panel_describer
        if cached is None or cached[0] is not engine:
            units = {f"{d.id}.{p.name}": p.unit for r in rooms for d in r.devices
                     for p in d.points}
            cached = (engine, Describer(self.loaded, engine.packs, engine.binding, units))
            self._panel_describer = cached
        return cached[1]

    def acknowledge(self, alarms: list[AlarmRef], actor: str, note: str | None) -> int:
        return self.commands.acknowledge(alarms, actor, note)

    def acknowledge_waiting(self, alarms: list[AlarmRef], actor: str,
                            note: str | None) -> Acknowledged:
        from gateway.panel.views import Acknowledged, SkippedAlarm

        done = self.commands.acknowledge_waiting(alarms, actor, note)
        return Acknowledged(changed=done.changed, skipped=[
            SkippedAlarm(rule=x.rule, subject=x.subject, title=x.title, state=x.state,
                         acked_by=x.acked_by) for x in done.skipped])

    def reset_alarm(self, alarm: AlarmRef, actor: str, note: str | None) -> int:
        return self.commands.reset(alarm, actor, note)

    def shelve(self, alarm: AlarmRef, actor: str, minutes: float, reason: str) -> None:
        self.commands.shelve(alarm, actor, self.commands.until(minutes), reason)

    def unshelve(self, alarm: AlarmRef, actor: str) -> None:
        self.commands.unshelve(alarm, actor)

    def suppress(self, scope: str, actor: str, minutes: float, reason: str) -> None:
        self.commands.suppress(scope, actor, self.commands.until(minutes), reason)

    def unsuppress(self, scope: str, actor: str) -> None:
        self.commands.unsuppress(scope, actor)

    def reset_output(self, output: str, actor: str, note: str | None) -> str:
        return self.commands.reset_output(output, actor, note).message

    def device_counts(self) -> tuple[int, int]:
        """(devices online, devices polled), for the uplink's GatewayState."""
        healths = [h for loop in self.bus_loops for h in loop.stats.device_health.values()]
        return sum(1 for h in healths if h.online), len(healths)
