"""The enums the wire carries and both sides interpret: sample quality, alarm severity, alarm
state (with what each state means for annunciation and outputs) and alarm event kind."""

from __future__ import annotations

from enum import StrEnum


class Quality(StrEnum):
    GOOD = "good"
    STALE = "stale"  # no fresh reading within the expected interval
    COMM_ERROR = "comm_error"  # timeout, CRC error, exception reply, garbage, port gone
    INVALID = "invalid"  # a reply arrived but the value is outside its valid range or undecodable


class Severity(StrEnum):
    """Alarm priority; the levels 1-4 of Chinese telecom power-and-environment monitoring."""

    CRITICAL = "critical"  # 1 一级
    MAJOR = "major"  # 2 二级
    MINOR = "minor"  # 3 三级
    WARNING = "warning"  # 4 四级 (hint)

    @property
    def level(self) -> int:
        return _LEVELS[self]


_LEVELS = {Severity.CRITICAL: 1, Severity.MAJOR: 2, Severity.MINOR: 3, Severity.WARNING: 4}


class AlarmState(StrEnum):
    NORMAL = "normal"
    ACTIVE_UNACKNOWLEDGED = "active_unacknowledged"
    ACTIVE_ACKNOWLEDGED = "active_acknowledged"
    RETURNED_UNACKNOWLEDGED = "returned_unacknowledged"
    SHELVED = "shelved"
    SUPPRESSED = "suppressed"
    OUT_OF_SERVICE = "out_of_service"

    @property
    def annunciated(self) -> bool:
        """Shown in the alarm list."""
        return self in _ANNUNCIATED

    @property
    def audible(self) -> bool:
        """Sounders (siren, buzzer …) sound; silenced by acknowledge."""
        return self is AlarmState.ACTIVE_UNACKNOWLEDGED

    @property
    def demands_actions(self) -> bool:
        """Non-audible output roles (exhaust fan, strobe …) are driven, acknowledged or not."""
        return self in _ACTIVE

    @property
    def unacknowledged(self) -> bool:
        return self in _UNACKNOWLEDGED

    @property
    def overlay(self) -> bool:
        """Shelved, suppressed or out of service: hidden and silent. A shelved or suppressed
        alarm still drives its protective outputs while its condition is active (or latched);
        out of service drives nothing (gateway.alarms.lifecycle)."""
        return self in _OVERLAYS


_ANNUNCIATED = frozenset({AlarmState.ACTIVE_UNACKNOWLEDGED, AlarmState.ACTIVE_ACKNOWLEDGED,
                          AlarmState.RETURNED_UNACKNOWLEDGED})
_ACTIVE = frozenset({AlarmState.ACTIVE_UNACKNOWLEDGED, AlarmState.ACTIVE_ACKNOWLEDGED})
_UNACKNOWLEDGED = frozenset({AlarmState.ACTIVE_UNACKNOWLEDGED,
                             AlarmState.RETURNED_UNACKNOWLEDGED})
_OVERLAYS = frozenset({AlarmState.SHELVED, AlarmState.SUPPRESSED, AlarmState.OUT_OF_SERVICE})


class EventKind(StrEnum):
    ALARM = "alarm"
    """A state transition of the alarm `rule`@`subject`. Two may leave the state as it was
    (`state` equal to `previous_state`): a new severity of an active alarm (note
    `escalated: …`), and a latching alarm latched while shelved or suppressed — its condition
    rose while hidden — (state the overlay's, note `latched while shelved`; an alarm that
    turns active under a suppression has one event, `normal` to `suppressed`, note
    `suppressed (<scope>); latched while suppressed`)."""
    FLOOD_START = "flood_start"
    """An alarm flood began; `rule`@`subject` is its first-out alarm (`first_out` is True)."""
    FLOOD_END = "flood_end"
    """The flood is over; `rule`@`subject` is the flood's first-out alarm."""
    SUPPRESSION_START = "suppression_start"
    """A suppression of scope `subject` (rule `$suppression`) began; note: reason and until."""
    SUPPRESSION_END = "suppression_end"
    """A suppression of scope `subject` ended (unsuppressed by `actor`, or expired: system)."""
    JOURNAL = "journal"
    """Journal trouble (rule `$journal`): a corrupt file was moved aside, a fresh one begun."""
    CONFIG = "config"
    """A config change that did not take (rule `$config`, subject `v<version>`): note
    `config vN rolled back: <reason>`; the alarms held during its trial were dropped."""
    DRILL = "drill"
    """A live drill began or ended (rule `$drill`, subject the drill's id, `drill` true);
    note: `started: <title> (silent|evacuation)` or `ended: <why>` (gateway.drills.live)."""
    OUTPUT = "output"
    """An output that does not restore on clear (rule `$output`, subject the output's id):
    held on by a real alarm (`held until reset: …`), reset by an operator (`reset: <note>`,
    actor the operator the gateway checked), suspended and resumed by an interlock
    (`suspended: …`, `resumed: …`) or released by the gateway (`hold ended: …`); and any
    output whose coil a config apply stopped driving (`released by config vN: …`)."""
