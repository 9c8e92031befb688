"""The daemon's log line per alarm event, and how a storm is kept off the card.

Every alarm event is journalled (gateway.alarms.journal) and sent to the central side; the log
line is for someone reading `journalctl`. journald stores it on the same SD card, and in an
alarm storm (100 points toggling every 15 s, two rules each) one line per transition was 667
lines and 144 KiB a minute (the wear audit: about 210 MB a day while it lasts). So while the
alarm manager reports a flood (ISA-18.2: more than `flood_count` activations within
`flood_window`), only critical events and the flood's own start and end are logged one by
one; the rest are counted, and a summary line says how many each minute and when the flood
ends (`event=alarm_log_summary`). Outside a flood every event is logged, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from gateway.alarms.events import AlarmEvent, EventKind
from gateway.contract.enums import Severity

SUMMARY_EVERY = 60.0
"""Seconds between summary lines while a flood holds events back."""

_FLOOD_KINDS = frozenset({EventKind.FLOOD_START, EventKind.FLOOD_END})


class AlarmLogLines:
    """One line per alarm event, fewer in a flood (see the module docstring)."""

    def __init__(self, log: logging.Logger, flooding: Callable[[], bool],
                 monotonic: Callable[[], float]) -> None:
        self._log = log
        self._flooding = flooding
        self._monotonic = monotonic
        self.held_back = 0
        """Events not logged one by one since the last summary."""
        self.held_back_total = 0
        self._summary_due: float | None = None

    def write(self, events: Iterable[AlarmEvent]) -> None:
        flooding: bool | None = None
        for event in events:
            if event.kind not in _FLOOD_KINDS and event.severity is not Severity.CRITICAL:
                if flooding is None:
                    flooding = self._flooding()
                if flooding:
                    self.held_back += 1
                    self.held_back_total += 1
                    continue
            self._line(event)
        self._summarise(flooding if flooding is not None else self._flooding())

    def _line(self, event: AlarmEvent) -> None:
        self._log.info("event=alarm_%s rule=%s subject=%s state=%s previous=%s severity=%s "
                       "value=%r actor=%s", event.kind, event.rule, event.subject, event.state,
                       event.previous_state, event.severity, event.value, event.actor)

    def _summarise(self, flooding: bool) -> None:
        """A summary a minute while events are held back, and one when the flood ends."""
        if not self.held_back:
            self._summary_due = None
            return
        now = self._monotonic()
        if self._summary_due is None:
            self._summary_due = now + SUMMARY_EVERY
        if flooding and now < self._summary_due:
            return
        self._log.info("event=alarm_log_summary not_logged=%d flood=%s (each is in the alarm "
                       "journal: the panel's event history, GET /api/events)", self.held_back,
                       flooding)
        self.held_back = 0
        self._summary_due = now + SUMMARY_EVERY if flooding else None
