"""Warm start of the rate windows (gateway.rules.warm) on real rule engines of the telecom site:
saved, restored into a new engine on a new monotonic clock, judged at once; bounds, corrupt and
foreign files, changed configs and a stop longer than the window start cold, never crash."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import clocksync
from gateway.clock import ManualClock
from gateway.config.loader import LoadedConfig, load_gateway_config
from gateway.config.profiles import profile_adapter
from gateway.config.section import validator
from gateway.config.site import Device
from gateway.field.sample import Quality, Sample
from gateway.rules.config import ParameterOverrides, default_rules_dir, load_rule_packs
from gateway.rules.engine import RuleEngine
from gateway.rules.rate import MAX_WINDOW_SAMPLES
from gateway.rules.warm import FILE_NAME, MAX_PERIOD, MIN_PERIOD, RateMemory
from gateway.rules.warm_file import MAGIC, MAGIC_V1, MAX_DECODED_BYTES, MAX_FILE_BYTES, decode

REPO = Path(__file__).resolve().parents[2]
TELECOM = REPO / "firmware_configs" / "telecom_equipment_room.yaml"
PACKS = load_rule_packs(default_rules_dir(), ["environment"])
POINT = "th-tx-a03.temperature"
RULE = ("environment.temperature_rate", POINT)
START_NS = 1_800_000_000_000_000_000
_LOADED: dict[str, LoadedConfig] = {}


def _site(tmp: Path, change: Any = None, name: str = "site.yaml") -> LoadedConfig:
    """The telecom site (loaded once), or a changed copy of it written to `tmp`."""
    if change is None and "site" in _LOADED:
        return _LOADED["site"]
    data = yaml.safe_load(TELECOM.read_text(encoding="utf-8"))
    data["profiles_dir"] = str(REPO / "hardware" / "profiles")
    if change is not None:
        change(data)
    path = tmp / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    loaded = load_gateway_config(path)
    if change is None:
        _LOADED["site"] = loaded
    return loaded


def _engine(loaded: LoadedConfig, clock: ManualClock) -> RuleEngine:
    return RuleEngine(PACKS, loaded, clock, ParameterOverrides.for_site(loaded, PACKS))


def _rise(engine: RuleEngine, clock: ManualClock, seconds: float, every: float = 10.0,
          per_h: float = 12.0, start: float = 22.0) -> float:
    """Feed a clean rise of `per_h` °C/h for `seconds`; the last value."""
    value = start
    t = 0.0
    while t < seconds:
        value = start + per_h * t / 3600.0
        engine.on_samples([Sample(POINT, round(value, 2), clock.now_ns(), Quality.GOOD)])
        engine.evaluate()
        clock.advance(every)
        t += every
    return value


def _judged(engine: RuleEngine, clock: ManualClock, value: float) -> bool:
    """One new sample and one evaluation: is the rate alarm active?"""
    engine.on_samples([Sample(POINT, round(value, 2), clock.now_ns(), Quality.GOOD)])
    return {(e.rule, e.subject): e.active for e in engine.evaluate()}[RULE]


SAVED_BOOT = "boot-1"


@contextmanager
def booted(boot: str, synced: bool = True) -> Iterator[None]:
    """The kernel's boot id and clock state as `gateway.clocksync` reports them, for what
    runs inside (a `RateMemory` reads the boot id when made, the clock state at a restore)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(clocksync, "boot_id", lambda: boot)
        patch.setattr(clocksync, "synchronised", lambda: synced)
        yield


def _restart(tmp: Path, loaded: LoadedConfig, gap: float
             ) -> tuple[RuleEngine, ManualClock, int]:
    """A new process `gap` s after the save, after a reboot (a new monotonic clock, another
    boot id) with the system clock synchronised: a fresh engine, restored. (Within one boot
    and on a clock not synchronised: tests/rules/test_warm_clock.py.)"""
    clock = ManualClock(start_ns=START_NS + int((1200 + gap) * 1e9), start_mono=3.0)
    engine = _engine(loaded, clock)
    with booted("boot-2"):
        return engine, clock, RateMemory(tmp, clock).restore(engine, loaded)


def _saved_run(tmp: Path, loaded: LoadedConfig, seconds: float = 1200.0) -> float:
    """A first process: 20 min of a 12 °C/h rise (alarm raised), saved in boot `SAVED_BOOT`
    at monotonic 51,200 s, wall clock `START_NS` + 1,200 s; the last value."""
    clock = ManualClock(start_ns=START_NS, start_mono=50_000.0)
    engine = _engine(loaded, clock)
    last = _rise(engine, clock, seconds)
    assert _judged(engine, clock, last)
    with booted(SAVED_BOOT):
        assert RateMemory(tmp, clock).save(engine, loaded)
    return last


def test_a_restarted_engine_judges_the_rate_at_its_first_sample(tmp_path: Path) -> None:
    loaded = _site(tmp_path)
    last = _saved_run(tmp_path, loaded)
    path = tmp_path / FILE_NAME
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    engine, clock, taken = _restart(tmp_path, loaded, gap=40.0)
    assert 50 <= taken <= MAX_WINDOW_SAMPLES + 1  # 20 min thinned to the 1 h window's slots
    assert _judged(engine, clock, last + 0.15)  # at once, not 5 min (min_span) later
    cold_clock = ManualClock(start_ns=START_NS + int(1240e9), start_mono=3.0)
    assert not _judged(_engine(loaded, cold_clock), cold_clock, last + 0.15)  # no file


def test_the_fingerprints_are_made_at_the_start_not_at_the_first_save(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first start (no file) hashes its devices in `restore`, so the first save, a minute
    later, builds none of the dicts the hashing takes (pymalloc kept the pools of that peak)."""
    import gateway.rules.warm as warm

    loaded = _site(tmp_path)
    clock = ManualClock(start_ns=START_NS, start_mono=1.0)
    engine = _engine(loaded, clock)
    calls: list[int] = []
    real = warm.fingerprints

    def counted(lc: LoadedConfig) -> dict[str, str]:
        calls.append(1)
        return real(lc)

    monkeypatch.setattr(warm, "fingerprints", counted)
    memory = RateMemory(tmp_path, clock)
    assert memory.restore(engine, loaded) == 0 and calls == [1]  # no file: hashed anyway
    _rise(engine, clock, 60.0)
    assert memory.save(engine, loaded)
    assert calls == [1]


def test_the_saved_file_is_bounded(tmp_path: Path) -> None:
    """Hours of samples: each window keeps its bound, the file stays small."""
    loaded = _site(tmp_path)
    clock = ManualClock(start_ns=START_NS, start_mono=50_000.0)
    engine = _engine(loaded, clock)
    for step in range(6_000):  # 3.3 h every 2 s (7 or 8 samples a 15 s slot of the 1 h window)
        engine.on_samples([Sample(p, 22.0 + step * 1e-3, clock.now_ns(), Quality.GOOD)
                           for p in engine.rate_points()])
        clock.advance(2.0)
    memory = RateMemory(tmp_path, clock)
    assert memory.save(engine, loaded)
    size = (tmp_path / FILE_NAME).stat().st_size
    points = engine.rate_points()
    assert size < 4096 * len(points), size
    _, saved = decode((tmp_path / FILE_NAME).read_bytes())
    assert set(saved) == set(points)
    for record in saved.values():
        assert 0 < len(record.values) <= 2 * (MAX_WINDOW_SAMPLES + 1)
    assert MIN_PERIOD <= (memory.period(engine) or 0) <= MAX_PERIOD
    assert memory.period(engine) == MAX_PERIOD  # the 1 h window: once a minute


def test_a_stop_longer_than_the_window_starts_cold(tmp_path: Path) -> None:
    loaded = _site(tmp_path)
    last = _saved_run(tmp_path, loaded)
    engine, clock, taken = _restart(tmp_path, loaded, gap=3700.0)  # > the 1 h window
    assert taken == 0
    assert not _judged(engine, clock, last)


def test_samples_from_the_future_are_dropped(tmp_path: Path) -> None:
    """The wall clock went back between the runs: no sample lands after `now`."""
    loaded = _site(tmp_path)
    _saved_run(tmp_path, loaded)
    _, _, taken = _restart(tmp_path, loaded, gap=-1500.0)
    assert taken == 0


def test_changed_rule_parameters_take_what_fits(tmp_path: Path) -> None:
    """A restart with a shorter window and another limit: the new window takes the samples
    younger than itself and is judged at once against the new limit."""
    last = _saved_run(tmp_path, _site(tmp_path))

    def shorter(data: dict[str, Any]) -> None:
        data["rules"] = {"parameters": [{"rule": "environment.temperature_rate",
                                         "set": {"window": "10m", "min_span": "4m",
                                                 "rate_c_per_h": 8}}]}

    changed = _site(tmp_path, shorter, "changed.yaml")
    engine, clock, taken = _restart(tmp_path, changed, gap=20.0)
    window = engine.rate_points()[POINT].rates[0]
    assert window.window == 600.0
    assert taken > 0 and all(clock.monotonic() - t <= 600.0 for t, _ in window.samples)
    assert _judged(engine, clock, last + 0.1)


def test_a_point_read_differently_starts_cold(tmp_path: Path) -> None:
    """A new calibration offset (or profile, unit, bus type) makes other values: not mixed."""
    last = _saved_run(tmp_path, _site(tmp_path))

    def recalibrated(data: dict[str, Any]) -> None:
        device = next(d for d in data["devices"] if d["id"] == "th-tx-a03")
        device["points"] = {"temperature": {"offset": -1.5}}

    engine, clock, taken = _restart(tmp_path, _site(tmp_path, recalibrated, "cal.yaml"), 20.0)
    assert not engine.rate_points()[POINT].rates[0].samples
    assert taken == 0 and not _judged(engine, clock, last)


def _v2(header: object, samples: bytes = b"") -> bytes:
    return MAGIC + zlib.compress(json.dumps(header).encode() + b"\n" + samples)


@pytest.mark.parametrize("content", [
    b"",
    b"garbage",
    MAGIC_V1 + b"not deflate at all",
    MAGIC_V1 + zlib.compress(b"{not json")[:-3],
    MAGIC_V1 + zlib.compress(b"[1, 2, 3]"),
    MAGIC_V1 + zlib.compress(json.dumps({"version": 2, "saved_ns": 0, "points": {}}).encode()),
    MAGIC_V1 + zlib.compress(json.dumps({"version": 1, "saved_ns": START_NS, "points": {
        POINT: {"source": "x", "age_ms": [1, 2], "value": [1.0]}}}).encode()),
    MAGIC_V1 + zlib.compress(json.dumps({"version": 1, "saved_ns": START_NS, "extra": 1,
                                         "points": {}}).encode()),
    MAGIC + b"not deflate at all",
    MAGIC + zlib.compress(json.dumps({"version": 2, "saved_ns": 0, "points": {}}).encode()),
    _v2({"version": 2, "saved_ns": START_NS, "points": {
        POINT: {"source": "x", "runs": [2]}}}, bytes(16)),
    _v2({"version": 2, "saved_ns": START_NS, "points": {
        POINT: {"source": "x", "runs": [3, -1]}}}, bytes(32)),
    _v2({"version": 2, "saved_ns": START_NS, "points": {
        POINT: {"source": "x", "runs": [MAX_WINDOW_SAMPLES * 5]}}},
        bytes(16 * MAX_WINDOW_SAMPLES * 5)),
    _v2({"version": 1, "saved_ns": START_NS, "points": {}}),
    _v2({"version": 2, "saved_ns": "soon", "points": {}}),
], ids=["empty", "garbage", "not-deflate", "truncated", "not-an-object", "version",
        "lengths", "unknown-key", "v2-not-deflate", "v2-no-header-line", "v2-short-samples",
        "v2-negative-run", "v2-point-too-large", "v2-version", "v2-bad-field"])
def test_a_corrupt_file_is_logged_and_ignored(tmp_path: Path, content: bytes,
                                              caplog: pytest.LogCaptureFixture) -> None:
    loaded = _site(tmp_path)
    (tmp_path / FILE_NAME).write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="roomwarden.rules.warm"):
        _, _, taken = _restart(tmp_path, loaded, 10.0)
    assert taken == 0
    assert "event=rate_windows_ignored" in caplog.text


@pytest.mark.slow
def test_too_large_files_are_refused_unread(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    loaded = _site(tmp_path)
    path = tmp_path / FILE_NAME
    with path.open("wb") as handle:
        handle.write(MAGIC)
        handle.truncate(MAX_FILE_BYTES + 10)
    with caplog.at_level(logging.WARNING, logger="roomwarden.rules.warm"):
        assert _restart(tmp_path, loaded, 10.0)[2] == 0
    assert "larger than" in caplog.text
    # a small file that inflates past the bound (a deflate bomb) is refused too
    path.write_bytes(MAGIC + zlib.compress(b" " * (MAX_DECODED_BYTES + 1), 9))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="roomwarden.rules.warm"):
        assert _restart(tmp_path, loaded, 10.0)[2] == 0
    assert "decompresses to more than" in caplog.text


@pytest.mark.slow
@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300), deflate=st.booleans(),
       magic=st.sampled_from([MAGIC, MAGIC_V1]))
def test_any_bytes_never_crash_the_restore(tmp_path: Path, body: bytes, deflate: bool,
                                           magic: bytes) -> None:
    loaded = _site(tmp_path)
    (tmp_path / FILE_NAME).write_bytes(magic + (zlib.compress(body) if deflate else body))
    engine = _engine(loaded, ManualClock())
    assert RateMemory(tmp_path, ManualClock()).restore(engine, loaded) == 0


def test_a_newer_save_is_never_replaced_by_an_older_one(tmp_path: Path) -> None:
    """The periodic save (on a thread) and the stop's save may cross: the newest wins."""
    loaded = _site(tmp_path)
    clock = ManualClock(start_ns=START_NS, start_mono=50_000.0)
    engine = _engine(loaded, clock)
    _rise(engine, clock, 600.0)
    memory = RateMemory(tmp_path, clock)
    older = memory.snapshot(engine, loaded)
    clock.advance(5.0)
    assert memory.save(engine, loaded)
    assert not memory.write(older)
    assert decode((tmp_path / FILE_NAME).read_bytes())[0] == clock.now_ns()


async def test_periodic_saves_write_only_what_is_new(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` writes once per period while windows take samples, and not at all while no
    sample arrives (devices offline: idle means asleep, no disk write)."""
    from gateway.rules import warm

    monkeypatch.setattr(warm, "MIN_PERIOD", 0.05)
    monkeypatch.setattr(warm, "MAX_PERIOD", 0.05)
    loaded = _site(tmp_path)
    clock = ManualClock(start_ns=START_NS, start_mono=50_000.0)
    engine = _engine(loaded, clock)
    memory = RateMemory(tmp_path, clock)
    path = tmp_path / FILE_NAME
    writes: list[int] = []
    original = memory.write

    def counted(snapshot: warm.Snapshot) -> bool:
        written = original(snapshot)
        writes.append(int(written))
        return written

    monkeypatch.setattr(memory, "write", counted)
    task = asyncio.get_running_loop().create_task(memory.run(lambda: (engine, loaded)))
    try:
        deadline = time.monotonic() + 20.0
        while sum(writes) < 3:  # samples arrive: a save per period
            assert time.monotonic() < deadline, writes
            _rise(engine, clock, 20.0)
            await asyncio.sleep(0.08)
        assert path.exists()
        newest = max(w.samples[-1][0] for st_ in engine.rate_points().values()
                     for w in st_.rates if w.samples)
        while memory._saved_newest < newest:  # the last samples saved too
            assert time.monotonic() < deadline, (memory._saved_newest, newest)
            await asyncio.sleep(0.02)
        before = len(writes)
        for _ in range(6):  # no samples (the clock still runs): nothing written
            clock.advance(10.0)
            await asyncio.sleep(0.08)
        assert len(writes) == before
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_save_that_fails_is_logged_once_and_the_loop_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    loaded = _site(tmp_path)
    clock = ManualClock(start_ns=START_NS, start_mono=50_000.0)
    engine = _engine(loaded, clock)
    _rise(engine, clock, 120.0)
    memory = RateMemory(tmp_path / "missing-dir", clock)  # cannot be written
    with caplog.at_level(logging.WARNING, logger="roomwarden.rules.warm"):
        assert not memory.save(engine, loaded)
        clock.advance(1.0)
        assert not memory.save(engine, loaded)
    assert caplog.text.count("event=rate_windows_save_failed") == 1


def test_a_save_takes_the_same_heap_however_full_the_windows_are(tmp_path: Path) -> None:
    """A save (the snapshot on the event loop, the write on its thread) keeps its samples
    outside the heap (`warm_file.room`: mappings returned whole once the save is done) and
    streams the file, so the heap it takes is the same with the hour's windows nearly empty
    and full. Copies of every window and the ages' array on the heap grew with the windows
    for an hour, and glibc kept what each save freed (+2.4 MiB of RSS over the first hour at
    the 2,000-point site)."""
    import tracemalloc

    loaded = _site(tmp_path)
    clock = ManualClock(start_ns=START_NS, start_mono=50_000.0)
    engine = _engine(loaded, clock)
    memory = RateMemory(tmp_path, clock)

    def feed(seconds: float) -> int:
        for step in range(int(seconds / 15.0)):
            engine.on_samples([Sample(p, 22.0 + step * 1e-3, clock.now_ns(), Quality.GOOD)
                               for p in engine.rate_points()])
            clock.advance(15.0)
        return sum(len(w.samples) for s in engine.rate_points().values() for w in s.rates)

    def save_peak() -> int:
        tracemalloc.start()
        try:
            assert memory.write(memory.snapshot(engine, loaded))
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    feed(60.0)
    save_peak()  # the first save caches what it reuses (the devices' fingerprints)
    early_samples, early = feed(240.0), save_peak()
    full_samples, full = feed(3600.0), save_peak()
    assert full_samples - early_samples > 20 * len(engine.rate_points())
    # 25 bytes a sample more before (copies of the windows, the ages); now the header's digits
    assert full - early < 4 * (full_samples - early_samples), (early, full)


@pytest.mark.parametrize("site", sorted(Path(__file__).resolve().parents[2].joinpath(
    "firmware_configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_the_sources_hash_what_model_dump_gives(site: Path) -> None:
    """A device's fingerprint is made from its fields without pydantic's serializers (a
    running gateway builds none for it), and is the one made from `model_dump(mode="json")`
    before: a file saved by the release before restores after an upgrade."""
    import hashlib

    from gateway.rules.warm import fingerprints

    loaded = load_gateway_config(site)
    buses = {bus.id: bus.type for bus in loaded.config.buses}
    dumped = {}
    for device in loaded.config.devices:
        if device.enabled:
            what = [validator(Device).dump_python(device, mode="json",
                                                  exclude={"poll_interval", "location"}),
                    buses.get(device.bus), profile_adapter().dump_python(
                        loaded.profile_of(device), mode="json")]
            text = json.dumps(what, sort_keys=True, default=str)
            dumped[device.id] = hashlib.sha256(text.encode()).hexdigest()[:16]
    assert fingerprints(loaded) == dumped and len(dumped) >= 5
