"""A site's local alarm outputs as config: an output (a writable coil of a relay module, with
the role rules ask for), its supervision feedback and write back-off, and interlocks.

Plain frozen dataclasses, without pydantic at import (gateway.config.section, issue 15):
pydantic validates them as fields of `GatewayConfig`, a running gateway uses them unpickled."""

from typing import Annotated, Literal

from gateway.config.duration import Duration
from gateway.config.names import Id, Name, PointKey
from gateway.config.section import Limits, defaults, section
from gateway.records import dataclass

OutputRole = Literal["siren", "strobe", "exhaust_fan", "alarm_panel", "hvac_stop",
                     "charge_inhibit", "other"]

PROTECTIVE_ROLES = frozenset({"exhaust_fan", "hvac_stop", "charge_inhibit"})
"""Roles that act on the hazard itself (ventilate, stop air handling, stop charging), as
against those that tell people (siren, strobe, alarm panel). A shelved or suppressed alarm
still drives an output of these roles while its condition is active (`Output.protective`)."""


# --- issue 11: supervised outputs and write back-off (gateway/actions/supervision.py) -------
@section
@dataclass(frozen=True, slots=True, kw_only=True)
class OutputFeedback:
    """What shows that an output really acts: a fan's airflow switch, a siren's current sense,
    a contactor's auxiliary contact — a boolean point of a device the gateway polls. Outputs
    may share one (two fans in one duct on one airflow switch): each is supervised by it, and
    `roomwarden check` warns, as a copy-paste slip looks the same."""

    device: Id
    """The device with the feedback input (an id from `devices`)."""
    point: PointKey
    """Its boolean point that is on while the output really acts."""
    expect: bool = True
    """The point's value while the output acts (False for a contact that opens)."""
    within: Duration = 30.0
    """How long the feedback may take to follow the command (fan run-up, contactor travel)."""


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class WriteBackoff:
    """How a failed write is retried: after `initial`, then × `multiplier`, at most `max`."""

    initial: Duration = 5.0
    """Wait before the first retry of a failed write."""
    multiplier: Annotated[float, Limits(ge=1.0, le=10.0)] = 2.0
    """Each further failure multiplies the wait by this."""
    max: Duration = 300.0
    """Longest wait between retries."""
# --- end issue 11 -----------------------------------------------------------------------------


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class Output:
    """A local alarm output: one writable coil (or register bit) of a relay module.

    Rules name output *roles* (`siren`, `exhaust_fan` …); an output serves the rooms listed
    (default: its device's room), so one rule pack drives every site's outputs."""

    id: Id
    """The output's id (panel, status, journal)."""
    role: OutputRole
    """What it does; rules ask for roles (`siren`, `strobe`, `exhaust_fan` …)."""
    device: Id
    """The relay module (an id from `devices`)."""
    point: Name
    """The module's writable coil point (`do1`)."""
    rooms: tuple[Id, ...] = ()
    """The rooms it serves (default: its device's room)."""
    on_value: bool = True
    """What the coil is written to switch the output on (False for normally-closed wiring)."""
    silence_on_ack: bool | None = None
    """Acknowledge switches it off while the alarm stays active (default: sirens only)."""
    latch_until_ack: bool = False
    """Stays on after the alarm clears until it is acknowledged."""
    restore_on_clear: bool = True
    """False: once a real alarm wanted it on, it stays on until an operator resets it (an
    interlock holds it off only while its blocker runs)."""
    min_on: Duration = 0.0
    """Shortest time the output stays on once switched on."""
    verify: bool = True
    """Read the coil back after each write; a mismatch counts as a failed write."""
    write_retries: Annotated[int, Limits(ge=0, le=10)] = 3
    """Retries after a write that got no valid reply, each its own turn on the bus (polls
    that are due go between them); none for a module known not to answer, nor after a
    read-back mismatch (a relay that does not follow is retried on the back-off schedule)."""
    backoff: WriteBackoff = defaults(WriteBackoff)
    """After a failed write (issue 11)."""
    feedback: OutputFeedback | None = None
    """Supervision (issue 11): commanded but no feedback within `within`, or feedback
    without a command, raises the output's own alarm."""
    protective: bool | None = None
    """An automatic protective function, not annunciation: a shelved or suppressed alarm
    still drives it while the alarm's condition is active (or it is latched active), since
    shelving and suppression hide an alarm from the operator, they do not disable the
    protection (ISA-18.2 / IEC 62682). Default: true for `exhaust_fan`, `hvac_stop` and
    `charge_inhibit`; false for `siren`, `strobe`, `alarm_panel` and `other` (mark your own
    `other` output that acts on the hazard true, e.g. a gas shut-off valve). An
    out-of-service alarm drives nothing, protective or not (its detector is known invalid).
    For a shelved or suppressed alarm the output follows its own options as if the alarm were
    acknowledged: one that silences on acknowledge stays off."""
    on_stop: Literal["off", "on", "hold"] | None = None
    """What the gateway leaves the output at when it stops (SIGTERM, `systemctl stop`):
    default `off` for sirens, strobes and the alarm panel (a planned stop does not leave a
    siren sounding), `hold` for the rest (a fan purging hydrogen keeps running)."""

    @property
    def silences_on_ack(self) -> bool:
        return self.silence_on_ack if self.silence_on_ack is not None else self.role == "siren"

    @property
    def is_protective(self) -> bool:
        """`protective`, or its role's default (`PROTECTIVE_ROLES`)."""
        return self.protective if self.protective is not None else \
            self.role in PROTECTIVE_ROLES

    @property
    def stop_state(self) -> Literal["off", "on", "hold"]:
        if self.on_stop is not None:
            return self.on_stop
        return "off" if self.role in ("siren", "strobe", "alarm_panel") else "hold"


@section
@dataclass(frozen=True, slots=True, kw_only=True)
class Interlock:
    """Never run `output` while `while_on` is on (e.g. no HVAC recirculation while the
    exhaust fan purges hydrogen; no exhaust fan while a clean-agent discharge holds its agent
    in the room). The blocked output is held off and the block is reported. `while_on` is on
    when it is wanted on, after its own interlocks (so the order of the list does not
    matter), or when the field shows it on although it is not wanted: its relay read back on
    after an off write (a welded contact), its module's poll of the coil shows it on, or its
    `feedback` shows it acting; the block then says so (`fan-1 (running in the field: read
    back on)`). A field that shows nothing does not block: `while_on`'s module offline, or
    not yet read (give a blocker whose running matters then a `feedback` on another device).
    A blocker switched off blocks until it is seen off. Locks that chain back to where they
    start (a cycle) are refused. An output held until reset is only suspended: it runs again
    when `while_on` goes off."""

    output: Id
    """The output held off (an id from `outputs`)."""
    while_on: Id
    """The output whose running blocks it (wanted on, or shown on in the field)."""
    reason: str | None = None
    """Shown on the panel and in status while the block holds."""
