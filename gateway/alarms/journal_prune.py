"""Pruning the alarm journal (`Journal.prune`): by count always, by age only with times it can
trust.

Pruning by age (`retention_days`) measures an event's age from the newest journalled event's
time (or now, if that is earlier), never from now alone, and only while the system clock is
synchronised (`gateway.clocksync`): a Pi without an RTC journals with a stale clock (1970, or
fake-hwclock's) until NTP steps it, and a step forward — right or wrong — made every event look
old at once (clock audit K6: a first prune after NTP synced deleted all the history journalled
in 1971, a bad +100 d step deleted every event). An event journalled while the clock was not
synchronised is marked (`clock_unsynced`) and goes only with the first later event that was not
(`_last_surely_older`). `max_events` bounds the size whatever the clock does.
"""

from __future__ import annotations

import sqlite3

from gateway import clocksync


def prune_events(conn: sqlite3.Connection, now_ns: int, *, by_age: bool, retention_s: float,
                 max_events: int) -> int:
    """In one transaction: delete events beyond `max_events` rows and, when `by_age`, events
    and closed shelves/suppressions more than `retention_s` older than the newest journalled
    event (or than `now_ns`, if earlier). Returns the events deleted; sqlite3.Error (the
    caller rolls back)."""
    conn.execute("BEGIN")
    deleted = 0
    newest = conn.execute("SELECT ts FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    if by_age and newest is not None:
        cutoff = min(now_ns, int(newest[0])) - int(retention_s * 1e9)
        last = _last_surely_older(conn, cutoff)
        if last is not None:
            deleted = conn.execute("DELETE FROM events WHERE seq <= ?", (last,)).rowcount
        conn.execute("DELETE FROM shelves WHERE ended_ns < ?", (cutoff,))
        conn.execute("DELETE FROM suppressions WHERE ended_ns < ?", (cutoff,))
    row = conn.execute("SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?",
                       (max_events,)).fetchone()
    if row is not None:
        deleted += conn.execute("DELETE FROM events WHERE seq <= ?", (row[0],)).rowcount
    conn.execute("COMMIT")
    return max(0, deleted)


def _last_surely_older(conn: sqlite3.Connection, cutoff: int) -> int | None:
    """The highest seq up to which every event is surely older than `cutoff`: the last event,
    in journal order before the first at or after `cutoff`, whose time is trustworthy —
    journalled with the system clock synchronised, not before 2020 (`clocksync.SET_FLOOR_NS`)
    and not below an earlier event's. A Pi without an RTC journals with a stale clock (1970,
    or fake-hwclock's last saved time) from a reboot until NTP steps it; such an event's real
    time is no later than the next event's, so it goes only once a later trustworthy event is
    older than `cutoff` too: an alarm journalled after a power cut, before NTP, is not deleted
    at the first prune for looking old. Reads the events to be deleted and one more."""
    last: int | None = None
    highest = clocksync.SET_FLOOR_NS
    for seq, ts, unsynced in conn.execute(
            "SELECT seq, ts, clock_unsynced FROM events ORDER BY seq"):
        if ts >= cutoff:
            break
        if ts >= highest and not unsynced:
            highest, last = ts, seq
    return last
