"""The panel's JSON contract: what `GET /api/state` returns and the commands it accepts.

These models are the panel API's single source of truth; the README documents them and the
daemon fills them (`gateway.daemon.Gateway.panel_snapshot`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from gateway.contract.wire import MAX_SHELVE_S, AlarmRef
from gateway.field.sample import Value
from gateway.strict import StrictModel

MAX_MINUTES = MAX_SHELVE_S / 60
"""Longest shelve or suppression (the limit remote commands on `cmd` have too)."""


class View(StrictModel):
    """Base of the panel's models (the one strict base: unknown keys refused, immutable)."""


class PanelAlarm(View):
    """One alarm as the panel shows it (the alarm manager's own snapshot is
    `gateway.alarms.events.AlarmView`)."""

    rule: str
    subject: str
    title: str
    severity: Literal["critical", "major", "minor", "warning"]
    level: int
    state: str
    """normal, active_unacknowledged, active_acknowledged, returned_unacknowledged, shelved,
    suppressed, out_of_service"""
    value: Value
    room: str | None
    activated_ns: int | None
    first_out: bool = False
    """The first alarm of its room since the room was last clear (ISA-18.2 first-out)."""
    flood_first_out: bool = False
    """The alarm whose activation started the alarm flood on now (one alarm at most; False
    outside a flood): where the operator starts, as `PanelState.flood` names it."""
    chattering: bool = False
    shelved_until_ns: int | None = None
    note: str | None = None
    # issue 14: what a card needs to be read at 3 a.m. without the config at hand
    room_name: str | None = None
    device: str | None = None
    device_name: str | None = None
    location: str | None = None
    """The device's place in the room: `row B, rack 12`."""
    unit: str | None = None
    limit: str | None = None
    """The limit crossed (`≥ 25 %LEL`) or the condition in words (`2 devices with …`)."""
    response: str | None = None
    """What to do (the rule's `response:`, or the site's own text: gateway.rules.responses)."""
    flag_words: tuple[str, str] | None = None
    """What a true/false value means, off then on (`not answering`, `answering`)."""
    actions: list[str] = []
    """Output roles the alarm asks for (siren, strobe, exhaust_fan …)."""
    acked_by: str | None = None
    acked_ns: int | None = None
    acked_note: str | None = None
    drill: bool = False
    """Issue 12: a live drill's alarm (subject `drill:…`), shown marked DRILL."""
    condition: bool | None = None
    """The rule's condition now (None: not told): False on an alarm that stays in the list
    after it cleared — returned, waiting for its acknowledgement, or latched."""
    latched: bool = False
    """A latching alarm whose condition has cleared: it stays active (its outputs on) until
    a reset (`POST /api/alarms/reset`, an acknowledge)."""
    hidden: str | None = None
    """A shelved or suppressed alarm that still drives its protective outputs: `latched` (back
    unacknowledged when the overlay ends, reset only by an acknowledge then) or `active` (its
    condition is active); None otherwise (`AlarmView.hidden_drive`)."""


class DrillBanner(View):
    """Issue 12: the live drill running on this gateway (gateway.drills.live)."""

    drill: str
    title: str
    room: str
    mode: Literal["silent", "evacuation"]
    actor: str
    started_ns: int
    ends_ns: int


class FloodFirstOut(View):
    """The alarm that started the flood, named for the panel's flood banner (`title` and the
    rest None when the gateway no longer knows the alarm)."""

    rule: str
    subject: str
    title: str | None = None
    room: str | None = None
    room_name: str | None = None
    activated_ns: int | None = None
    """When it became active (None: it is back to normal)."""
    state: str | None = None


class FloodView(View):
    """An alarm flood on now (more than `alarms.flood_count` activations within
    `alarms.flood_window`): since when, and the alarm that started it."""

    since_ns: int | None
    activations: int
    """Activations within the flood window now."""
    first_out: FloodFirstOut | None = None


class PointView(View):
    name: str
    value: Value
    unit: str | None
    quantity: str | None
    quality: str
    age_s: float | None
    label: str | None = None
    """Enum label of a status code, when the profile names it."""


class DeviceView(View):
    id: str
    name: str | None
    bus: str
    online: bool | None
    last_error: str | None
    points: list[PointView]


class RoomView(View):
    id: str
    name: str | None
    type: str
    devices: list[DeviceView]


class BusView(View):
    id: str
    type: str
    devices_online: int
    devices_total: int
    polls: int
    overruns: int
    last_poll_ms: float


class OutputView(View):
    id: str
    role: str
    on: bool | None
    confirmed: bool | None
    failed: bool
    error: str | None
    blocked_by: str | None
    block_reason: str | None = None
    """The interlock's `reason` while it holds the output off."""
    reasons: list[str]
    rooms: list[str] = []
    """The rooms it serves (issue 14: a siren off while their alarms are acknowledged is
    shown as silenced)."""
    silence_on_ack: bool = False
    held: bool = False
    """Held on until an operator resets it (`restore_on_clear: false`): the panel offers a
    Reset to a logged-in user (`POST /api/outputs/reset`)."""


class HealthView(View):
    buses: list[BusView]
    outputs: list[OutputView]
    devices_online: int
    devices_total: int
    uplink: str
    """`not configured` until the uplink exists; later: connected, disconnected …"""
    outbox_depth: int | None = None
    flood: bool = False
    """An alarm flood is on (`PanelState.flood` says since when and which alarm started it)."""
    uptime_s: float
    config_version: int = 0
    """Version of the running config (0: the installed file, never flashed)."""
    config_sha256: str | None = None


class SuppressionView(View):
    scope: str
    """The room, device or rule whose alarms are suppressed."""
    actor: str
    reason: str
    since_ns: int
    until_ns: int


class PanelState(View):
    gateway: str
    site: str
    name: str | None
    now_ns: int
    timezone: str = "UTC"
    """The site's time zone (`gateway.timezone`): the panel shows absolute times in it."""
    alarms: list[PanelAlarm]
    rooms: list[RoomView]
    health: HealthView
    suppressions: list[SuppressionView] = []
    drill: DrillBanner | None = None
    """Issue 12: the live drill running now, for the panel's banner."""
    flood: FloodView | None = None
    """The alarm flood on now, for the panel's flood banner (None: no flood)."""
    evaluated: bool = True
    """False while the gateway is starting: its devices have not all been polled and
    evaluated yet, so the alarm list is not known to be complete."""


# --- commands (POST bodies) -------------------------------------------------------------------


# AlarmRef (rule, subject) is the wire contract's: the panel and `cmd` name alarms alike.


class AcknowledgeCommand(View):
    alarms: Annotated[list[AlarmRef], Field(min_length=1, max_length=1000)]
    note: Annotated[str, Field(max_length=500)] | None = None
    skip_acknowledged: bool = False
    """False: all or none (one that no longer waits refuses the whole command); True: those
    that still wait are acknowledged, the others listed in the answer's `skipped`."""


class SkippedAlarm(View):
    """An alarm an acknowledge with `skip_acknowledged` left alone: acknowledged meanwhile
    (`acked_by`), normal again, shelved … or no longer known (`state` None)."""

    rule: str
    subject: str
    title: str | None
    state: str | None
    acked_by: str | None


class Acknowledged(View):
    changed: int
    skipped: list[SkippedAlarm] = []


class AlarmCommand(View):
    """A command on one alarm: unshelve."""

    alarm: AlarmRef


class ResetAlarmCommand(View):
    """Reset a latched alarm whose condition has cleared (an acknowledge of it)."""

    alarm: AlarmRef
    note: Annotated[str, Field(max_length=500)] | None = None


class ShelveCommand(View):
    alarm: AlarmRef
    minutes: Annotated[float, Field(gt=0, le=MAX_MINUTES)]
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class SuppressCommand(View):
    scope: Annotated[str, Field(min_length=1, max_length=128)]
    """A device id, room id or rule id: e.g. a room during permitted hot work."""
    minutes: Annotated[float, Field(gt=0, le=MAX_MINUTES)]
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class UnsuppressCommand(View):
    scope: Annotated[str, Field(min_length=1, max_length=128)]


class ResetOutputCommand(View):
    """Release an output held on until an operator reset (`restore_on_clear: false`)."""

    output: Annotated[str, Field(min_length=1, max_length=64)]
    note: Annotated[str, Field(max_length=500)] | None = None


class LoginCommand(View):
    user: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=256)]


__all__ = ["AcknowledgeCommand", "Acknowledged", "AlarmCommand", "AlarmRef", "PanelAlarm",
           "PanelState", "ResetAlarmCommand", "ResetOutputCommand", "ShelveCommand",
           "SkippedAlarm", "SuppressCommand", "UnsuppressCommand"]
