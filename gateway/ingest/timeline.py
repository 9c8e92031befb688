"""Where in time the ingest writes a message: at its own time, or — its gateway's clock being
wrong — at its first receive time, in its alarm's order, a last will after what its gateway
sent before. The steps, in the order the network thread takes them:

1. `timecheck.implausible`: a time before 2020, more than 5 minutes ahead, or older than the
   ingest's `max_event_age` (alarm events, live states; an alarm event stamped by a
   synchronised clock, `clock_synced`: `telemetry_retention`) or `telemetry_retention`
   (telemetry) is not written as it stands;
2. `timecheck.Restamper`: such an alarm event or live state goes to its first receive time,
   marked `clock_suspect`; anything else so stamped goes to the dead-letter log (kind
   `clock`);
3. `alarmorder.AlarmOrder`: an alarm event goes where its `seq` puts it among its alarm's
   events written (kept across restarts);
4. `lastseen.LastSeen`: a last will goes just after the newest time its gateway sent.
"""

from __future__ import annotations

from gateway.contract.wire import Message
from gateway.ingest.alarmorder import AlarmOrder
from gateway.ingest.dedup import SeenKey
from gateway.ingest.lastseen import LastSeen
from gateway.ingest.settings import IngestSettings
from gateway.ingest.timecheck import FirstReceived, Restamper, Window, implausible


class Timeline:
    def __init__(self, settings: IngestSettings, first_received: FirstReceived) -> None:
        self.window = Window(int(settings.max_event_age * 1e9),
                             int(settings.telemetry_retention * 1e9))
        self.restamp = Restamper(first_received)
        self.order = AlarmOrder(settings.alarm_order_store)
        self.last_seen = LastSeen()

    def place(self, message: Message, key: SeenKey | None, retained: bool, now_ns: int
              ) -> tuple[Message, int | None] | str:
        """(`message` at the time to write it, the gateway's own time if that is another: its
        `gateway_ts`), or why it goes to the dead-letter log instead."""
        why = implausible(message, now_ns, self.window, retained=retained)
        gateway_ts = None
        if why is not None:
            moved = self.restamp(message, key, retained, now_ns)
            if moved is None:
                return why
            message, gateway_ts = moved
        message, gateway_ts = self.order.place(message, gateway_ts, now_ns)
        return self.last_seen.place(message, now_ns), gateway_ts

    def close(self) -> None:
        self.order.close()
