"""`roomwarden run`: the gateway as a service.

Boots the config (gateway.booting: the last-known-good one if a config was ever flashed, else
the installed file; after a crash in the middle of an apply, the last-known-good; the kept copy
of the installed file's if the gateway cannot be made from it), runs the `Gateway`, and
around it: the config applier (`config/set`, the control socket, SIGHUP), the control socket,
the signals (SIGTERM/SIGINT: a clean stop; SIGHUP: reload the installed file), and systemd's
notify protocol (READY, STATUS, the watchdog fed only while the poll loops are alive, the rules
evaluated and the event loop not blocked).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.booting import boot_config, kept_instead
from gateway.config.loaded import LoadedConfig
from gateway.control import ControlServer, default_socket_path
from gateway.daemon import Gateway
from gateway.first_import import FirstImport
from gateway.flashing.keep import ConfigKeeper
from gateway.flashing.store import ConfigStore
from gateway.heap import READ_SIZE, map_large_blocks, socket_read_size
from gateway.loop_errors import install as install_loop_errors
from gateway.loop_errors import log_failure
from gateway.ops.connections import RateLimitFilter
from gateway.recorder.remote import answer as answer_incidents  # issue 12
from gateway.service.notify import Notifier
from gateway.service.watchdog import feed_watchdog

if TYPE_CHECKING:  # made at the first apply, and at the first drill request (issue 15)
    from gateway.contract.configmsg import ConfigStatus
    from gateway.control import Progress
    from gateway.drills.live_control import LiveDrills
    from gateway.flashing.apply import ConfigApplier

log = logging.getLogger("roomwarden.service")
APPLIER_MODULE = "gateway.flashing.apply"
DRILLS_MODULES = ("gateway.drills.live_control", "gateway.drills.live")
"""Live drills' control and their engine (a drill file's models, the runner: ~70 ms here)."""

STATUS_EVERY = 10.0
YOUNG_GC_THRESHOLD = 10_000
"""The cyclic collector's young-generation threshold while the service runs (Python's is 700).
Every poll and round allocates and frees thousands of objects (samples, evaluations) that
reference counting frees; with 700 a 2,000-point site ran ~5 young collections a second, each
walking the survivors: a quarter of the rounds' CPU (docs/performance.md). Cycles are still
collected, after 10,000 net allocations instead of 700."""
EVALUATOR_STALL = 10.0
"""The watchdog is withheld if a round of the rules has been owed this long without completing
(gateway.evaluator `lag`); rounds that each complete but block the event loop for seconds are
caught by the loop-lag probe instead (gateway.service.looplag)."""


class Service:
    """One running gateway with its config applier, control socket, signals and notify."""

    def __init__(self, factory_path: Path, *, state_dir: Path,
                 control_path: Path | None = None, panel_port: int | None = None,
                 rules_dir: Path | None = None, notifier: Notifier | None = None) -> None:
        self.factory_path = factory_path
        self.state_dir = state_dir
        self.store = ConfigStore(state_dir / "config")
        loaded, self.boot = boot_config(self.store, factory_path, rules_dir)
        self.gateway = self._booted_gateway(loaded, rules_dir, panel_port)
        self.gateway.boot_problems = self.boot.problems
        self.keeper = ConfigKeeper(self.gateway, self.store, factory_path=factory_path)
        self._applier: ConfigApplier | None = None
        self._applier_modules = FirstImport(APPLIER_MODULE)
        self.gateway.on_config_set = self._config_set
        self._drills: LiveDrills | None = None  # issue 12: live drills
        self._drill_modules = FirstImport(*DRILLS_MODULES)
        self._status_modules = FirstImport("gateway.ops.status_report")  # (9 ms here)
        self.loop_errors: RateLimitFilter | None = None
        """asyncio's log of unawaited exceptions, rate-limited (gateway.loop_errors), once
        running."""
        self.control = ControlServer(
            control_path or default_socket_path(state_dir), status=self._status_now,
            apply_text=self._apply_text, apply_envelope=self._apply_envelope,
            reload=self._reload_now,
            incidents=lambda request, send: answer_incidents(  # issue 12
                self.gateway.recording.store, request, send),
            drills=self._drill)  # issue 12: live drills
        self.notifier = notifier or Notifier.from_env()
        self._tasks: set[asyncio.Task[Any]] = set()

    def _booted_gateway(self, loaded: LoadedConfig, rules_dir: Path | None,
                        panel_port: int | None) -> Gateway:
        """The gateway of the booted config — or, if it cannot be made from the installed
        file although the file passed its check (a value the check lets through, a file in
        the way of one it opens), of the kept copy (`kept_instead`)."""
        try:
            return self._gateway(loaded, rules_dir, panel_port)
        except Exception as exc:  # whatever it is: logged with its traceback, never a loop
            reason = f"{type(exc).__name__}: {exc}"
            log.error("event=gateway_not_made path=%s error=%s", self.boot.path, reason,
                      exc_info=True)
        # out of the `except`: the traceback, and the half-made gateway it holds (the alarm
        # journal, the outbox), are let go before the kept copy's are opened
        gc.collect()
        loaded, self.boot = kept_instead(self.store, self.factory_path, rules_dir, self.boot,
                                         reason)
        return self._gateway(loaded, rules_dir, panel_port)

    def _gateway(self, loaded: LoadedConfig, rules_dir: Path | None,
                 panel_port: int | None) -> Gateway:
        return Gateway(loaded, state_dir=self.state_dir, rules_dir=rules_dir,
                       panel_port=panel_port, config_version=self.boot.meta.version,
                       config_sha256=self.boot.meta.sha256)

    @property
    def applier(self) -> ConfigApplier:
        """The config applier, made at the first apply, reload or `config/set` (issue 15: a
        gateway at rest holds none of its modules — the pipeline, envelopes, the health check,
        the contract's config messages: pydantic). The entry points below import them in a
        worker thread first (`ready_applier`: 25-65 ms here, more on a Pi, that the event loop
        does not wait for); the state it needs from the start is the keeper's
        (gateway.flashing.keep)."""
        if self._applier is None:
            from gateway.flashing.apply import ConfigApplier

            self._applier = ConfigApplier(self.keeper, base_dir=self.factory_path.parent,
                                          publish=self._publish_status)
        return self._applier

    @property
    def drills(self) -> LiveDrills:
        """Issue 12: live drills, made at the first drill request (their modules imported in a
        worker thread first by `_drill`: about 70 ms here; issue 15)."""
        if self._drills is None:
            from gateway.drills.live_control import LiveDrills

            self._drills = LiveDrills(self.gateway)
        return self._drills

    async def ready_applier(self) -> ConfigApplier:
        """The applier, its modules imported off the event loop (gateway.first_import)."""
        await self._applier_modules.ready()
        return self.applier

    def _config_set(self, raw: bytes) -> None:
        """A `config/set` payload, on the loop: applied in the background, in arrival order."""
        if self._applier is not None:
            self._applier.submit_envelope(raw)
            return

        async def first() -> None:
            (await self.ready_applier()).submit_envelope(raw)

        self._spawn(first(), "config-apply")

    async def _apply_text(self, text: str, author: str, progress: Progress | None
                          ) -> ConfigStatus:
        return await (await self.ready_applier()).apply_text(
            text, author=author, source="local", progress=progress)

    async def _apply_envelope(self, raw: bytes, progress: Progress | None) -> ConfigStatus:
        return await (await self.ready_applier()).apply_envelope(
            raw, source="local", progress=progress)

    async def _reload_now(self) -> ConfigStatus | None:
        return await (await self.ready_applier()).reload()

    async def _drill(self, request: dict[str, Any]) -> dict[str, Any]:
        await self._drill_modules.ready()
        return await self.drills.answer(request)

    def _publish_status(self, status: ConfigStatus) -> None:
        uplink = self.gateway.uplink
        if uplink is not None:
            uplink.publish_config_status(status)

    def status(self) -> dict[str, Any]:
        from gateway.ops.status_report import build_status_report

        return build_status_report(self.gateway).model_dump(mode="json")

    async def _status_now(self) -> dict[str, Any]:
        """`status()` for `roomwarden status`, its report's module imported off the loop."""
        await self._status_modules.ready()
        return self.status()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(log_failure)  # never silent (a SIGHUP's reload: the audit)

    def _evaluator_alive(self) -> Callable[[], str | None]:
        def check() -> str | None:  # a round owed and not done for long (gateway.evaluator)
            stalled = self.gateway.evaluator_lag()
            return f"rules not evaluated for {stalled:.0f}s" if stalled > EVALUATOR_STALL else None
        return check

    async def _reload(self) -> None:
        self.notifier.reloading()
        try:
            await self._reload_now()
        finally:
            self.notifier.ready(self._status_line())

    def _status_line(self) -> str:
        gw = self.gateway
        online = sum(1 for loop in gw.bus_loops for h in loop.stats.device_health.values()
                     if h.online)
        total = sum(len(loop.stats.device_health) for loop in gw.bus_loops)
        alarms = len(gw.core.alarms.active())
        uplink = ""
        if gw.uplink is not None:
            st = gw.uplink.status()
            uplink = (f", uplink {'up' if st.connected else 'down'}, outbox "
                      f"{st.outbox.depth}")
        return (f"config v{gw.config_version}, {online}/{total} devices online, "
                f"{alarms} alarms active{uplink}")

    async def _status_updates(self) -> None:
        await self.gateway.started.wait()
        self.notifier.ready(self._status_line())
        while True:
            await asyncio.sleep(STATUS_EVERY)
            self.notifier.status(self._status_line())

    async def run(self, duration: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.loop_errors = install_loop_errors()
        thresholds = gc.get_threshold()
        gc.set_threshold(YOUNG_GC_THRESHOLD, *thresholds[1:])
        read_size = socket_read_size(READ_SIZE)  # the C heap's holes (gateway.heap)
        map_large_blocks()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP,
                                lambda: self._spawn(self._reload(), "reload"))
        await self.control.start()
        if self.boot.recovered:
            log.warning("event=config_apply_interrupted version=%d; the last-known-good "
                        "config is in force", self.boot.meta.version)
        try:
            run = asyncio.create_task(self.gateway.run(), name="gateway")
            self._spawn(self._status_updates(), "notify-status")
            self._spawn(feed_watchdog(self.notifier, lambda: self.gateway.bus_loops,
                                      self.gateway.clock, extra_checks=[self._evaluator_alive()],
                                      lag=self.gateway.loop_lag), "watchdog")
            if self.boot.recovered:
                self._spawn(self._report_recovery(), "recovery-report")
            self._spawn(self._keep_booted(), "keep-booted-config")
            if duration is not None:
                loop.call_later(duration, self.stop)
            await run
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.control.stop()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
            gc.set_threshold(*thresholds)
            socket_read_size(read_size)

    async def _keep_booted(self) -> None:
        """Once the booted config runs (loops started, the rules evaluated): the installed
        file's is kept as the last-known-good (a restart with a broken installed file boots
        it), and the profiles it runs on are kept beside it either way."""
        await self.gateway.started.wait()
        pause = 0.1
        while self.gateway.evaluations == 0:  # a counter, no event to wait on
            await asyncio.sleep(pause)
            pause = min(pause * 2, 10.0)  # a site whose rules never run: not 10 wake-ups a s
        if self.boot.meta.source == "factory":
            await self.keeper.keep_booted(self.boot.text, self.boot.meta.sha256)
        else:
            await self.keeper.keep_booted_profiles(self.boot.meta.sha256)

    async def _report_recovery(self) -> None:
        await self.gateway.started.wait()
        cfg = self.gateway.loaded.config.gateway
        lost = self.boot.interrupted
        # the status model is pydantic: imported only when a boot recovered (issue 15)
        from gateway.contract.configmsg import ConfigStatus

        status = ConfigStatus.model_validate({
            "site": cfg.site, "gateway": cfg.id,
            "id": lost.request_id if lost else None, "ts": time.time_ns(),
            "state": "rolled_back", "code": "interrupted",
            "version": lost.version if lost else None, "sha256": lost.sha256 if lost else None,
            "error": "the gateway stopped in the middle of applying this config; the "
                     "last-known-good config is in force",
            "active_version": self.gateway.config_version,
            "active_sha256": self.gateway.config_sha256})
        self._publish_status(status)

    def stop(self) -> None:
        log.info("event=stop_requested")
        self.notifier.stopping()
        self.gateway.request_stop()
