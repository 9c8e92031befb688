"""What the ops views read from the running gateway: exactly these attributes, no more.

`gateway.daemon.Gateway` satisfies `MetricsSource`; the views read its attributes afresh at
every call (a reconfiguration replaces the bus loops, the safety core, the driver and the
uplink), and never write to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from gateway.actions.driver import OutputDriver
    from gateway.clock import Clock
    from gateway.config.loader import LoadedConfig
    from gateway.field.bus_loop import BusLoop
    from gateway.safety import SafetyCore
    from gateway.service.looplag import LoopLag
    from gateway.uplink.publisher import Uplink


@runtime_checkable
class MetricsSource(Protocol):
    @property
    def loaded(self) -> LoadedConfig:
        """The running config (gateway identity, buses and their timeouts, outputs)."""
        ...

    @property
    def clock(self) -> Clock: ...

    @property
    def bus_loops(self) -> Sequence[BusLoop]:
        """`stats` (cycles, overruns, requests, poll seconds, device health), `alive_mono`,
        `pollers` (their intervals), `bus_id`."""
        ...

    @property
    def core(self) -> SafetyCore:
        """`alarms.active()`, `alarms.flood`, `planner.state`, `wanted`."""
        ...

    @property
    def driver(self) -> OutputDriver:
        """`state`: per output commanded, confirmed, failures, writes, last_error."""
        ...

    @property
    def uplink(self) -> Uplink | None:
        """`status()`; None when the gateway has no uplink."""
        ...

    @property
    def evaluations(self) -> int:
        """Rounds of the safety core since start."""
        ...

    @property
    def evaluation_seconds_last(self) -> float: ...

    def evaluator_lag(self) -> float:
        """Seconds a round of the rules has been owed and not completed (gateway.evaluator)."""
        ...

    @property
    def loop_lag(self) -> LoopLag:
        """How late the event loop wakes (gateway.service.looplag)."""
        ...

    @property
    def evaluation_seconds_total(self) -> float: ...

    @property
    def started_mono(self) -> float:
        """clock.monotonic() when the running config started."""
        ...

    @property
    def config_version(self) -> int:
        """Version of the running config (0: the installed file, never flashed)."""
        ...

    @property
    def config_sha256(self) -> str: ...

    @property
    def boot_problems(self) -> tuple[str, ...]:
        """What the boot had to work round (gateway.ops.config_health)."""
        ...

    @property
    def booted(self) -> tuple[int, str]:
        """(version, sha256) of the config the gateway booted."""
        ...
