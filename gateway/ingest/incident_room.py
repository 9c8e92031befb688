"""Who gives way when the central incident store is full: each gateway pays for its own records.

The central audit: the store's budgets were one pool, and what made room was the oldest record
of *any* gateway. Twenty first chunks of records that never completed, sent by one gateway,
pruned another gateway's complete record, then filled the budget so that the next genuine
record was refused ("store is full") for up to `partial_ttl` (7 days); sixty tiny records from
one gateway pushed another's only record out of `max_incidents`. So, per gateway (a site and a
gateway id: the broker's ACLs give each gateway identity its own topics):

- **Shares, not a pool.** A gateway's share of `max_bytes` (of `max_incidents`) is the budget
  divided by the number of gateways holding something in the store, the arriving one counted
  (at least one record). Why divided and not a configured per-gateway cap: a lone gateway, or a
  few, may use the whole budget (nothing is evicted while the store has room), the shares never
  add up to more than the budget whatever the fleet's size, and there is no second number to
  keep in step with the fleet. Why no floor: a floor (say one largest record) would let a large
  fleet take more disk than `max_bytes`; a record larger than its gateway's share goes to the
  quarantine instead (below), kept whole.
- **Who gives way.** Only when the store would pass a budget. If the arriving gateway would be
  over its share, its own oldest go; otherwise the gateway holding the most gives way (it is
  then over its share: the others hold more than their shares together). A gateway within its
  share never loses a record to another one, so another gateway's waiting chunks can evict a
  complete record only of a gateway holding more than its share — and a newcomer always gets
  its share of a store an earlier gateway filled. Nobody gives way for a record larger than
  its gateway's share: it could not stay (it goes to the quarantine).
- **Incomplete before complete.** Of the gateway that gives way, its record versions still
  waiting for chunks go first (the one idle longest first), then its complete records (the
  oldest received first). The version being added never makes room for itself.
- **Waiting chunks are capped** at `WAITING_RECORDS` × `max_record_bytes` per gateway (a record
  in flight and the next one): past that the gateway's own idlest incomplete version goes, so a
  gateway that sends first chunks and nothing more only ever churns its own waiting chunks.

The same rules hold, with their own budget, in the quarantine (`quarantine_bytes`): the versions
whose record does not fit its gateway's share of `max_bytes`. Everything runs in the caller's
transaction; sizes come from indexed columns (a chunk's length follows from its place), so
finding who gives way reads no record.
"""

from __future__ import annotations

import logging
import sqlite3

from gateway.contract.wire import CHUNK_BYTES

log = logging.getLogger("roomwarden.ingest")

Gateway = tuple[str, str]
"""(site, gateway)."""
Version = tuple[str, str, str, str]
"""(site, gateway, id, sha256): one version of one record."""
WAITING_RECORDS = 2
"""A gateway's waiting chunks, in units of `max_record_bytes` (a record in flight and the next
one: the gateway sends a record's chunks in one outbox commit, so a third one waiting means
versions that will not complete)."""
CHUNK_LEN = (f"CASE WHEN idx < count - 1 THEN {CHUNK_BYTES} "
             f"ELSE size - (count - 1) * {CHUNK_BYTES} END")
"""A stored chunk's length from its place (the contract checks every chunk's data has it)."""
INDEXES = """
CREATE INDEX IF NOT EXISTS incidents_share ON incidents
    (quarantined, site, gateway, received, size);
CREATE INDEX IF NOT EXISTS chunks_share ON chunks
    (quarantined, site, gateway, id, sha256, received, idx, count, size);
"""
AREA = ("store", "quarantine")
"""`quarantined` 0 and 1, as the log names them."""


def total(db: sqlite3.Connection, quarantined: int) -> int:
    """Bytes one area holds: complete records and waiting chunks."""
    return int(db.execute(
        "SELECT (SELECT COALESCE(SUM(size), 0) FROM incidents WHERE quarantined = ?1) + "
        "(SELECT COALESCE(SUM(" + CHUNK_LEN + "), 0) FROM chunks WHERE quarantined = ?1)",
        (quarantined,)).fetchone()[0])


def usage(db: sqlite3.Connection, quarantined: int) -> dict[Gateway, int]:
    """Bytes each gateway holds in one area (each table read in its index's order)."""
    use: dict[Gateway, int] = {}
    for sql in ("SELECT site, gateway, SUM(size) FROM incidents WHERE quarantined = ? "
                "GROUP BY site, gateway",
                "SELECT site, gateway, SUM(" + CHUNK_LEN + ") FROM chunks WHERE "
                "quarantined = ? GROUP BY site, gateway"):
        for site, gateway, n in db.execute(sql, (quarantined,)):
            use[site, gateway] = use.get((site, gateway), 0) + int(n)
    return use


def share(budget: int, holders: dict[Gateway, int], gw: Gateway) -> int:
    """A gateway's share of `budget`: divided among the gateways holding something, `gw`
    counted."""
    return budget // len(holders.keys() | {gw})


def drop_idlest_partial(db: sqlite3.Connection, quarantined: int, gw: Gateway,
                        keep: Version, reason: str) -> int:
    """Delete the gateway's incomplete version idle longest (not `keep`); the bytes freed."""
    row = db.execute(
        "SELECT id, sha256, SUM(" + CHUNK_LEN + "), COUNT(*), MAX(count) FROM chunks "
        "WHERE quarantined = ? AND site = ? AND gateway = ? AND NOT (id = ? AND sha256 = ?) "
        "GROUP BY id, sha256 ORDER BY MAX(received), id LIMIT 1",
        (quarantined, *gw, keep[2], keep[3])).fetchone()
    if row is None:
        return 0
    db.execute("DELETE FROM chunks WHERE site = ? AND gateway = ? AND id = ? AND sha256 = ?",
               (*gw, row[0], row[1]))
    log.warning("event=incident_partial_dropped site=%s gateway=%s id=%s have=%d count=%d "
                "area=%s reason=%s", *gw, row[0], row[3], row[4], AREA[quarantined], reason)
    return int(row[2])


def evict(db: sqlite3.Connection, quarantined: int, gw: Gateway, keep: Version,
          reason: str) -> int:
    """One thing of the gateway's goes: its idlest incomplete version, else its oldest complete
    record; the bytes freed (0: it holds nothing but `keep`)."""
    freed = drop_idlest_partial(db, quarantined, gw, keep, reason)
    if freed:
        return freed
    row = db.execute("SELECT rowid, id, size FROM incidents WHERE quarantined = ? AND site = ? "
                     "AND gateway = ? ORDER BY received, rowid LIMIT 1",
                     (quarantined, *gw)).fetchone()
    if row is None:
        return 0
    db.execute("DELETE FROM incidents WHERE rowid = ?", (row[0],))
    log.warning("event=incident_pruned site=%s gateway=%s id=%s area=%s reason=%s", *gw,
                row[1], AREA[quarantined], reason)
    return int(row[2])


def cap_waiting(db: sqlite3.Connection, quarantined: int, keep: Version, need: int,
                cap: int) -> None:
    """Keep the gateway's waiting chunks, with `need` more bytes of `keep`, within `cap`:
    its idlest other incomplete versions go."""
    gw = (keep[0], keep[1])
    row = db.execute("SELECT COALESCE(SUM(" + CHUNK_LEN + "), 0) FROM chunks WHERE "
                     "quarantined = ? AND site = ? AND gateway = ?",
                     (quarantined, *gw)).fetchone()
    waiting = int(row[0])
    while waiting + need > cap:
        freed = drop_idlest_partial(db, quarantined, gw, keep, "waiting_cap")
        if not freed:
            return  # `keep` alone: within max_record_bytes, so within the cap
        waiting -= freed


def make_room(db: sqlite3.Connection, quarantined: int, budget: int, keep: Version,
              size: int, need: int) -> bool:
    """Make `need` more bytes of version `keep` (a record of `size` bytes) fit the area's
    `budget` (the module docstring says who gives way); False, with nothing evicted, if the
    area is full and the record is larger than its gateway's share (in the store: the number
    of gateways grew while it waited)."""
    gw = (keep[0], keep[1])
    reason = "disk_budget" if quarantined == 0 else "quarantine_budget"
    while True:
        if total(db, quarantined) + need <= budget:
            return True
        use = usage(db, quarantined)
        over = sum(use.values()) + need - budget
        mine = share(budget, use, gw)
        if size > mine:  # nobody gives way for a record that cannot stay
            return False
        if use.get(gw, 0) + need > mine:
            victim, target = gw, min(over, use.get(gw, 0) + need - mine)
        else:  # then another gateway holds more than its share (see the module docstring)
            victim = max((g for g in use if g != gw), key=lambda g: (use[g], g))
            target = min(over, use[victim] - mine)
        freed = 0
        while freed < target:
            got = evict(db, quarantined, victim, keep, reason)
            if not got:  # (cannot happen: `keep` fits the share, a victim holds something)
                return False
            freed += got


def prune_count(db: sqlite3.Connection, max_incidents: int, just: Gateway) -> None:
    """Keep the store's complete records within `max_incidents`: the gateway that just stored
    one loses its oldest while over its share, else the gateway holding the most records."""
    while db.execute("SELECT COUNT(*) FROM incidents WHERE quarantined = 0").fetchone()[0] \
            > max_incidents:
        counts = {(r[0], r[1]): int(r[2]) for r in db.execute(
            "SELECT site, gateway, COUNT(*) FROM incidents WHERE quarantined = 0 "
            "GROUP BY site, gateway")}
        over = sum(counts.values()) - max_incidents
        mine = max(1, share(max_incidents, counts, just))
        if counts.get(just, 0) > mine:
            victim = just
        else:
            victim = max((g for g in counts if g != just), key=lambda g: (counts[g], g))
        n = max(1, min(over, counts[victim] - mine))  # (1: more gateways than max_incidents)
        db.execute("DELETE FROM incidents WHERE rowid IN (SELECT rowid FROM incidents WHERE "
                   "quarantined = 0 AND site = ? AND gateway = ? ORDER BY received, rowid "
                   "LIMIT ?)", (*victim, n))
        log.warning("event=incidents_pruned site=%s gateway=%s count=%d reason=max_incidents",
                    *victim, n)
