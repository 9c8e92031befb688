"""The ISA-18.2 / IEC 62682 state machine of one alarm (rule, subject): pure, no I/O, no clock.

Times come in as arguments (`mono` seconds for intervals, `*_ns` for timestamps); the manager
(`gateway.alarms.manager`) owns the clock, the journal and the events.

States
------
An alarm has a *base* state that follows its condition and the operator's acknowledge, and up
to three *overlays* that hide it. The reported state is the strongest overlay, else the base::

    out_of_service  >  suppressed  >  shelved  >  base
    base ∈ {normal, active_unacknowledged, active_acknowledged, returned_unacknowledged}

"Active" below means the *held* condition: the debounced condition from the rule, or the alarm
being held active because it chatters (see Chattering).

Base transitions (non-latching; L = latching alarm, see `Evaluation.latching`)::

    state                    condition on     condition off          acknowledge
    normal                   active_unack     -                      error
    active_unacknowledged    -                returned_unack         active_acknowledged
                                              (L: stays, latched)    (L, latched: normal)
    active_acknowledged      -                normal                 error
                             (L, latched: →   (L: stays, latched)    (L, latched: normal = reset)
                              active_unack)
    returned_unacknowledged  active_unack     -                      normal

Overlays: shelve (operator, with expiry), suppress (maintenance of a device, room or rule, with
who, why and until), out of service (operator, no expiry). While overlaid, the condition is still
tracked but produces no transitions — except the latch below; acknowledge is refused. When the
last overlay goes (unshelve, expiry, unsuppress, return to service) the alarm takes the state its
condition implies: `active_unacknowledged` (annunciated afresh) if active, else `normal`;
earlier acknowledgements are not carried over. A latching alarm that was latched when the
overlay began (its base active) comes back latched, `active_unacknowledged`, whatever its
condition: only an acknowledge resets a latch.

A latching alarm latches under a shelf or a suppression too (hidden latch): when its held
condition rises while it is shelved or suppressed and not out of service — or is active when
an out of service ends under a shelf or suppression that stays — its base moves as on a rise
(`base_on_condition`: to `active_unacknowledged`), hidden: the reported state stays the
overlay's, nothing sounds, nothing is annunciated, but it is latched active (`hidden_active`),
so its protective outputs stay on after the condition clears, until it is reset. When the last
overlay goes it is `active_unacknowledged` (annunciated afresh, its activation time the hidden
rise's), and only an acknowledge then resets it. A hazard that happened while hidden is still
seen and reset by a person (DESIGN principle 7); the manager journals the hidden latch (an
`alarm` event, state and previous state the overlay's, note `latched while shelved`). Out of
service latches nothing: the detector is known invalid, its condition means nothing. A
non-latching alarm's base does not move under any overlay.

Base transitions under an overlay (reported state: the overlay's; acknowledge refused)::

    overlay                  alarm          held condition rises      condition clears
    shelved or suppressed    latching       normal, returned_unack,   -  (stays latched)
                                            active_ack → active_unack
    shelved or suppressed    non-latching   -                         -
    out of service           any            -                         -

What each state demands (read by gateway.actions and the panel)
---------------------------------------------------------------
=========================  ===========  =======  ===============  ===============
state                      annunciated  audible  demands_actions  unacknowledged
=========================  ===========  =======  ===============  ===============
normal                     no           no       no               no
active_unacknowledged      yes          YES      YES              yes
active_acknowledged        yes          no       YES              no
returned_unacknowledged    yes          no       no               yes
shelved                    no           no       protective       no
suppressed                 no           no       protective       no
out_of_service             no           no       no               no
=========================  ===========  =======  ===============  ===============

`protective`: only protective outputs, and only while `hidden_active` (see below).

* `annunciated`: shown in the panel's alarm list.
* `audible`: the sounders (roles in `AUDIBLE_ROLES`: siren, buzzer, horn, sounder) sound. An
  acknowledge silences them while the alarm stays active. A returned-unacknowledged alarm is
  silent (the hazard is gone; it only waits for the acknowledge in the list). A *latching* alarm
  stays `active_unacknowledged` after its condition clears, so its siren keeps sounding until
  someone acknowledges it.
* `demands_actions`: every other role the rule asks for (exhaust_fan, strobe, shutdown …) is
  driven while the alarm is active — acknowledged or not. A latching alarm keeps demanding them
  after its condition clears, until it is reset by an acknowledge. A chattering alarm is held
  active, so a fan does not cycle with each toggle.
* `unacknowledged`: blinks in the panel and is counted as waiting for an operator.
* protective (`AlarmRecord.hidden_active`): a shelf or a suppression hides an alarm from the
  operator — not annunciated: no sounder, strobe or alarm panel — but does not disable the
  automatic protective function (ISA-18.2 / IEC 62682): while the hidden alarm's condition is
  active, or it is latched active (a latching alarm whose base was active when the overlay
  began, or that latched under it), it still drives its *protective* outputs (exhaust fan,
  HVAC stop, charge inhibit, and any output a site marks `protective`;
  gateway.actions.planner). An acknowledged hydrogen alarm that is shelved keeps the fan
  purging and the charger inhibited; a latching one that rose and cleared under a
  suppression keeps them on until its reset. Out of service
  drives nothing: the technician took the detector out, its reading is known invalid.

Use `AlarmRecord.demanded_roles()` (or `AlarmManager.demanded_outputs()`) to get both at once;
they are the roles demanded through the state, none for an overlaid alarm: whether an output
is protective is the site's config (`Output.protective`), so the planner decides that per
output from `hidden_active`.

Chattering
----------
An alarm whose condition rises `count` times within `window` seconds (default 3 in 60 s) is marked
chattering and held active: further toggles produce no transitions (not re-annunciated) and its
actions keep running. It is released when the condition has been clear for `hold` seconds; then
the held "condition off" transition is applied.
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

from gateway.alarms.overlays import OutOfService as OutOfService  # re-exported
from gateway.alarms.overlays import Shelf as Shelf
from gateway.alarms.overlays import Suppression as Suppression
from gateway.alarms.overlays import scope_covers as scope_covers
from gateway.alarms.types import Evaluation
from gateway.contract.enums import AlarmState as AlarmState  # re-exported (defined in the contract)
from gateway.records import dataclass


class AlarmKey(NamedTuple):
    """An alarm: one rule bound to one subject."""

    rule: str
    subject: str

    def __str__(self) -> str:
        return f"{self.rule}@{self.subject}"


_ACTIVE = frozenset(s for s in AlarmState if s.demands_actions)
BASE_STATES = frozenset(s for s in AlarmState if s is AlarmState.NORMAL or s.annunciated)

AUDIBLE_ROLES = frozenset({"siren", "buzzer", "horn", "sounder"})
"""Output roles that follow `audible` (silenced by acknowledge); all others follow
`demands_actions`."""


def base_on_condition(base: AlarmState, rising: bool, latching: bool) -> AlarmState:
    """The base state after the held condition rose (`rising`) or fell."""
    if rising:
        if base in (AlarmState.NORMAL, AlarmState.RETURNED_UNACKNOWLEDGED,
                    AlarmState.ACTIVE_ACKNOWLEDGED):
            # active_acknowledged is only inactive when latched: a new activation re-annunciates.
            return AlarmState.ACTIVE_UNACKNOWLEDGED
        return base
    if latching:
        return base
    if base is AlarmState.ACTIVE_UNACKNOWLEDGED:
        return AlarmState.RETURNED_UNACKNOWLEDGED
    if base is AlarmState.ACTIVE_ACKNOWLEDGED:
        return AlarmState.NORMAL
    return base


def base_on_acknowledge(base: AlarmState, active: bool) -> AlarmState | None:
    """The base state after an acknowledge, or None when there is nothing to acknowledge."""
    if base is AlarmState.ACTIVE_UNACKNOWLEDGED:
        return AlarmState.ACTIVE_ACKNOWLEDGED if active else AlarmState.NORMAL
    if base is AlarmState.RETURNED_UNACKNOWLEDGED:
        return AlarmState.NORMAL
    if base is AlarmState.ACTIVE_ACKNOWLEDGED and not active:
        return AlarmState.NORMAL  # reset of a latched alarm
    return None


def base_after_overlay(active: bool, latched: bool) -> AlarmState:
    """The state an alarm takes when its last overlay goes: what its condition implies, and a
    latch it had when the overlay began (`latched`: a latching alarm whose base was active)
    kept — an overlay is no way round the reset (alarm lifecycle audit: a user who may only
    shelve reset a confirmed fire, siren and strobe, by shelving and unshelving it)."""
    return AlarmState.ACTIVE_UNACKNOWLEDGED if active or latched else AlarmState.NORMAL


@dataclass(frozen=True, slots=True)
class ChatterPolicy:
    count: int = 3
    window: float = 60.0
    hold: float = 60.0


@dataclass(slots=True, eq=False)
class AlarmRecord:
    """The live state of one alarm. Mutated only through its methods, which return whether the
    reported `state` may have changed; the manager turns changes into events."""

    key: AlarmKey
    ev: Evaluation
    """The latest evaluation: value, severity, title, room, actions, latching."""
    base: AlarmState = AlarmState.NORMAL
    condition: bool = False
    chattering: bool = False
    shelf: Shelf | None = None
    suppression: str | None = None
    """Scope of the suppression covering it."""
    oos: OutOfService | None = None
    activated_ns: int | None = None
    acked_by: str | None = None
    acked_ns: int | None = None
    acked_note: str | None = None
    """The note given with the acknowledgement (issue 14: shown on the panel's card)."""
    activations: deque[float] | None = None
    """Times of the recent activations (chatter detection); None until the first (a deque is
    760 bytes, and the manager keeps a record of every evaluated binding: 6,478 at 2,000
    points)."""
    clear_since: float | None = None
    clear_since_ns: int | None = None
    """Wall-clock time of `clear_since` (a chatter release replayed at its own time)."""

    @property
    def state(self) -> AlarmState:
        if self.oos is not None:
            return AlarmState.OUT_OF_SERVICE
        if self.suppression is not None:
            return AlarmState.SUPPRESSED
        if self.shelf is not None:
            return AlarmState.SHELVED
        return self.base

    @property
    def overlaid(self) -> bool:
        return self.oos is not None or self.suppression is not None or self.shelf is not None

    @property
    def held_active(self) -> bool:
        return self.condition or self.chattering

    @property
    def hidden(self) -> bool:
        """Shelved or suppressed and not out of service: hidden from the operator, its
        protection still running (`hidden_active`), a latching alarm latching (module
        docstring)."""
        return self.oos is None and (self.shelf is not None or self.suppression is not None)

    @property
    def latched(self) -> bool:
        """Held active by latching only: condition clear, waiting for the acknowledge (reset)."""
        return (not self.overlaid and not self.held_active
                and self.base in _ACTIVE)

    @property
    def hidden_active(self) -> bool:
        """Shelved or suppressed (not out of service) while its condition is active or it is
        latched active — a latching alarm whose base was active when the overlay began, or
        whose condition rose under it (the hidden latch), is latched: it drives its protective
        outputs (see the module docstring) until an acknowledge after the overlay resets it."""
        if not self.hidden:
            return False
        return self.held_active or (self.ev.latching and self.base in _ACTIVE)

    @property
    def acknowledgeable(self) -> bool:
        return (not self.overlaid
                and base_on_acknowledge(self.base, self.held_active) is not None)

    def demanded_roles(self) -> frozenset[str]:
        """The output roles this alarm demands now (see the module docstring)."""
        state = self.state
        if not state.demands_actions:
            return frozenset()
        roles = frozenset(self.ev.actions)
        return roles if state.audible else roles - AUDIBLE_ROLES

    # transitions -------------------------------------------------------------------------

    def set_condition(self, active: bool, mono: float, now_ns: int,
                      policy: ChatterPolicy) -> bool:
        """Apply a new debounced condition. Returns True when chattering began with it."""
        if active == self.condition:
            return False
        was = self.held_active
        self.condition = active
        began = False
        if active:
            self.clear_since = self.clear_since_ns = None
            if not self.overlaid:
                acts = self.activations
                if acts is None:
                    acts = self.activations = deque()
                acts.append(mono)
                while len(acts) > policy.count:
                    acts.popleft()
                if (not self.chattering and len(acts) >= policy.count
                        and mono - acts[0] <= policy.window):
                    self.chattering = began = True
        else:
            self.clear_since, self.clear_since_ns = mono, now_ns
        now = self.held_active
        if now != was:
            if not self.overlaid:
                self._move(base_on_condition(self.base, now, self.ev.latching), now_ns)
            elif now:
                self._latch_hidden(now_ns)
        return began

    def chatter_release_due(self, policy: ChatterPolicy) -> tuple[int, float] | None:
        """(wall-clock ns, monotonic s) at which `release_chatter` would end chattering if the
        condition stays clear; None when it is not chattering or not clear."""
        if not self.chattering or self.condition or self.clear_since is None:
            return None
        due = self.clear_since + policy.hold
        while due - self.clear_since < policy.hold:  # the float sum rounded down
            due = math.nextafter(due, math.inf)
        since_ns = self.clear_since_ns if self.clear_since_ns is not None else 0
        return since_ns + round(policy.hold * 1e9), due

    def release_chatter(self, mono: float, now_ns: int, policy: ChatterPolicy) -> bool:
        """End chattering once the condition has been clear for the hold time."""
        if (not self.chattering or self.condition or self.clear_since is None
                or mono - self.clear_since < policy.hold):
            return False
        self.chattering = False
        self.activations = None
        if not self.overlaid:
            self._move(base_on_condition(self.base, False, self.ev.latching), now_ns)
        return True

    def acknowledge(self, actor: str, now_ns: int) -> bool:
        """Acknowledge; False when there is nothing to acknowledge (the caller raises)."""
        if self.overlaid:
            return False
        new = base_on_acknowledge(self.base, self.held_active)
        if new is None:
            return False
        self._move(new, now_ns)
        if new is not AlarmState.NORMAL:
            self.acked_by, self.acked_ns = actor, now_ns
        return True

    def reannunciate(self, now_ns: int) -> bool:
        """An escalation of an acknowledged active alarm: unacknowledged again (sounders sound,
        the panel blinks). False when it is not acknowledged-active or is overlaid."""
        if self.overlaid or self.base is not AlarmState.ACTIVE_ACKNOWLEDGED \
                or not self.held_active:
            return False
        self._move(AlarmState.ACTIVE_UNACKNOWLEDGED, now_ns)
        return True

    def set_overlay(self, *, shelf: Shelf | bool | None = False,
                    suppression: str | bool | None = False,
                    oos: OutOfService | bool | None = False, now_ns: int) -> None:
        """Set or clear overlays (False: leave as is). Applying the first overlay drops the
        chattering mark; removing the last one puts the alarm where its condition implies (a
        latch kept); ending out of service under a shelf or suppression, with the condition
        active, latches a latching alarm (`_latch_hidden`)."""
        was, was_oos = self.overlaid, self.oos is not None
        if not isinstance(shelf, bool):
            self.shelf = shelf
        if not isinstance(suppression, bool):
            self.suppression = suppression
        if not isinstance(oos, bool):
            self.oos = oos
        if self.overlaid and not was:
            self.chattering = False
            self.activations = None
        elif was and not self.overlaid:
            self.acked_by = self.acked_ns = None
            # the base the overlay began on, or the hidden latch taken under it
            latched = self.ev.latching and self.base in _ACTIVE
            self._move(base_after_overlay(self.held_active, latched), now_ns)
        elif was_oos and self.oos is None and self.held_active:
            # back in service under a shelf or suppression with its condition active: the
            # condition counts again, as if it rose now (out of service latched nothing)
            self._latch_hidden(now_ns)

    def _latch_hidden(self, now_ns: int) -> None:
        """The held condition rose (or counts again) under a shelf or suppression: a latching
        alarm's base moves as on a rise — latched active, hidden (module docstring); nothing
        moves out of service or for a non-latching alarm."""
        if self.ev.latching and self.hidden:
            self._move(base_on_condition(self.base, True, True), now_ns)

    def _move(self, new: AlarmState, now_ns: int) -> None:
        if new is self.base:
            return
        if new is AlarmState.ACTIVE_UNACKNOWLEDGED:
            self.activated_ns = now_ns
            self.acked_by = self.acked_ns = None
        elif new is AlarmState.NORMAL:
            self.activated_ns = None
            self.acked_by = self.acked_ns = None
        self.base = new
