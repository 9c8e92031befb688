"""A per-gateway budget of distinct series, so that one gateway cannot make the fleet-wide panels
fail for every site (central audit, finding 4).

Every distinct tag tuple a message writes is a series the database indexes for good. A gateway
identity that published 320,000 alarm events, each with a new subject, made 3.5 million
VictoriaMetrics series in 82 s (its RSS 21 → 1,014 MB), and the site overview's Active alarms
and Alarm history panels for all sites then answered HTTP 422 "the number of matching unique
timeseries exceeds 300000". Telemetry does the same more cheaply (4,096 new point ids a batch,
quantities free to choose). So the ingest counts, per gateway (site, gateway of the topic),
what it has seen within a rolling `period`:

* `telemetry_series` — distinct telemetry series (measurement and tags of each line: point,
  device, room, unit, quality);
* `alarm_keys` — distinct alarm keys (rule, subject);
* `alarm_series` — distinct series of its alarm events (`alarm_events` and, with
  `store: victoriametrics`, `alarm_history`, whose labels carry state, actor, title and note).

A telemetry batch that would take its gateway past `telemetry_series` is refused whole; an
alarm event whose key is new is refused when its gateway has `alarm_keys` keys, or its series
would pass `alarm_series`. An event of a key already known always passes, whatever it adds —
a known alarm's clear is never refused — and what it adds counts (up to the cap) against new
keys. A refused message goes to the dead-letter log (kind `series_budget`, the reason naming the
gateway, the cap and the counts) and is done like any dead letter: acknowledged, its delivery
number counted for the gateway's watermark, never holding the stream back. The first refusal of
a gateway in a period is logged (`event=series_budget_exceeded`), the rest only counted.

**Rolling period.** Time is cut into generations of half a `period`; a key counts while it was
seen in the current or the previous generation, so it stops counting between half a period
and a period after it was last seen. **Memory** is bounded by the caps: about 70 bytes a key,
at most the three caps' sum per gateway (≈ 16 MB for a gateway at every default cap; a
2,000-point gateway ≈ 0.5 MB). **Restarts** do not reset it: the keys are kept in SQLite
(`series_budget.store`, default `budget.sqlite` next to `catalog_store`), written with the
write that admitted them (a crash in between forgets at most those), and loaded at start
(at most the caps per gateway, the newest first; older generations are deleted).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator

from gateway.config.duration import Duration, format_duration
from gateway.ingest.fairqueue import GatewayId, gateway_of
from gateway.ingest.items import Item
from gateway.ingest.schema import ALARM_MEASUREMENT
from gateway.records import dataclass, field
from gateway.storage import open_sqlite, private_dir
from gateway.strict import StrictModel

log = logging.getLogger("roomwarden.ingest")

TELEMETRY, ALARM_KEYS, ALARM_SERIES = "telemetry_series", "alarm_keys", "alarm_series"
CAPS = (TELEMETRY, ALARM_KEYS, ALARM_SERIES)
_MEMO_LIMIT = 1 << 17
_SPACE = re.compile(r"(?<!\\) ")
_TAG = {name: re.compile(rf",{name}=((?:\\.|[^,\\])*)") for name in ("rule", "subject")}
"""A tag's escaped value in a series text (values end at an unescaped comma)."""
_ALARM_PREFIX = ALARM_MEASUREMENT + ","


class SeriesBudgetSettings(StrictModel):
    """`series_budget:` of the central config: distinct series a gateway may create."""

    period: Duration = 24 * 3600.0
    """The rolling period the caps count over (a key counts until it has not been seen for
    between half a period and a period)."""
    telemetry_series: Annotated[int, Field(ge=1, le=10_000_000)] = 100_000
    """Distinct telemetry series of one gateway: a gateway polls at most 20,000 points (the
    site config's limit), each a series per quality seen (good, stale, comm_error, invalid):
    80,000, and a quarter more for a config change within the period."""
    alarm_keys: Annotated[int, Field(ge=1, le=10_000_000)] = 32_500
    """Distinct alarm keys (rule, subject) of one gateway: five times a large site (2,000
    points with five rule packs bind ≈ 6,500)."""
    alarm_series: Annotated[int, Field(ge=1, le=10_000_000)] = 100_000
    """Distinct alarm-event series of one gateway (tags, and with VictoriaMetrics the
    `alarm_history` labels: state, actor, title, note): about three for each of `alarm_keys`."""
    store: Path | None = None
    """The SQLite file; default `budget.sqlite` next to `catalog_store`."""

    @field_validator("period")
    @classmethod
    def _period(cls, value: float) -> float:
        if not 60.0 <= value <= 31 * 24 * 3600.0:
            raise ValueError("period must be between 1m and 31 days")
        return value


def series_text(line: str) -> str:
    """Measurement and tags of a line-protocol line (up to its first unescaped space)."""
    found = _SPACE.search(line)
    return line[:found.start()] if found else line


def alarm_key(series: str) -> str | None:
    """"rule\\0subject" of an `alarm_events` series (escaped as written); None for others."""
    if not series.startswith(_ALARM_PREFIX):
        return None
    rule, subject = (_TAG[name].search(series) for name in ("rule", "subject"))
    return f"{rule[1] if rule else ''}\x00{subject[1] if subject else ''}"


def digest(text: str) -> int:
    """A stable 64-bit key (the same in every process, unlike `hash`)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big",
                          signed=True)


@dataclass(slots=True)
class _Known:
    """One gateway's keys of one cap: seen in the current and in the previous generation."""

    cur: set[int] = field(default_factory=set)
    prev: set[int] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.cur) + len(self.prev)

    def __contains__(self, key: int) -> bool:
        return key in self.cur or key in self.prev


@dataclass(slots=True)
class _Gateway:
    gen: int
    known: dict[str, _Known] = field(default_factory=lambda: {cap: _Known() for cap in CAPS})
    refused: int = 0
    """Refused since the last log line."""
    logged: int | None = None
    """The generation of the last log line."""


class SeriesBudget:
    """Used by the writer thread only. `on_refused(site, gateway, cap)` is called for each
    refusal (the metrics)."""

    def __init__(self, path: Path, settings: SeriesBudgetSettings, *, root: str,
                 clock: Callable[[], int] = time.time_ns,
                 on_refused: Callable[[str, str, str], None] = lambda s, g, c: None) -> None:
        self.settings = settings
        self._root = root
        self._clock = clock
        self._on_refused = on_refused
        self._half = max(1, int(settings.period * 1e9) // 2)
        self._caps = {TELEMETRY: settings.telemetry_series, ALARM_KEYS: settings.alarm_keys,
                      ALARM_SERIES: settings.alarm_series}
        self._gateways: dict[GatewayId, _Gateway] = {}
        self._pending: list[tuple[str, str, str, int, int]] = []
        self._memo: dict[str, int] = {}
        private_dir(path.parent)
        self._db = open_sqlite(path, synchronous="FULL")  # why FULL: gateway.storage
        self._db.execute("CREATE TABLE IF NOT EXISTS series (site TEXT NOT NULL, "
                         "gateway TEXT NOT NULL, cap TEXT NOT NULL, key INTEGER NOT NULL, "
                         "gen INTEGER NOT NULL, PRIMARY KEY (site, gateway, cap, key)) "
                         "WITHOUT ROWID")
        self._pruned = self._gen()
        self._load()

    def _gen(self) -> int:
        return self._clock() // self._half

    def _load(self) -> None:
        gen = self._gen()
        self._db.execute("DELETE FROM series WHERE gen < ?", (gen - 1,))
        for site, gateway, cap, key, seen in self._db.execute(
                "SELECT site, gateway, cap, key, gen FROM series ORDER BY gen DESC"):
            if cap not in self._caps:
                continue
            known = self._gateway((site, gateway), gen).known[cap]
            if len(known) < self._caps[cap]:  # at most the caps, the newest first
                (known.cur if seen >= gen else known.prev).add(key)

    def _gateway(self, who: GatewayId, gen: int) -> _Gateway:
        g = self._gateways.get(who)
        if g is None:
            g = self._gateways[who] = _Gateway(gen)
        elif gen > g.gen:
            for known in g.known.values():
                known.prev, known.cur = (known.cur if gen == g.gen + 1 else set()), set()
            g.gen = gen
        return g

    def held(self, site: str, gateway: str) -> dict[str, int]:
        """What counts against each cap of a gateway now."""
        g = self._gateways.get((site, gateway))
        if g is None:
            return dict.fromkeys(CAPS, 0)
        g = self._gateway((site, gateway), self._gen())
        return {cap: len(known) for cap, known in g.known.items()}

    def _key(self, text: str) -> int:
        key = self._memo.get(text)
        if key is None:
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            key = self._memo[text] = digest(text)
        return key

    def _use(self, who: GatewayId, g: _Gateway, cap: str, keys: set[int]) -> None:
        """Count `keys` as seen now (new ones, and those seen only in the previous
        generation, are written at the next `commit`)."""
        known = g.known[cap]
        for key in keys:
            if key in known.cur:
                continue
            known.prev.discard(key)
            known.cur.add(key)
            self._pending.append((*who, cap, key, g.gen))

    def admit(self, items: list[Item]) -> list[Item]:
        """The items of `items` beyond their gateway's budget, each given its `dead_reason`
        (kind `series_budget`); the keys of the others counted."""
        gen = self._gen()
        refused: list[Item] = []
        for item in items:
            if not item.lines or item.channel not in ("telemetry", "alarms"):
                continue
            who = gateway_of(item.topic, self._root)
            g = self._gateway(who, gen)
            texts = [series_text(line) for line in item.lines]
            if item.channel == "telemetry":
                reason = self._telemetry(who, g, {self._key(text) for text in texts})
            else:
                reason = self._alarm(who, g, texts)
            if reason is not None:
                item.dead_reason, item.dead_kind = reason, "series_budget"
                refused.append(item)
        return refused

    def _telemetry(self, who: GatewayId, g: _Gateway, series: set[int]) -> str | None:
        known = g.known[TELEMETRY]
        new = sum(key not in known for key in series)
        if new and len(known) + new > self._caps[TELEMETRY]:
            return self._refuse(who, g, TELEMETRY, f"this batch would add {new} more")
        self._use(who, g, TELEMETRY, series)
        return None

    def _alarm(self, who: GatewayId, g: _Gateway, texts: list[str]) -> str | None:
        keys = [k for k in map(alarm_key, texts) if k is not None]
        key = digest(keys[0]) if keys else None
        known_series = g.known[ALARM_SERIES]
        if key is not None and key not in g.known[ALARM_KEYS] and \
                len(g.known[ALARM_KEYS]) >= self._caps[ALARM_KEYS]:  # (before hashing more)
            return self._refuse(who, g, ALARM_KEYS, self._new_key(keys[0]))
        series = {digest(text) for text in texts}  # one-off texts: not memoised
        if key is None or key in g.known[ALARM_KEYS]:  # known: always passes
            room = self._caps[ALARM_SERIES] - len(known_series)
            new = [k for k in series if k not in known_series]
            self._use(who, g, ALARM_SERIES, (series - set(new)) | set(new[:max(0, room)]))
            if key is not None:
                self._use(who, g, ALARM_KEYS, {key})
            return None
        what = self._new_key(keys[0])
        new_series = sum(k not in known_series for k in series)
        if len(known_series) + new_series > self._caps[ALARM_SERIES]:
            return self._refuse(who, g, ALARM_SERIES,
                                f"{what} and would add {new_series} series")
        self._use(who, g, ALARM_KEYS, {key})
        self._use(who, g, ALARM_SERIES, series)
        return None

    @staticmethod
    def _new_key(key: str) -> str:
        rule, subject = key.split("\x00", 1)
        return f"this event's key (rule {rule[:200]!r}, subject {subject[:200]!r}) is new"

    def _refuse(self, who: GatewayId, g: _Gateway, cap: str, what: str) -> str:
        held, limit = len(g.known[cap]), self._caps[cap]
        period = format_duration(self.settings.period)
        names = {TELEMETRY: "telemetry series", ALARM_KEYS: "alarm keys (rule, subject)",
                 ALARM_SERIES: "alarm-event series"}
        reason = (f"series budget: {who[0]}/{who[1]} has {held} distinct {names[cap]} seen "
                  f"within {period}, at most {limit} (series_budget.{cap}); {what}")
        g.refused += 1
        self._on_refused(who[0], who[1], cap)
        if g.logged is None or g.gen - g.logged >= 2:  # once per gateway and period
            log.warning("event=series_budget_exceeded site=%s gateway=%s cap=%s held=%d "
                        "limit=%d period=%s refused=%d (refused messages are dead-lettered; "
                        "further ones of this gateway are counted, not logged, for %s)",
                        who[0], who[1], cap, held, limit, period, g.refused, period)
            g.logged, g.refused = g.gen, 0
        return reason

    def commit(self) -> None:
        """Write the keys counted since the last commit (and drop generations gone by)."""
        gen = self._gen()
        if not self._pending and gen == self._pruned:
            return
        rows, self._pending = self._pending, []
        self._db.execute("BEGIN")
        try:
            self._db.executemany("INSERT OR REPLACE INTO series VALUES (?, ?, ?, ?, ?)", rows)
            if gen != self._pruned:
                self._db.execute("DELETE FROM series WHERE gen < ?", (gen - 1,))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        if gen != self._pruned:
            self._pruned = gen
            for who in [w for w, g in self._gateways.items() if g.gen < gen - 1]:
                del self._gateways[who]  # nothing of it counts any more

    def close(self) -> None:
        self._db.close()
