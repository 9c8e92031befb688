"""Warm start of the rate windows across restarts: the gateway saves the samples its rate
windows hold and a new process fills its windows from them, so a trend that began before a
restart (a cooling loss, a battery warming) is judged at the first poll after it, not
`min_span` later.

Why these samples and not the flight recorder's ring (gateway.recorder.ring): the ring holds
every point (up to 2,000) at acquisition resolution for its whole window and may be switched
off; the rate windows need only their own points, at most `MAX_WINDOW_SAMPLES` + 1 samples
each, already thinned to what the slope uses. Saving exactly that keeps the file small (a few
KiB per point) and the write cheap enough to repeat.

What is saved (`rate_windows.bin` in the state directory, 0600, replaced atomically: a crash
leaves the old or the new file whole; its format: `gateway.rules.warm_file`): per point with a
rate window, its windows' samples as they hold them, the monotonic clock and the wall-clock
time of the save, the kernel's boot id, whether the system clock was synchronised then, and a
fingerprint of how the point is read (its device
entry, bus type and profile). When: every `period` — a tenth of the longest rate window,
between `MIN_PERIOD` and `MAX_PERIOD` (10 s to 1 min; 1 min for the shipped packs), longer for
a file that would pass a budget in bytes a day, and only if a window's values moved since
(`gateway.rules.warm_pace`) — on a thread (it fsyncs), and once more at the stop. A SIGKILL or
a power cut loses at most one period of samples (`warm_pace` says which).

How long ago the save was: in the same boot, the monotonic clock's difference (true whatever
NTP did to the wall clock); after a reboot, the wall clock's — but only if the system clock is
synchronised now and was at the save (`gateway.clocksync`): a Pi without an RTC boots with a
stale clock (fake-hwclock), and a gap of hours taken for seconds made a 12 °C step look like a
fast rise (a false `fire.heat_rate_of_rise` 15 s after the boot, clock audit K3); a save on a
clock 3 h ahead and not synchronised (an RTC kept in local time), restored after a 3-hour stop
on a synchronised one, took the stop for 10 s the same way (a false
`environment.temperature_rate`, 7 Dec 2026). Otherwise (a file of another or an unknown boot
saved on a clock not synchronised or not known to be — files written before 7 Dec 2026 did not
say — or a clock not synchronised now) the windows start cold, logged
(`event=rate_windows_cold`) with the reason. The clock state saved is a `SyncedCache`'s (read
at most once a minute, and at once after a step — NTP's first sync steps a stale clock): a
save up to a minute after a synchronisation that did not step the clock says "not
synchronised", which costs a cold start, never a wrong gap.

What is restored, at the start, into the new engine's windows: the union of the saved samples
of the same point ids whose fingerprint is unchanged, younger than each window and not in the
future. Each window takes them as it would from the bus (its own thinning and span), so a
config whose rate rules changed their window, `min_span` or limits works from the same file; a
point whose device or profile changed starts cold. A file that is missing, too large, corrupt
or of another format is logged and ignored (the windows start cold, as before); a stop longer
than a window leaves that window cold. Bounds: `MAX_FILE_BYTES` read, `MAX_DECODED_BYTES`
decompressed, `MAX_POINT_SAMPLES` per point, `MAX_SAMPLES` in all.

Cost, at the process benchmark's 2,000-point site with every shipped pack (670 points with 938
rate windows: 670 of a minute, 268 of an hour; ~103,000 samples; 6 Dec 2026 on the 2-core
VM, `tests/bench/bench_warm_save.py`): a save copies the windows' samples as they store them
on the event loop (~4 ms: `gateway.rules.warm_copy`, principle 13) and decodes, encodes,
compresses and streams them into the file on its thread (~60 ms); see docs/performance.md
for the figures against the snapshot that decoded on the loop (15–21 ms) and the JSON format
of before (version 1, still read). Memory: the same at every save, in mappings of their own
given back whole after it (RssAnon flat over the hour the hour's windows take to fill; with
copies on glibc's heap it rose 3 MiB over that hour). The restore at a start decodes on the
loop (~0.3 s for a full file): it runs while the gateway is built, before its buses start.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import threading
import zlib
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from gateway import clocksync
from gateway.clock import Clock
from gateway.clocksync import SyncedCache
from gateway.config.duration import DurationText
from gateway.config.section import is_section
from gateway.config.section_markers import section_hints
from gateway.rules.warm_copy import Capture, capture
from gateway.rules.warm_copy import Snapshot as Snapshot
from gateway.rules.warm_file import MAX_FILE_BYTES, Restorable, Saved, decode_saved, stream
from gateway.rules.warm_pace import moved, paced
from gateway.storage import atomic_write

if TYPE_CHECKING:
    from gateway.config.loader import LoadedConfig
    from gateway.rules.conditions import PointState
    from gateway.rules.engine import RuleEngine

log = logging.getLogger("roomwarden.rules.warm")

FILE_NAME = "rate_windows.bin"
MIN_PERIOD = 10.0
MAX_PERIOD = 60.0


class RateMemory:
    """Saves and restores the rate windows of the engine in force (see the module docstring).
    `restore` once at the start; `run` for the periodic saves; `save` at the stop."""

    def __init__(self, state_dir: Path, clock: Clock,
                 boot_id: Callable[[], str | None] | None = None,
                 synchronised: Callable[[], bool] | None = None) -> None:
        """`boot_id`, `synchronised`: the kernel's boot id and whether the system clock is
        synchronised (None: `gateway.clocksync`'s, looked up when used)."""
        self.path = state_dir / FILE_NAME
        self.clock = clock
        self.boot_id = (boot_id or clocksync.boot_id)()
        self._synchronised = synchronised
        self._synced_at_save = SyncedCache(clock, read=synchronised)
        self._lock = threading.Lock()
        self._written_ns = 0
        self._written_bytes = 0  # the size of the file last written (`warm_pace.paced`)…
        self._written_sources: dict[str, str] = {}  # …and its fingerprints (`.moved`)
        self._saved_newest = -math.inf
        self._failing = False
        self._sources: tuple[int, dict[str, str]] = (0, {})

    # --- restore ------------------------------------------------------------------------------

    def restore(self, engine: RuleEngine, loaded: LoadedConfig) -> int:
        """Fill `engine`'s empty rate windows from the file; returns the samples taken."""
        points = engine.rate_points()
        if not points:
            return 0
        # the fingerprints' hashing builds each device's and profile's fields as dicts (~0.5
        # MiB at the 2,000-point site, let go at once): done while the gateway starts, it
        # leaves nothing behind; at the first save, a minute on, it took pymalloc a fresh arena
        sources = self._sources_of(loaded)
        try:
            file = self._read()
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, zlib.error) as exc:  # (pydantic's errors are ValueErrors)
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("event=rate_windows_ignored file=%s reason=%r (rate windows start "
                        "cold)", self.path, reason[:200])
            return 0
        gap, measured = self._gap(file)
        if gap is None:
            log.warning("event=rate_windows_cold file=%s reason=%r (rate windows start cold)",
                        self.path, measured)
            return 0
        mono = self.clock.monotonic()
        taken = restored = changed = 0
        for point_id, state in points.items():
            record = file.points.get(point_id)
            if record is None:
                continue
            if record.source != sources.get(state.device):
                changed += 1
                continue
            count = _fill(state, record, gap, mono)
            taken += count
            restored += count > 0
        log.info("event=rate_windows_restored points=%d samples=%d saved_s_ago=%.0f "
                 "source_changed=%d gap_by=%s", restored, taken, gap, changed, measured)
        return taken

    def _gap(self, file: Saved) -> tuple[float | None, str]:
        """(seconds since the save, by which clock); (None, why) when it cannot be known."""
        mono = self.clock.monotonic()
        if file.boot_id is not None and file.boot_id == self.boot_id \
                and file.saved_mono is not None and math.isfinite(file.saved_mono):
            if mono < file.saved_mono:
                return None, "saved in this boot at a later monotonic time than now"
            return mono - file.saved_mono, "monotonic"
        boot = "an unknown boot" if file.boot_id is None else "another boot"
        if not (self._synchronised or clocksync.synchronised)():
            return None, (f"saved in {boot} and the system clock is not synchronised: the "
                          "time since the save is unknown")
        if file.synced is not True:
            known = ("was not synchronised" if file.synced is False
                     else "is not known to have been synchronised (a file of before 7 Dec 2026)")
            return None, (f"saved in {boot} on a system clock that {known} then: the time "
                          "since the save is unknown")
        return (self.clock.now_ns() - file.saved_ns) / 1e9, "wall_clock"

    def _read(self) -> Saved:
        with self.path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        return decode_saved(data)

    # --- save ---------------------------------------------------------------------------------

    def period(self, engine: RuleEngine) -> float | None:
        """Seconds between saves for this engine's windows; None: it has none."""
        windows = [w.window for s in engine.rate_points().values() for w in s.rates]
        if not windows:
            return None
        longest = max(windows)
        return paced(min(MAX_PERIOD, max(MIN_PERIOD, longest / 10.0)), longest,
                     self._written_bytes)

    def snapshot(self, engine: RuleEngine, loaded: LoadedConfig) -> Capture:
        """What the windows hold now, as they store it (`warm_copy.capture`: copies only, on
        the event loop; the decoding and the encoding are `write`'s, on its thread)."""
        return capture(engine.rate_points(), self._sources_of(loaded), self.clock.now_ns(),
                       self.clock.monotonic(), self.boot_id, self._synced_at_save())

    def save(self, engine: RuleEngine, loaded: LoadedConfig) -> bool:
        """Write what the windows hold now (at the stop, or from a test). True if written."""
        if not engine.rate_points():
            return False
        return self.write(self.snapshot(engine, loaded))

    def write(self, snapshot: Capture | Snapshot) -> bool:
        """Encode and write `snapshot` unless a newer one was written (thread-safe): a capture
        decoded first (on the calling thread), then streamed into the file, no copy of it in
        memory."""
        if snapshot.saved_ns <= self._written_ns:
            return False
        if isinstance(snapshot, Capture):
            snapshot = snapshot.decoded()
        with self._lock:
            if snapshot.saved_ns <= self._written_ns:
                return False
            size = 0

            def counted() -> Iterator[bytes]:
                nonlocal size
                for piece in stream(snapshot.saved_ns, snapshot.saved_mono, snapshot.points,
                                    snapshot.times, snapshot.values, snapshot.count,
                                    snapshot.boot_id, snapshot.synced):
                    size += len(piece)
                    yield piece

            try:
                atomic_write(self.path, counted())
            except OSError as exc:
                if not self._failing:
                    log.warning("event=rate_windows_save_failed file=%s error=%r", self.path,
                                str(exc))
                self._failing = True
                return False
            if self._failing:
                log.info("event=rate_windows_saved file=%s (saving again)", self.path)
            self._failing = False
            self._written_ns = snapshot.saved_ns
            self._written_bytes = size
            self._written_sources = {p: source for p, (source, _) in snapshot.points.items()}
        return True

    async def run(self, current: Callable[[], tuple[RuleEngine, LoadedConfig]]) -> None:
        """Save every `period` while a window's values moved (`warm_pace`); `current` gives
        the engine and config in force (a config apply replaces them)."""
        while True:
            engine, _ = current()
            await asyncio.sleep(self.period(engine) or MAX_PERIOD)
            try:
                await self._save_new(*current())
            except Exception:  # a bug here must not stop the gateway: logged, tried again
                log.exception("event=rate_windows_save_failed file=%s", self.path)

    async def _save_new(self, engine: RuleEngine, loaded: LoadedConfig) -> None:
        if not engine.rate_points():
            return
        snapshot = self.snapshot(engine, loaded)
        if snapshot.newest <= self._saved_newest:
            return  # nothing new (devices offline): no write
        if await asyncio.to_thread(self._write_moved, snapshot, self._saved_newest):
            self._saved_newest = snapshot.newest

    def _write_moved(self, taken: Capture, since: float) -> bool:
        """Write `taken` if it `moved` after `since`; True if written or if it did not (on
        the writer's thread: the decoding too)."""
        snapshot = taken.decoded()
        return not moved(snapshot, since, self._written_sources) or self.write(snapshot)

    def _sources_of(self, loaded: LoadedConfig) -> dict[str, str]:
        """Device id → fingerprint of how its points are read (cached per config)."""
        if self._sources[0] != id(loaded):
            self._sources = (id(loaded), fingerprints(loaded))
        return self._sources[1]


def fingerprints(loaded: LoadedConfig) -> dict[str, str]:
    """Device id → a hash of what makes its points' values mean what they mean: the device
    entry (less its poll interval and location), its bus's type and its profile."""
    buses = {bus.id: bus.type for bus in loaded.config.buses}
    out = {}
    for device in loaded.config.devices:
        if not device.enabled:
            continue
        entry = _plain(device)
        assert isinstance(entry, dict)
        del entry["poll_interval"], entry["location"]
        what = [entry, buses.get(device.bus), _plain(loaded.profile_of(device))]
        text = json.dumps(what, sort_keys=True, default=str)
        out[device.id] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return out


def _plain(value: object) -> object:
    """What `model_dump(mode="json")` gives for a config's sections (their fields, a duration as
    its text, enums as their values, non-finite floats as None, sequences as lists), read
    from the fields themselves: a model's serializer is built at its first dump, and Device's
    and the profiles' would stay in every gateway for this hash alone (the config is checked
    by a child process, gateway.isolated_check; tests/rules/test_warm.py compares the two)."""
    if is_section(type(value)):  # a section (gateway.config.section): its fields, in order
        return {name: _field(getattr(value, name), _metadata(hint))
                for name, hint in section_hints(type(value)).items()}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    return value


def _metadata(annotation: object) -> tuple[object, ...]:
    """The `Annotated` metadata of a field's annotation: its own, and its members' (X | None:
    the metadata of X)."""
    found = tuple(getattr(annotation, "__metadata__", ()))
    for member in get_args(annotation):
        found += tuple(getattr(member, "__metadata__", ()))
    return found


def _field(value: object, metadata: tuple[object, ...]) -> object:
    """A field's value as `_plain`, through its own JSON serializer if it has one (a
    `Duration`, also as `Duration | None`); `info` is a model's field or a section's
    annotation."""
    if value is not None:
        for item in metadata:
            if isinstance(item, DurationText) and isinstance(value, int | float):
                return item.to_json(value)  # `Duration`'s text: no other field has its own
    return _plain(value)


def _fill(state: PointState, record: Restorable, gap: float, mono: float) -> int:
    """Add the saved samples of one point to its (empty) windows; returns those taken."""
    longest = max(w.window for w in state.rates)
    taken = 0
    for age_ms, value in zip(record.ages_ms, record.values, strict=True):
        age = gap + age_ms / 1000.0
        if not 0 <= age <= longest or not math.isfinite(value):
            continue  # in the future (the clock went back), older than every window, or NaN
        taken += 1
        for window in state.rates:
            if age <= window.window:
                window.add(mono - age, value)
    return taken
