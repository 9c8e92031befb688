"""The ids of an incident keeper's records (gateway.recorder.incidents): `<trigger time>-<room>-
<journal seq>`, and never one already stored or already given — a record is only ever replaced
by the process that opened it. A Pi without a real-time clock comes up at the same time after
each power cut, and the journal's sequence does not move while a fire burns on: every start
resumed the fire under the same id and replaced the record of the start before (the restart
audit)."""

from __future__ import annotations

import time

from gateway.alarms.events import AlarmEvent
from gateway.recorder.store import IncidentError, IncidentStore

_NS = 1_000_000_000


def incident_id(trigger: AlarmEvent, resumed: bool = False, copy: int = 1) -> str:
    """`<trigger time>-<room>-<journal seq>`; a record resumed after a restart
    (`IncidentKeeper._resume`) has the room part `<room>.resumed`: its seq may be the
    interrupted one's, in its second. `copy` > 1 ends the room part with `.<copy>` (the id
    without it is taken)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(trigger.ts // _NS))
    extra = f".{copy}" if copy > 1 else ""
    room = ((trigger.room or "site").replace("/", "_")[:72 - len(extra)]
            + (".resumed" if resumed else "") + extra)
    return f"{stamp}-{room}-{trigger.seq}"


class IncidentIds:
    def __init__(self, store: IncidentStore) -> None:
        self.store = store
        self._given: set[str] = set()
        """Ids given (their files may not be written yet)."""

    def new(self, trigger: AlarmEvent, resumed: bool = False) -> str:
        """`incident_id`, with `.2`, `.3`… if a record or progress file of that id is stored
        or this keeper gave it."""
        copy = 1
        while True:
            candidate = incident_id(trigger, resumed, copy)
            try:
                taken = candidate in self._given or any(
                    path.exists() for path in (self.store.path_of(candidate),
                                               self.store.progress_path_of(candidate)))
            except (OSError, IncidentError):  # unreadable directory: its own save says so
                taken = candidate in self._given
            if not taken:
                self._given.add(candidate)
                return candidate
            copy += 1
