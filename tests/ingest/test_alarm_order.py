"""The order of each alarm's events (gateway.ingest.alarmorder) on its real SQLite store:
bounded per gateway and in all with a fair eviction (past 100,000 alarms the in-memory map
was cleared for every gateway at once), kept across a restart, never placing an event more
than 5 minutes ahead, and a restored gateway's journal forgotten."""

from __future__ import annotations

import time
from pathlib import Path

import gateway.contract.wire as c
from gateway.alarms.lifecycle import AlarmState
from gateway.contract.enums import EventKind
from gateway.ingest.alarmorder import AFTER_NS, AlarmOrder
from gateway.ingest.timecheck import AHEAD_NS

NOW = time.time_ns()


def event(gateway: str, seq: int, ts: int, subject: str = "smoke-1.alarm"
          ) -> c.AlarmEventMessage:
    return c.AlarmEventMessage(
        site="s", gateway=gateway, seq=seq, ts=ts, kind=EventKind.ALARM, rule="fire.smoke",
        subject=subject, state=AlarmState.NORMAL, previous_state=AlarmState.NORMAL,
        actor="system", title="Smoke")


def placed(order: AlarmOrder, message: c.AlarmEventMessage,
           gateway_ts: int | None = None) -> tuple[int, int | None]:
    out, ts = order.place(message, gateway_ts, NOW)
    assert isinstance(out, c.AlarmEventMessage)
    return out.ts, ts


def remembers(order: AlarmOrder, gateway: str, subject: str = "smoke-1.alarm") -> bool:
    """Whether `order` knows the alarm's newest event (at NOW - 10 s): an event with a higher
    seq stamped before it is moved after it."""
    return placed(order, event(gateway, 10**9, NOW - 60 * 10**9, subject))[1] is not None


def test_a_clear_stamped_before_its_raise_goes_after_it_and_never_beyond_5_minutes(
        tmp_path: Path) -> None:
    order = AlarmOrder(tmp_path / "order.sqlite")
    assert placed(order, event("gw", 10, NOW - 10 * 10**9)) == (NOW - 10 * 10**9, None)
    clear = event("gw", 11, NOW - 3600 * 10**9)
    assert placed(order, clear) == (NOW - 10 * 10**9 + AFTER_NS, clear.ts)
    # a newest far ahead (remembered while the ingest's own clock ran ahead): at most +5 min
    assert placed(order, event("gw", 20, NOW + 3600 * 10**9, "h2")) == (NOW + 3600 * 10**9,
                                                                         None)
    assert placed(order, event("gw", 21, NOW, "h2")) == (NOW + AHEAD_NS, NOW)
    order.close()


def test_a_restamped_backlog_goes_before_the_newest_and_one_at_its_own_time_stays(
        tmp_path: Path) -> None:
    order = AlarmOrder(tmp_path / "order.sqlite")
    placed(order, event("gw", 21, NOW))  # the live clear, first
    backlog = event("gw", 20, NOW + 5 * 10**6)  # re-stamped at its arrival, 2 days old
    assert placed(order, backlog, NOW - 2 * 86_400 * 10**9) == (
        NOW - AFTER_NS - 1, NOW - 2 * 86_400 * 10**9)
    # at its own time (a restored gateway's journal numbering again): left there
    assert placed(order, event("gw", 5, NOW + 10**9)) == (NOW + 10**9, None)
    order.close()


def test_the_order_is_kept_across_a_restart_and_a_restored_gateway_is_forgotten(
        tmp_path: Path) -> None:
    order = AlarmOrder(tmp_path / "order.sqlite")
    placed(order, event("gw", 10, NOW - 10 * 10**9))
    placed(order, event("gw-2", 10, NOW - 10 * 10**9))
    order.close()
    order = AlarmOrder(tmp_path / "order.sqlite")
    assert len(order) == 2 and remembers(order, "gw")
    order.forget("s", "gw-2")  # its journal went back
    assert len(order) == 1 and not remembers(order, "gw-2")
    order.close()


def test_one_gateways_flood_costs_only_itself_and_the_total_evicts_the_fullest(
        tmp_path: Path) -> None:
    order = AlarmOrder(tmp_path / "order.sqlite", per_gateway=50, total=100)
    for gateway in ("calm-1", "calm-2"):
        placed(order, event(gateway, 10, NOW - 10 * 10**9))
    for n in range(500):  # one gateway's flood: its own oldest go
        placed(order, event("flood", 100 + n, NOW - 10 * 10**9, f"s-{n}"))
    assert len(order) == 52 and order.evicted == 450
    for n in range(60):  # a second large gateway: the total (100) is reached
        placed(order, event("big", 100 + n, NOW - 10 * 10**9, f"s-{n}"))
    assert len(order) == 100
    held = {gateway: n for (_, gateway), n in order._held.items()}
    # at the total the fullest gives up its oldest (flood, then flood again on a tie), and a
    # gateway at its own bound its own: the calm ones keep theirs
    assert held == {"calm-1": 1, "calm-2": 1, "flood": 48, "big": 50}
    assert remembers(order, "calm-1") and remembers(order, "calm-2")
    assert remembers(order, "flood", "s-499") and not remembers(order, "flood", "s-449")
    counts = dict(order._held)
    order.close()
    reopened = AlarmOrder(tmp_path / "order.sqlite", per_gateway=50, total=100)
    assert len(reopened) == 100 and reopened._held == counts  # the counts come back
    reopened.close()
