"""Drill files (`edge_rules/drills/*.yaml`): a scripted scenario on a simulated site.

    drill: h2_buildup
    title: Hydrogen builds up in the lead-acid battery room; the exhaust fan starts
    site: ../../firmware_configs/telecom_equipment_room.yaml   # relative to this file
    duration: 15m
    steps:
      - at: 1m
        set: {h2-batt-01.h2: {kind: ramp, start: 1, end: 40, duration: 600}}  # seconds
      - at: 9m
        acknowledge: all                  # the operator acknowledges every alarm
    expect:                               # each must become active inside its window
      - {alarm: explosion.h2_warning, subject: h2-batt-01.h2, after: 198.5s, within: 10s}
      - {output: fan-batt-3f, turns: on, after: 429.2s, within: 6s}
    forbid: ["fire.*", "power.*"]         # rules (fnmatch) that must never become active
    allow: ["explosion.h2_warning@*"]      # may fire, not required (rule or rule@subject)

`after` is when the hazard starts (the drill author computes it from the script); `within`
is the latency allowed after it. An alarm becoming active before `after` is a false alarm.

A live drill (`roomwarden drill --live`, gateway.drills.live) names the `room` it plays in on
the running gateway; `site` is then optional (give it to also run the drill offline), `set`
and `release` act on the drill's overlay of that room's rule inputs, `duration` is when it ends
by itself, and what only a simulator can do (`fault`, `stick`, `writes`) is refused
(`live_problems`). The whole format: docs/drills.md.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from gateway.alarms.types import Severity
from gateway.config.duration import Duration
from gateway.config.profile import Strict
from gateway.sim.faults import Fault
from gateway.sim.signals import Signal, parse_signal


class FaultStep(Fault):
    device: str


class Stick(Strict):
    """A relay whose contacts no longer follow its coil writes (welded, or a dead coil)."""

    point: str
    """The coil point, `device.point`."""
    state: bool | None
    """The state it stays in whatever is written; null mends it."""


class Step(Strict):
    at: Duration
    set: dict[str, Signal] | None = None
    """Point id → signal (a bare value means a constant)."""
    fault: FaultStep | None = None
    release: list[str] | None = None
    """Points that go back to their default signal."""
    acknowledge: Literal["all"] | list[str] | None = None
    """`all`, or alarm rule ids to acknowledge (actor `drill`)."""
    stick: Stick | None = None

    @field_validator("set", mode="before")
    @classmethod
    def _bare_values(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: parse_signal(v) if isinstance(v, bool | int | float | str) else v
                    for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _one_thing(self) -> Step:
        done = [n for n in ("set", "fault", "release", "acknowledge", "stick")
                if getattr(self, n) is not None]
        if len(done) != 1:
            raise ValueError("a step does exactly one of: set, fault, release, acknowledge, "
                             "stick")
        return self


class ExpectAlarm(Strict):
    alarm: str
    """Full rule id, e.g. `explosion.h2_alarm`."""
    subject: str | None = None
    """The alarm's subject (point, device or room id); any subject if left out."""
    after: Duration
    within: Duration
    severity: Severity | None = None
    """The severity it must have when it becomes active (an escalation makes it critical)."""


class ExpectOutput(Strict):
    output: str
    turns: bool
    """`turns: on` or `turns: off` (YAML reads on/off as booleans)."""
    after: Duration
    within: Duration


class ExpectWrites(Strict):
    """At most this many writes of a coil reach the simulator within the window (a stuck
    relay is written once per back-off step, not once per poll)."""

    writes: str
    """The coil point, `device.point`."""
    at_most: Annotated[int, Field(ge=0)]
    after: Duration
    within: Duration


MAX_LIVE_DURATION = 4 * 3600.0
"""A live drill ends by itself after its `duration`, which may not exceed this."""


class Drill(Strict):
    drill: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    site: str | None = None
    """The site config (relative to the drill file) an offline run simulates; a live drill
    runs on the gateway's own config and may leave it out."""
    room: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    """The room a live drill plays in: its rule inputs get the drill's values."""
    duration: Duration
    tick: Duration = 1.0
    """How often the rules are evaluated (the daemon evaluates at least this often)."""
    steps: tuple[Step, ...] = ()
    expect: tuple[ExpectAlarm | ExpectOutput | ExpectWrites, ...] = ()
    forbid: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    """Alarms that may fire without being required (fnmatch on `rule` or `rule@subject`),
    e.g. every sensor of a room that warms as a whole; they are exempt from `forbid`."""
    seed: int = 0

    @model_validator(mode="after")
    def _inside(self) -> Drill:
        for index, step in enumerate(self.steps):
            if step.at > self.duration:
                raise ValueError(f"steps[{index}] at {step.at:g}s is after the drill's end")
        for index, item in enumerate(self.expect):
            if item.after + item.within > self.duration:
                raise ValueError(f"expect[{index}] ends after the drill's end")
        return self


def live_problems(drill: Drill) -> list[str]:
    """Why `drill` cannot run live on a gateway ([] when it can)."""
    problems = []
    if drill.room is None:
        problems.append("a live drill names its `room`")
    if drill.duration > MAX_LIVE_DURATION:
        problems.append(f"duration {drill.duration:g} s is longer than a live drill may run "
                        f"({MAX_LIVE_DURATION:g} s)")
    for index, step in enumerate(drill.steps):
        if step.fault is not None or step.stick is not None:
            problems.append(f"steps[{index}]: `fault` and `stick` need a simulator; a live "
                            "drill can only `set`, `release` and `acknowledge`")
    for index, item in enumerate(drill.expect):
        if isinstance(item, ExpectWrites):
            problems.append(f"expect[{index}]: `writes` counts a simulator's coil writes; a "
                            "live drill cannot")
    return problems
