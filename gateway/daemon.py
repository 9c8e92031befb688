"""The composition root: config → bus loops → samples → safety core → output coils, + panel.

Samples flow one way: each bus loop hands its batches to the latest-value store and the rule
engine. The evaluator (gateway.evaluator) runs a round of the safety core when samples arrive
or the core's next deadline comes, and sleeps otherwise; the output driver writes the coils
the core wants — at once: the round's alarm journal commit is written by the journal's writer
thread, and the events go to the uplink once it is (gateway.handoff). The panel reads snapshots
and sends operator commands, which re-plan the outputs at once (an acknowledge silences the
siren without waiting for a round).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.actions.driver import OutputDriver
from gateway.actions.release import CoilReleases
from gateway.alarmlog import AlarmLogLines
from gateway.alarms.events import AlarmEvent, EventKind
from gateway.clock import Clock, SystemClock
from gateway.config.loaded import LoadedConfig
from gateway.config.section import replaced
from gateway.evaluator import Evaluator
from gateway.fanout import SampleFanOut
from gateway.field.bus_loop import BusLoop
from gateway.field.buses import build_bus_loops
from gateway.field.catalog import catalog_points
from gateway.field.latest import LatestSamples
from gateway.field.sample import Sample
from gateway.handoff import AlarmHandOn
from gateway.operator.commands import OperatorCommands
from gateway.operator.inbox import CLOCK_SKEW_S, CommandInbox
from gateway.operator.replay import ReplayMemory
from gateway.panel.describe import Describer
from gateway.panel_backend import PanelBackend
from gateway.reconfigurable import Reconfiguring
from gateway.recorder.hook import Recording  # issue 12
from gateway.rules.warm import RateMemory  # issue 11
from gateway.safety import SafetyCore
from gateway.service.looplag import LoopLag
from gateway.service.watchdog import configure_stall_limits
from gateway.stopping import leave_outputs_safe

if TYPE_CHECKING:  # imported when configured (_make_panel, _make_uplink): h11, paho
    from gateway.flashing.trial import TrialHold  # (at the first apply's trial)
    from gateway.panel.front import PanelFront
    from gateway.uplink.publisher import Uplink

log = logging.getLogger("roomwarden.daemon")

def _sha256_of(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "0" * 64


def default_state_dir() -> Path:
    """systemd's StateDirectory, else /var/lib/roomwarden if writable, else ./var."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    system = Path("/var/lib/roomwarden")
    if system.is_dir() and os.access(system, os.W_OK):
        return system
    return Path("var")


class Gateway(PanelBackend, Reconfiguring):
    """The running gateway: wiring, the data path, life cycle, config trials (reconfiguring:
    gateway.reconfigurable, gateway.reconfigure; the panel's side: gateway.panel_backend)."""

    def __init__(self, loaded: LoadedConfig, *, state_dir: Path | None = None,
                 clock: Clock | None = None, rules_dir: Path | None = None,
                 extra_sinks: list[Callable[[list[Sample]], None]] | None = None,
                 panel_port: int | None = None, config_version: int = 0,
                 config_sha256: str | None = None) -> None:
        self.loaded = loaded
        self.clock = clock or SystemClock()
        self.state_dir = state_dir or default_state_dir()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.rules_dir = rules_dir
        self.journal_path = self.state_dir / "alarms.sqlite"
        self.config_version = config_version
        """Version of the running config (0: the installed file, never flashed)."""
        self.config_sha256 = config_sha256 or _sha256_of(loaded.path)
        self.booted = (config_version, self.config_sha256)
        """(version, sha256) of the config it booted (gateway.ops.config_health)."""
        self.boot_problems: tuple[str, ...] = ()
        """What the boot had to work round, set by the supervisor (/healthz `config`)."""
        self.latest = LatestSamples(self.clock)
        self.extra_sinks = list(extra_sinks or [])
        self.fanout = SampleFanOut()
        self.core = SafetyCore(loaded, self.clock, self.journal_path, rules_dir=rules_dir,
                               config_version=config_version)
        # --- issue 11: rate windows warm-started from what the last run saved ---------------
        self.rate_memory = RateMemory(self.state_dir, self.clock)
        self.rate_memory.restore(self.core.engine, loaded)
        self._rate_task: asyncio.Task[None] | None = None
        # --- issue 9: operator commands, the one service behind the panel and `cmd` ----------
        self._panel_describer: tuple[object, Describer] | None = None  # issue 14
        self.commands = OperatorCommands(lambda: self.core.alarms, self.clock,
                                         self._after_command,
                                         planner=lambda: self.core.planner)
        self.replay: ReplayMemory | None = None
        """Ids of signed commands seen: on `cmd` (opened with the first uplink) and of signed
        drill starts (at the start when a key may drill: a memory begun later refuses what
        was signed before it began)."""
        if any("drill" in key.may for key in loaded.config.operators.keys):
            self.replay_memory()
        self.handoff = AlarmHandOn(lambda: self.core.journal, lambda: self.uplink,
                                   lambda: self.core.alarms.active())
        self.uplink = self._make_uplink(loaded)
        self.handoff.resend_unsent()
        self.loop_lag = LoopLag()
        """How late the event loop wakes (measured by the service's watchdog feeder)."""
        self.bus_loops: list[BusLoop] = build_bus_loops(loaded, self._on_samples, self.clock)
        configure_stall_limits(loaded, self.bus_loops)
        self.driver = OutputDriver(loaded, self.bus_loops, self.latest, self.clock)
        # the interlocks' field view: this gateway's driver of the day (an apply replaces it)
        self.core.field.source = lambda outputs: self.driver.seen_on(outputs)
        self.releases = CoilReleases(self._release_note, self._keep_releases)  # of applies
        self._restore_releases()  # those a restart left pending: before the loops' first poll
        self.recording = Recording(self)  # issue 12: flight recorder and incidents
        self.panel_port_override = panel_port  # tests and the demo pick a free port (0)
        self.panel = self._make_panel(loaded)
        self.panel_port: int | None = None
        self.started_mono = self.clock.monotonic()
        self.evaluations = 0
        self.alarm_lines = AlarmLogLines(log, lambda: self.core.alarms.flood.active,
                                         self.clock.monotonic)
        self.evaluation_seconds_last = 0.0
        self.evaluation_seconds_total = 0.0
        self.reconfigurations = 0
        self.evaluator = Evaluator(self.clock, self.evaluate_once,
                                   lambda: self.core.next_deadline())
        self._stop_requested = asyncio.Event()
        """Set by `request_stop` — also before `run` got going (a SIGTERM during start-up)."""
        self._group: asyncio.TaskGroup | None = None
        self._loop_tasks: list[asyncio.Task[None]] = []
        self._evaluator_task: asyncio.Task[None] | None = None
        self._uplink_task: asyncio.Task[None] | None = None
        self._panel_task: asyncio.Task[None] | None = None
        self._reconfigure_lock = asyncio.Lock()
        self._replaced_core: SafetyCore | None = None
        """The core the last reconfigure replaced (closed): a rollback's earlier state."""
        self.on_config_set: Callable[[bytes], None] | None = None
        """Set by the config applier: a signed config arrived on `config/set`."""
        self.trial: TrialHold | None = None  # issue 9
        """While a config is on trial (the applier's health check): its trouble alarms wait."""
        self.started = asyncio.Event()
        """Set once the loops run."""
        self.panel_ready = asyncio.Event()
        """Set once the panel listens (`panel_port`)."""

    def _make_uplink(self, loaded: LoadedConfig) -> Uplink | None:
        cfg = loaded.config
        if cfg.uplink is None:
            return None
        from gateway.uplink.publisher import Uplink

        uplink = Uplink(cfg.uplink, cfg.gateway.site, cfg.gateway.id, self.state_dir,
                        self.clock, catalog_points(loaded), devices=self.device_counts,
                        inbox=self._command_inbox(loaded), on_config_set=self._config_set)
        uplink.set_config_identity(self.config_version, self.config_sha256)
        return uplink

    def replay_memory(self) -> ReplayMemory:
        """The durable memory of signed commands' ids (alarm commands, signed drill starts)."""
        if self.replay is None:
            self.replay = ReplayMemory(self.state_dir / "operator" / "commands.sqlite",
                                       self.clock, skew_ns=CLOCK_SKEW_S * 1_000_000_000)
        return self.replay

    def _command_inbox(self, loaded: LoadedConfig) -> CommandInbox:
        """What judges `cmd`: the running config's operator keys, the durable replay memory,
        and `self.commands` to carry a command out."""
        cfg = loaded.config
        replay = self.replay_memory()
        if cfg.operators.allow_unsigned:
            log.warning("event=unsigned_commands_allowed reason=%r", "operators.allow_unsigned "
                        "is set: anyone who can publish to cmd can acknowledge, shelve and "
                        "suppress alarms (lab use only)")
        return CommandInbox(cfg.gateway.site, cfg.gateway.id, self.clock,
                            root=cfg.uplink.root if cfg.uplink is not None else None,
                            carry_out=self.commands.carry_out,
                            policy=lambda: self.loaded.config.operators, memory=replay)

    def _make_panel(self, loaded: LoadedConfig) -> PanelFront | None:
        settings = loaded.config.panel
        if self.panel_port_override is not None:
            settings = replaced(settings, port=self.panel_port_override)  # no validator
        if not settings.enabled:
            return None
        from gateway.panel.front import PanelFront  # (its server: at the first connection)

        return PanelFront(self, settings, self.clock)

    def _config_set(self, payload: bytes) -> None:
        if self.on_config_set is None:
            log.warning("event=config_set_ignored reason=%s bytes=%d",
                        "this gateway has no config applier", len(payload))
            return
        self.on_config_set(payload)

    # --- the data path -------------------------------------------------------------------

    def _on_samples(self, batch: list[Sample]) -> None:
        """A poll's samples to each consumer on its own (gateway.fanout), then a round owed."""
        deliver = self.fanout.deliver
        deliver("latest", self.latest.update, batch)
        deliver("rules", self.core.ingest, batch)
        deliver("recorder", self.recording.on_samples, batch)  # issue 12
        for sink in self.extra_sinks:
            deliver(getattr(sink, "__qualname__", "sink"), sink, batch)
        if self.uplink is not None:
            deliver("uplink", self.uplink.on_samples, batch)
        self.evaluator.owe()

    def evaluate_once(self) -> list[AlarmEvent]:
        """One round of the safety core, then drive the outputs it wants."""
        began = time.perf_counter()
        failed = {o: s.last_error for o, s in self.driver.state.items()}
        events = self.core.step(self.core.output_failures(
            failed, self.clock.now_ns(), self.releases.pending.values()), trial=self.trial)
        self.evaluations += 1
        self.alarm_lines.write(events)
        self.driver.apply(self.core.wanted)
        self._hand_on(events)
        self.evaluation_seconds_last = time.perf_counter() - began
        self.evaluation_seconds_total += self.evaluation_seconds_last
        self.evaluator.round_done()
        return events

    def evaluator_lag(self) -> float:
        """Seconds a round of the rules has been owed and not done (0 while idle on time)."""
        return self.evaluator.lag()

    def _hand_on(self, events: list[AlarmEvent]) -> None:
        """Alarm events and the new active set to the uplink once journalled (gateway.handoff;
        never waits on the network nor the disk)."""
        self.handoff.hand_on(events)

    # --- life cycle ------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until `request_stop()` (a clean stop: outputs to their stop state, outbox
        committed, offline state published) or until cancelled (no output writes)."""
        cfg = self.loaded.config
        rules, bindings = self.core.engine.counts()  # not the list of (rule, subject): this
        # frame lives as long as the gateway, and so would a local (0.4 MiB at 2,000 points)
        log.info("event=gateway_start gateway=%s site=%s buses=%d devices=%d rules=%d "
                 "bindings=%d config_version=%d config_sha256=%s", cfg.gateway.id,
                 cfg.gateway.site, len(self.bus_loops), len(cfg.devices), rules, bindings,
                 self.config_version, self.config_sha256[:12])
        self.core.journal.start_writer(asyncio.get_running_loop(), self.handoff.release)
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                if self.panel is not None:
                    self._panel_task = group.create_task(self._serve_panel(), name="panel")
                self._start_loops()
                self._evaluator_task = group.create_task(self.evaluator.run(), name="evaluator")
                if self.uplink is not None:
                    self._uplink_task = group.create_task(self.uplink.run(), name="uplink")
                self._rate_task = group.create_task(  # issue 11: periodic rate-window saves
                    self.rate_memory.run(lambda: (self.core.engine, self.loaded)),
                    name="rate-windows")
                self.started.set()
                await self._stop_requested.wait()
                log.info("event=gateway_stopping")
                await self._leave_outputs_safe()
                for task in [*self._loop_tasks, self._panel_task, self._rate_task]:
                    if task is not None:
                        task.cancel()
                if self.uplink is not None:  # the last events, then `offline` and DISCONNECT
                    await self.handoff.settle()
                    await self.uplink.close()
        finally:
            self._group = None
            self.releases.close()  # no retries of released coils into stopped loops
            if self.uplink is not None:
                await self.uplink.close()
            if self.panel is not None:
                await self.panel.stop()
            self.recording.close()  # issue 12: open incidents saved as they stand
            self._save_rate_windows()  # issue 11
            self.core.close()
            log.info("event=gateway_stopped")

    def _save_rate_windows(self) -> None:
        """Issue 11: the rate windows as they stand, for the next start (never raises)."""
        try:
            self.rate_memory.save(self.core.engine, self.loaded)
        except Exception:
            log.exception("event=rate_windows_save_failed")

    def request_stop(self) -> None:
        """A clean stop (SIGTERM): see `run`."""
        self._stop_requested.set()

    def _start_loops(self) -> None:
        assert self._group is not None
        self._loop_tasks = [self._group.create_task(loop.run(), name=f"bus:{loop.bus_id}")
                            for loop in self.bus_loops]

    async def _leave_outputs_safe(self) -> None:
        """Stop evaluating, then leave the outputs safe (gateway.stopping)."""
        if self._evaluator_task is not None:
            self._evaluator_task.cancel()
            await asyncio.gather(self._evaluator_task, return_exceptions=True)
        await leave_outputs_safe(self.loaded, self.core, self.driver, self.clock, self._hand_on)

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

    # --- issue 9: config trials (gateway.flashing.trial; driven by gateway.flashing.apply) --

    def begin_trial(self) -> TrialHold:
        """From now until `end_trial`, the running config's own trouble alarms are held."""
        from gateway.flashing.trial import TrialHold

        self.trial = TrialHold(self.clock)
        return self.trial

    def end_trial(self, *, commit: bool, retire: bool = True) -> list[AlarmEvent]:
        """Commit: raise what was held, each at the time it was seen, re-plan the outputs,
        journal and send the events. Rollback (`commit` false): drop what was held. Either
        way the alarms the config that now runs no longer has return to normal
        (`SafetyCore.retire_unbound`: on commit, those of the rules and subjects it dropped;
        after a rollback, those only the candidate had) — unless `retire` is false (an apply
        that broke off, e.g. the service stopping: the next start boots the last-known-good,
        which may have them)."""
        trial, self.trial = self.trial, None
        if trial is None:
            return []
        events: list[AlarmEvent] = []
        if commit:
            events = trial.release(self.core.alarms)
            if events:
                log.info("event=trial_alarms_raised count=%d alarms=%s", len(events),
                         ",".join(f"{e.rule}@{e.subject}" for e in events[:20]))
        elif dropped := trial.discard():
            log.info("event=trial_alarms_dropped count=%d alarms=%s", len(dropped),
                     ",".join(str(k) for k in dropped[:20]))
        if retire:
            events += self.core.retire_unbound()
        if not commit and not events:
            return []
        self.core.plan_outputs()
        self.driver.apply(self.core.wanted)
        self._hand_on(events)
        return events

    def system_event(self, kind: EventKind, rule: str, subject: str,
                     note: str) -> list[AlarmEvent]:
        """Journal a system event (e.g. a config rolled back) and send it uplink."""
        events = self.core.alarms.system_event(kind, rule, subject, note)
        log.info("event=system_event kind=%s rule=%s subject=%s note=%r", kind, rule, subject,
                 note)
        self._hand_on(events)
        return events

    def _after_command(self, events: list[AlarmEvent]) -> None:
        """After an operator command: re-plan the outputs now (an acknowledge silences the
        siren at once, not at the next tick) and hand the events on."""
        self.core.plan_outputs()
        self.driver.apply(self.core.wanted)
        self._hand_on([*events, *self.core.take_output_events()])
        self.evaluator.reschedule()  # a shelve or suppression may end before the next deadline
