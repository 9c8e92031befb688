"""A gateway's genuine backlog is not a wrong clock: a gateway whose uplink was down for three
days (a fibre cut at a remote site) while NTP kept its clock synchronised sends its alarm
events of Monday on Thursday. Before, the ingest wrote every alarm event older than
`max_event_age` at its arrival (`clock_suspect`), so the central alarm history showed Monday's
hydrogen alarm on Thursday. An event that says its clock was synchronised when it was stamped
(`clock_synced`, gateway.clocksync) is now written at its own time, up to
`telemetry_retention`; one without the mark (an older gateway) or marked false is re-stamped as
before. Its alarm's order holds: the backlog's raise, written three days back, never becomes the
current state of the alarm whose live clear was written first. Real Mosquitto, the real ingest,
VictoriaMetrics; the dashboard's own *Active alarms* query."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import gateway.contract.wire as c
from gateway.contract.enums import EventKind
from gateway.ingest.timecheck import (
    AHEAD_NS,
    FLOOR_NS,
    MAX_EVENT_AGE_NS,
    RETENTION_NS,
    implausible,
)
from tests.fixtures.services import Broker, Victoria, wait_for
from tests.ingest.test_clock_check import HIDDEN_S
from tests.ingest.test_clock_window import DAY, A, N, active_at, event
from tests.ingest.test_service import SITE, Gateway, make_settings, subscribed, values

H2 = "explosion.h2_alarm"


@pytest.fixture
def gateway(broker: Broker) -> Iterator[Gateway]:
    publisher = Gateway(broker)
    yield publisher
    publisher.close()


def marked(message: c.AlarmEventMessage, synced: bool | None) -> c.AlarmEventMessage:
    """`message` as a gateway sends it: with its clock mark, or without (an older gateway)."""
    return message.model_copy(update={"clock_synced": synced})


def test_a_backlog_stamped_by_a_synchronised_clock_is_stored_at_its_own_time(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway) -> None:
    """Three days offline: the gateway sends its live clear first, then the backlog's raise
    of three days ago (a lower seq). The raise is stored three days back, unmarked; the alarm
    is not active now (the clear is its newest event), and was active three days ago."""
    gw = "gw-fibre-cut"
    settings = make_settings(tmp_path, broker, victoria)
    with subscribed(settings) as service:
        now = time.time_ns()
        raised = now - 3 * DAY
        gateway.send(marked(event(gw, 21, now, False), True))  # live first
        wait_for(lambda: service.status()["acked"] == 1, what="the live clear")
        gateway.send(marked(event(gw, 20, raised, True), True))  # then the backlog
        wait_for(lambda: service.status()["acked"] == 2, what="the backlog's raise")
        time.sleep(HIDDEN_S)
        [seq] = victoria.export(f'{{__name__="alarm_events_seq",gateway="{gw}"}}')
        assert seq["timestamps"] == [raised // 10**6, now // 10**6]  # each at its own time
        assert seq["values"] == [20, 21]
        assert values(victoria, "alarm_events_clock_suspect") == {}
        assert values(victoria, "alarm_events_gateway_ts") == {}
        assert values(victoria, "alarm_events_clock_synced") == {
            raised // 10**6: 1.0, now // 10**6: 1.0}
        assert service.status()["dead_lettered"] == 0
        assert active_at(victoria, time.time_ns()) == []  # the live clear is the state now
        assert active_at(victoria, raised + 60 * 10**9) == [f"{gw}:{H2}"]  # Monday's alarm


@pytest.mark.parametrize("synced", [False, None], ids=["marked-false", "old-gateway"])
def test_a_backlog_not_known_to_be_synchronised_is_restamped_as_before(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway,
        synced: bool | None) -> None:
    """The same backlog marked false (NTP had not synchronised the clock: it may have been
    restored to any old time), or without the mark (a gateway of before it): written at its
    arrival, just before its alarm's live clear, marked, its own time in `gateway_ts`."""
    gw = "gw-unsure"
    settings = make_settings(tmp_path, broker, victoria)
    with subscribed(settings) as service:
        now = time.time_ns()
        raised = now - 3 * DAY
        gateway.send(marked(event(gw, 21, now, False), synced))
        wait_for(lambda: service.status()["acked"] == 1, what="the live clear")
        gateway.send(marked(event(gw, 20, raised, True), synced))
        wait_for(lambda: service.status()["acked"] == 2, what="the backlog's raise")
        time.sleep(HIDDEN_S)
        [seq] = victoria.export(f'{{__name__="alarm_events_seq",gateway="{gw}"}}')
        assert seq["timestamps"] == [(now - 1_000_001) // 10**6, now // 10**6]
        stamps = values(victoria, "alarm_events_gateway_ts")
        assert stamps == {(now - 1_000_001) // 10**6: pytest.approx(raised, abs=2048)}
        assert values(victoria, "alarm_events_clock_suspect") == {
            (now - 1_000_001) // 10**6: 1.0}
        assert active_at(victoria, time.time_ns()) == []


def test_a_synchronised_backlog_older_than_the_retention_is_restamped_not_dropped(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway) -> None:
    """Forty days back, beyond `telemetry_retention` (30 days): at its own time the database
    would drop it (VictoriaMetrics answers 204), so it is written at its arrival, marked."""
    gw = "gw-long-gone"
    settings = make_settings(tmp_path, broker, victoria)
    with subscribed(settings) as service:
        old = time.time_ns() - 40 * DAY
        before = time.time_ns()
        gateway.send(marked(event(gw, 5, old, True), True))
        wait_for(lambda: service.status()["acked"] == 1, what="the old raise")
        after = time.time_ns()
        time.sleep(HIDDEN_S)
        [at] = values(victoria, "alarm_events_clock_suspect")
        assert before // 10**6 <= at <= after // 10**6
        assert values(victoria, "alarm_events_gateway_ts")[at] == pytest.approx(old, abs=2048)
        assert values(victoria, "alarm_events_clock_synced") == {at: 1.0}


def test_the_mark_moves_only_the_max_event_age_bound() -> None:
    """Before 2020, more than 5 minutes ahead, older than the retention: not written as it
    stands whatever the mark says; older than `max_event_age` within the retention: only
    unmarked or marked false."""
    now = FLOOR_NS + 400 * DAY

    def why(ts: int, synced: bool | None) -> str | None:
        message = marked(c.AlarmEventMessage(
            site=SITE, gateway="g", seq=1, ts=ts, kind=EventKind.ALARM, rule=H2,
            subject="h2-1.h2", state=A, previous_state=N, actor="system", title="H2"), synced)
        return implausible(message, now)

    for synced in (True, False, None):
        assert why(now - 10**9, synced) is None
        assert why(FLOOR_NS - 1, synced) is not None
        assert why(now + AHEAD_NS + 1, synced) is not None
        assert why(now - RETENTION_NS - 1, synced) is not None
    assert why(now - MAX_EVENT_AGE_NS - 1, True) is None
    assert why(now - RETENTION_NS + 10**9, True) is None
    assert "telemetry_retention" in str(why(now - RETENTION_NS - 1, True))
    for synced in (False, None):
        assert "max_event_age" in str(why(now - MAX_EVENT_AGE_NS - 1, synced))
