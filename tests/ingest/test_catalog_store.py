"""The catalog store's bounds (gateway.ingest.catalogs), unit level: the eviction policy under
any sequence of catalogs, the store's memory and file agreeing, a store of an older version
pruned to the limits at start, and one log line per kind of eviction."""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.contract import wire as c
from gateway.ingest.catalogs import (
    MAX_CATALOG_BYTES,
    MAX_CATALOGS_PER_GATEWAY,
    CatalogStore,
    Held,
    Key,
    overflow,
)

SITE = "bj-idc"
T0 = 1_767_225_600_000_000_000


@functools.cache
def catalog(gateway: str, variant: int) -> c.PointCatalog:
    """Catalog `variant` of `gateway`: 1 + 7·variant points, so the sizes differ."""
    return c.PointCatalog.build(site=SITE, gateway=gateway, produced=T0 + variant, points={
        f"th-{i}.temperature": c.PointMeta(device=f"th-{i}", room=f"room-{variant}",
                                           quantity="temperature", unit="°C")
        for i in range(1 + 7 * variant)})


def stored_size(cat: c.PointCatalog) -> int:
    return len(json.dumps({p: m.model_dump(mode="json") for p, m in cat.points.items()},
                          sort_keys=True).encode())


def key(cat: c.PointCatalog) -> Key:
    return (cat.site, cat.gateway, cat.catalog)


# ------------------------------------------------------------------------ the store


@settings(max_examples=60, deadline=None)
@given(per_gateway=st.integers(1, 4), max_bytes=st.integers(100, 20_000),
       ops=st.lists(st.tuples(st.sampled_from(["gw-1", "gw-2", "gw-3"]), st.integers(0, 6)),
                    min_size=1, max_size=30))
def test_any_sequence_of_catalogs_stays_within_the_limits(
        per_gateway: int, max_bytes: int, ops: list[tuple[str, int]]) -> None:
    """After every catalog: at most `per_gateway` per gateway and `max_bytes` in all; the one
    just published is kept (unless it alone exceeds the budget); each gateway keeps the newest
    of what it published (a catalog published again is new again); memory and file agree,
    and a reopened store (with any smaller limits) loads the newest within them."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "catalogs.sqlite"
        store = CatalogStore(path, max_per_gateway=per_gateway, max_bytes=max_bytes)
        order: dict[str, list[Key]] = {}  # per gateway, by last publication (oldest first)
        published: set[Key] = set()
        try:
            for gw, variant in ops:
                cat = catalog(gw, variant)
                k = key(cat)
                was_held = store.get(*k) is not None
                added = store.add(cat)
                assert added == (not was_held and stored_size(cat) <= max_bytes)
                published.add(k)
                if stored_size(cat) <= max_bytes:
                    mine = order.setdefault(gw, [])
                    if k in mine:
                        mine.remove(k)
                    mine.append(k)
                    assert store.get(*k) == cat.points
                else:
                    assert store.get(*k) is None
                check(store, per_gateway, max_bytes, order, published)
        finally:
            store.close()
        assert_file_matches(path, store)
        again = CatalogStore(path, max_per_gateway=per_gateway, max_bytes=max_bytes)
        try:
            assert again.entries() == store.entries() and again.bytes == store.bytes
        finally:
            again.close()
        newest = {gw: [k for k in keys if k in store.entries()][-1:]
                  for gw, keys in order.items()}
        one = CatalogStore(path, max_per_gateway=1, max_bytes=max_bytes)
        try:
            assert set(one.entries()) == {k for keys in newest.values() for k in keys}
        finally:
            one.close()
        assert_file_matches(path, one)


def check(store: CatalogStore, per_gateway: int, max_bytes: int,
          order: Mapping[str, list[Key]], published: set[Key]) -> None:
    entries = store.entries()
    assert store.bytes == sum(h.size for h in entries.values()) <= max_bytes
    assert len(store) == len(entries)
    for keys in order.values():
        held = [k for k in keys if k in entries]
        assert len(held) <= per_gateway
        assert held == keys[len(keys) - len(held):], "a gateway keeps its newest catalogs"
        assert sorted(held, key=lambda k: entries[k].arrival) == held
    for k in published - set(entries):
        assert store.get(*k) is None


def assert_file_matches(path: Path, store: CatalogStore) -> None:
    db = sqlite3.connect(path)
    try:
        rows = {(s, g, h): Held(a, n) for s, g, h, a, n in db.execute(
            "SELECT site, gateway, hash, arrival, length(CAST(points AS BLOB)) FROM catalogs")}
    finally:
        db.close()
    assert rows == store.entries()


def test_a_flooding_gateway_evicts_its_own_catalogs_not_its_neighbours(tmp_path: Path) -> None:
    quiet = [catalog(f"gw-{n}", 1) for n in range(5)]
    flood = [catalog("gw-flood", v) for v in range(2, 40)]
    budget = sum(map(stored_size, quiet)) + 2 * stored_size(flood[-1]) + 100
    store = CatalogStore(tmp_path / "c.sqlite", max_bytes=budget)
    try:
        for cat in quiet + flood:
            assert store.add(cat)
        assert all(store.get(*key(q)) is not None for q in quiet)
        kept = [k for k in store.entries() if k[1] == "gw-flood"]
        assert kept == [key(x) for x in flood[-len(kept):]] and 1 <= len(kept) <= 2
        assert store.bytes <= budget
    finally:
        store.close()


def test_a_catalog_larger_than_the_budget_is_refused(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    small, large = catalog("gw-1", 0), catalog("gw-1", 6)
    store = CatalogStore(tmp_path / "c.sqlite", max_bytes=stored_size(large) - 1)
    try:
        with caplog.at_level(logging.WARNING, logger="roomwarden.ingest"):
            assert store.add(small)
            assert not store.add(large)
        assert store.get(*key(large)) is None and store.get(*key(small)) is not None
        assert "event=catalog_refused reason=max_bytes" in caplog.text
    finally:
        store.close()


def test_one_log_line_per_kind_of_eviction_then_one_a_minute(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    store = CatalogStore(tmp_path / "c.sqlite", max_per_gateway=2, clock=lambda: now[0])
    try:
        with caplog.at_level(logging.WARNING, logger="roomwarden.ingest"):
            for v in range(30):  # 28 evictions
                store.add(catalog("gw-1", v + 10))
            lines = [r.getMessage() for r in caplog.records]
            assert len(lines) == 1 and "event=catalog_evicted reason=max_per_gateway" in lines[0]
            assert " count=1 " in lines[0]
            now[0] = 61.0
            store.add(catalog("gw-1", 500))
            lines = [r.getMessage() for r in caplog.records]
            assert len(lines) == 2 and " count=28 " in lines[1], lines
    finally:
        store.close()
    assert len(store) == 2


# ------------------------------------------------------------------------ at start


def old_store(path: Path, rows: list[tuple[str, str, int]]) -> None:
    """A catalog store as the version before the bounds wrote it (no arrival column): `rows`
    of (gateway, hash, points) in the order they arrived."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE catalogs (site TEXT NOT NULL, gateway TEXT NOT NULL, hash TEXT "
               "NOT NULL, produced INTEGER NOT NULL, points TEXT NOT NULL, PRIMARY KEY (site, "
               "gateway, hash))")
    for gateway, digest, n in rows:
        points = {f"d.p{i:05d}": {"device": "d" * 20, "room": "r" * 20,
                                  "quantity": "temperature", "unit": "u"} for i in range(n)}
        db.execute("INSERT INTO catalogs VALUES (?, ?, ?, ?, ?)",
                   (SITE, gateway, digest, T0, json.dumps(points, sort_keys=True)))
    db.commit()
    db.close()


def test_an_old_unbounded_store_is_pruned_to_the_limits_at_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The audit's store: 40 large catalogs of one gateway (here 16 of 10,000 points, 1.2 MB
    each, and two of another gateway). The newest within the limits are loaded, the rest
    deleted and the file compacted."""
    path = tmp_path / "catalogs.sqlite"
    flood = [("gw-flood", f"{n:016x}", 10_000) for n in range(16)]
    other = [("gw-2", f"{n:016x}", 10) for n in range(2)]
    old_store(path, flood[:8] + other + flood[8:])
    before = path.stat().st_size
    assert before > 16 * 1_000_000
    with caplog.at_level(logging.WARNING, logger="roomwarden.ingest"):
        store = CatalogStore(path)
    try:
        kept = sorted(store.entries(), key=lambda k: store.entries()[k].arrival)
        assert kept == [(SITE, g, h) for g, h, _ in
                        other + flood[-MAX_CATALOGS_PER_GATEWAY:]]
        assert store.get(SITE, "gw-flood", flood[-1][1]) is not None
        assert store.get(SITE, "gw-flood", flood[0][1]) is None
        [line] = [r.getMessage() for r in caplog.records]
        assert line.startswith("event=catalogs_pruned count=12 max_per_gateway=12 kept=6")
        assert store.bytes <= MAX_CATALOG_BYTES
        # a newly published catalog arrives after the old ones
        new = catalog("gw-flood", 1)
        assert store.add(new)
        assert store.get(SITE, "gw-flood", flood[-MAX_CATALOGS_PER_GATEWAY][1]) is None
    finally:
        store.close()
    assert_file_matches(path, store)
    assert path.stat().st_size < before / 2, "the file was compacted"


def test_a_budget_smaller_than_the_store_loads_the_newest_within_it(tmp_path: Path) -> None:
    path = tmp_path / "catalogs.sqlite"
    store = CatalogStore(path)
    cats = [catalog(f"gw-{n}", 3) for n in range(6)]
    try:
        for cat in cats:
            store.add(cat)
    finally:
        store.close()
    smaller = CatalogStore(path, max_bytes=3 * stored_size(cats[0]))
    try:
        assert set(smaller.entries()) == {key(x) for x in cats[3:]}
    finally:
        smaller.close()
    assert_file_matches(path, smaller)


# ------------------------------------------------------------------------ the policy


held_maps = st.dictionaries(
    st.tuples(st.just(SITE), st.sampled_from(["a", "b", "c", "d"]),
              st.sampled_from([f"{n:016x}" for n in range(6)])),
    st.integers(1, 1000), max_size=16).map(
        lambda sizes: {k: Held(i, s) for i, (k, s) in enumerate(sizes.items())})


@settings(max_examples=300, deadline=None)
@given(held=held_maps, per_gateway=st.integers(1, 4), max_bytes=st.integers(1, 8000),
       keep_last=st.booleans())
def test_the_policy_evicts_what_it_must_oldest_and_heaviest_first(
        held: dict[Key, Held], per_gateway: int, max_bytes: int, keep_last: bool) -> None:
    keep = max(held, key=lambda k: held[k].arrival) if keep_last and held else None
    victims = overflow(held, per_gateway=per_gateway, max_bytes=max_bytes, keep=keep)
    gone = [k for k, _ in victims]
    assert len(set(gone)) == len(gone) and keep not in gone
    rest = {k: h for k, h in held.items() if k not in gone}
    total = sum(h.size for h in rest.values())
    by_gw: dict[str, list[Key]] = {}
    for k in sorted(held, key=lambda k: held[k].arrival):
        by_gw.setdefault(k[1], []).append(k)
    for keys in by_gw.values():  # each gateway keeps its newest, at most per_gateway
        left = [k for k in keys if k in rest]
        assert left == keys[len(keys) - len(left):] and len(left) <= per_gateway
    assert total <= max_bytes or list(rest) == [keep]
    byte_victims = [k for k, reason in victims if reason == "max_bytes"]
    assert {k for k, r in victims if r == "max_per_gateway"} == {
        k for keys in by_gw.values() for k in keys[:max(0, len(keys) - per_gateway)]}
    if byte_victims:  # no more than needed: the last one back would not fit
        assert total + held[byte_victims[-1]].size > max_bytes
    # the gateways' newest go only once no gateway holds two
    remaining = {gw: [k for k in keys if k not in dict(victims)
                      or k in byte_victims] for gw, keys in by_gw.items()}
    for victim in byte_victims:
        mine = remaining[victim[1]]
        assert mine[0] == victim
        if len(mine) == 1:
            assert all(len(keys) <= 1 for keys in remaining.values())
        # from the gateway holding the most bytes (of those with as many catalogs to spare)
        tier = [keys for keys in remaining.values()
                if keys and keys[0] != keep and (len(keys) > 1) == (len(mine) > 1)]
        assert sum(held[k].size for k in mine) == max(sum(held[k].size for k in keys)
                                                      for keys in tier)
        mine.pop(0)
