"""Feedback wiring of the simulated site: an output's feedback point follows its coil.

A config output with `feedback: {device, point, expect}` gets, as the feedback point's default
signal, a `Follower` of the output's coil: the airflow switch closes `lag` seconds after the
fan's contactor is energised and opens `lag` seconds after it drops — a healthy fan. A drill
or a test breaks it by setting the feedback point to a constant (airflow stays open: the fan
does not run; stays closed: it runs without a command) and mends it with `release`.
"""

from __future__ import annotations

from gateway.clock import Clock
from gateway.config.loader import LoadedConfig
from gateway.sim.signals import SignalTable, Value

FEEDBACK_LAG = 2.0
"""Seconds the simulated feedback takes to follow its coil (a fan's run-up)."""


class Follower:
    """`expect` while the source point equals `on_value` (after `lag`), else `not expect`."""

    __slots__ = (
        "clock",
        "expect",
        "lag",
        "on_value",
        "pending",
        "shown",
        "since",
        "source",
        "table",
    )

    def __init__(self, table: SignalTable, clock: Clock, source: str, on_value: bool,
                 expect: bool, lag: float = FEEDBACK_LAG) -> None:
        self.table, self.clock, self.source = table, clock, source
        self.on_value, self.expect, self.lag = on_value, expect, lag
        self.shown = False
        """Whether the output is shown running."""
        self.pending: bool | None = None
        self.since = 0.0

    def at(self, t: float) -> Value:
        running = bool(self.table.value(self.source)) == self.on_value
        now = self.clock.monotonic()
        if running == self.shown:
            self.pending = None
        elif self.pending is not running:
            self.pending, self.since = running, now
        if self.pending is not None and now - self.since >= self.lag:
            self.shown, self.pending = running, None
        return self.expect if self.shown else not self.expect


def wire_feedback(table: SignalTable, loaded: LoadedConfig, lag: float = FEEDBACK_LAG) -> None:
    """Make every output's feedback point follow its coil (points the table knows)."""
    for output in loaded.config.outputs:
        feedback = output.feedback
        if feedback is None:
            continue
        point = f"{feedback.device}.{feedback.point}"
        coil = f"{output.device}.{output.point}"
        if point in table and coil in table:
            table.define(point, Follower(table, table.clock, coil, output.on_value,
                                         feedback.expect, lag))
