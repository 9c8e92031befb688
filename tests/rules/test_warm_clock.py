"""The rate warm start across wall-clock steps and stale clocks (K3 of the clock audit).

A Raspberry Pi has no RTC: it boots with a stale clock (fake-hwclock: the time of the last
shutdown) and NTP steps it later. The audit saw a gateway whose clock resumed at the shutdown
time take a 3-hour power cut for 10 s: its restored windows saw the room's 12 °C warming as a
fast rise, a false MAJOR rate-of-rise alarm 15 s after the boot. Now the gap since the save is
the monotonic clock's in the same boot, the wall clock's after a reboot only if the system
clock is synchronised now and was at the save (the file says so since 7 Dec 2026); otherwise
the windows start cold, logged."""

from __future__ import annotations

import logging
from array import array
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.clock import ManualClock
from gateway.config.loader import LoadedConfig
from gateway.rules.engine import RuleEngine
from gateway.rules.warm import FILE_NAME, RateMemory
from tests.rules.test_warm import (
    POINT,
    SAVED_BOOT,
    START_NS,
    _engine,
    _judged,
    _rise,
    _saved_run,
    _site,
    booted,
)

SAVED_MONO = 51_200.0
"""The monotonic clock at `_saved_run`'s save."""


def _flat_run(tmp: Path, loaded: LoadedConfig) -> None:
    """A first process: 20 min of a room at 23 °C, saved in boot `SAVED_BOOT`."""
    clock = ManualClock(start_ns=START_NS, start_mono=50_000.0)
    engine = _engine(loaded, clock)
    _rise(engine, clock, 1200.0, per_h=0.0, start=23.0)
    with booted(SAVED_BOOT):
        assert RateMemory(tmp, clock).save(engine, loaded)


def _start(tmp: Path, loaded: LoadedConfig, wall_s: float, mono: float, boot: str,
           synced: bool) -> tuple[RuleEngine, ManualClock, int]:
    """A process whose wall clock reads the save's + `wall_s`, its monotonic clock `mono`, in
    boot `boot`, with the system clock synchronised or not: a fresh engine, restored."""
    clock = ManualClock(start_ns=START_NS + int((1200 + wall_s) * 1e9), start_mono=mono)
    engine = _engine(loaded, clock)
    with booted(boot, synced):
        return engine, clock, RateMemory(tmp, clock).restore(engine, loaded)


def test_the_file_says_its_boot_and_monotonic_clock(tmp_path: Path) -> None:
    from gateway.rules.warm_file import decode_saved

    _saved_run(tmp_path, _site(tmp_path))
    saved = decode_saved((tmp_path / FILE_NAME).read_bytes())
    assert saved.boot_id == SAVED_BOOT and saved.saved_mono == SAVED_MONO
    assert saved.saved_ns == START_NS + int(1200e9)


def test_a_reboot_with_a_stale_clock_starts_cold(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """The audit's run: 23 °C saved; a 3-hour power cut in which the room warmed to 35 °C;
    the reboot's clock resumes 10 s after the save (fake-hwclock), not synchronised. Before
    the fix the windows took the 23 °C as 10 s old and 35 °C was a fast rise at once."""
    loaded = _site(tmp_path)
    _flat_run(tmp_path, loaded)
    with caplog.at_level(logging.INFO, logger="roomwarden.rules.warm"):
        engine, clock, taken = _start(tmp_path, loaded, 10.0, 8.0, "boot-2", synced=False)
    assert not _judged(engine, clock, 35.0)  # before: a fast rise at once
    assert taken == 0
    cold = [r.getMessage() for r in caplog.records if "event=rate_windows_cold" in r.message]
    assert len(cold) == 1 and "another boot" in cold[0] and "not synchronised" in cold[0]


def test_a_reboot_with_a_synchronised_clock_trusts_the_wall_clock(tmp_path: Path) -> None:
    """Synchronised at the save and now, the wall clock says 3 h passed: longer than the
    window, cold; 40 s: warm, judged at once."""
    loaded = _site(tmp_path)
    last = _saved_run(tmp_path, loaded)
    assert _start(tmp_path, loaded, 3 * 3600.0, 8.0, "boot-2", synced=True)[2] == 0
    engine, clock, taken = _start(tmp_path, loaded, 40.0, 8.0, "boot-2", synced=True)
    assert taken > 50 and _judged(engine, clock, last + 0.15)


def test_the_same_boot_measures_the_gap_on_the_monotonic_clock(tmp_path: Path) -> None:
    """A restart 40 s after the save in the same boot (SIGKILL, a service restart, an
    upgrade), the wall clock stepped meanwhile: warm whether it went back an hour or on a
    day, synchronised or not (before the fix: all 'from the future', or all too old)."""
    loaded = _site(tmp_path)
    last = _saved_run(tmp_path, loaded)
    for wall in (-3600.0, 86400.0):
        for synced in (False, True):
            engine, clock, taken = _start(tmp_path, loaded, wall, SAVED_MONO + 40.0,
                                          SAVED_BOOT, synced)
            assert taken > 50, (wall, synced)
            assert _judged(engine, clock, last + 0.15)


def test_the_same_boot_after_a_long_stop_is_cold_whatever_the_wall_clock_says(
        tmp_path: Path) -> None:
    """Stopped 2 h in the same boot while NTP stepped the clock back 2 h: the wall clock says
    a few seconds, the monotonic clock says longer than the window — cold (before the fix:
    restored as if a few seconds had passed, and a 12 °C warming was a fast rise)."""
    loaded = _site(tmp_path)
    _flat_run(tmp_path, loaded)
    engine, clock, taken = _start(tmp_path, loaded, 5.0, SAVED_MONO + 7200.0, SAVED_BOOT,
                                  synced=False)
    assert not _judged(engine, clock, 35.0)
    assert taken == 0


def test_a_file_of_an_unknown_boot_and_clock_state_starts_cold(tmp_path: Path) -> None:
    """A version-2 file written before boot ids were saved (no boot id, no clock state): its
    wall clock may have been anything — cold, synchronised now or not."""
    from gateway.rules.warm_file import decode_saved, encode

    loaded = _site(tmp_path)
    _flat_run(tmp_path, loaded)
    path = tmp_path / FILE_NAME
    saved = decode_saved(path.read_bytes())
    points = {p: (r.source, [(array("d", [SAVED_MONO - a / 1000.0 for a in r.ages_ms]),
                              array("d", r.values))])
              for p, r in saved.points.items()}
    path.write_bytes(encode(saved.saved_ns, SAVED_MONO, points))
    old = decode_saved(path.read_bytes())
    assert old.boot_id is None and old.saved_mono == SAVED_MONO
    assert _start(tmp_path, loaded, 10.0, SAVED_MONO + 10.0, SAVED_BOOT, synced=False)[2] == 0
    assert _start(tmp_path, loaded, 10.0, SAVED_MONO + 10.0, SAVED_BOOT, synced=True)[2] == 0


def _v2_file(tmp: Path, boot_id: str | None) -> None:
    """The file `_saved_run` wrote, rewritten as version 2 (before 7 Dec 2026: no clock state)."""
    from gateway.rules.warm_file import MAGIC_V2, decode_saved, encode

    path = tmp / FILE_NAME
    saved = decode_saved(path.read_bytes())
    assert saved.synced is True  # synchronised (`booted`'s default) at the save
    points = {p: (r.source, [(array("d", [SAVED_MONO - a / 1000.0 for a in r.ages_ms]),
                              array("d", r.values))])
              for p, r in saved.points.items()}
    path.write_bytes(encode(saved.saved_ns, SAVED_MONO, points, boot_id))
    assert path.read_bytes().startswith(MAGIC_V2)
    assert decode_saved(path.read_bytes()).synced is None


def test_a_save_on_a_clock_ahead_and_not_synchronised_is_not_trusted_after_a_reboot(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The audit of 7 Dec 2026: 23 °C saved while the clock ran 3 h ahead, not synchronised
    (an RTC kept in local time, no NTP yet); off 3 h while the room warmed to 35 °C; rebooted
    with NTP synchronised, the wall clock said the save was 10 s ago. Before the fix the
    windows took the 23 °C as 10 s old: a false rate alarm within 2 minutes at a steady
    35 °C. Now cold, as a start with no file."""
    loaded = _site(tmp_path)
    ahead = 3 * 3600.0
    clock = ManualClock(start_ns=START_NS + int(ahead * 1e9), start_mono=50_000.0)
    engine = _engine(loaded, clock)
    _rise(engine, clock, 1200.0, per_h=0.0, start=23.0)
    with booted(SAVED_BOOT, synced=False):
        assert RateMemory(tmp_path, clock).save(engine, loaded)
    with caplog.at_level(logging.INFO, logger="roomwarden.rules.warm"):
        engine, clock, taken = _start(tmp_path, loaded, ahead + 10.0, 8.0, "boot-2",
                                      synced=True)
    alarms = [_judged(engine, clock, 35.0)]
    for _ in range(12):
        clock.advance(10.0)
        alarms.append(_judged(engine, clock, 35.0))
    assert not any(alarms)  # before: True after 2 minutes
    assert taken == 0
    cold = [r.getMessage() for r in caplog.records if "event=rate_windows_cold" in r.message]
    assert len(cold) == 1 and "was not synchronised" in cold[0], caplog.text


def test_a_version_2_file_is_read_its_clock_state_unknown(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    """A file of before 7 Dec 2026 (no clock state): after a reboot cold even on a
    synchronised clock (before the fix: restored by the wall clock); in the same boot still
    measured on the monotonic clock, warm."""
    loaded = _site(tmp_path)
    last = _saved_run(tmp_path, loaded)
    _v2_file(tmp_path, SAVED_BOOT)
    with caplog.at_level(logging.INFO, logger="roomwarden.rules.warm"):
        assert _start(tmp_path, loaded, 40.0, 8.0, "boot-2", synced=True)[2] == 0
    assert "is not known to have been synchronised" in caplog.text
    engine, clock, taken = _start(tmp_path, loaded, 40.0, SAVED_MONO + 40.0, SAVED_BOOT,
                                  synced=False)
    assert taken > 50 and _judged(engine, clock, last + 0.15)


def test_a_monotonic_clock_behind_the_save_in_the_same_boot_starts_cold(
        tmp_path: Path) -> None:
    loaded = _site(tmp_path)
    _saved_run(tmp_path, loaded)
    assert _start(tmp_path, loaded, 10.0, SAVED_MONO - 1.0, SAVED_BOOT, synced=True)[2] == 0


def test_within_a_boot_no_wall_clock_step_changes_what_is_restored(tmp_path: Path) -> None:
    """Whatever the wall clock reads at the restart (1970 to years on), a restart in the same
    boot restores exactly what it does with no step (hypothesis over the step and the gap)."""
    loaded = _site(tmp_path)
    _saved_run(tmp_path, loaded)

    def windows(wall: float, gap: float) -> list[list[tuple[float, float]]]:
        engine = _start(tmp_path, loaded, wall, SAVED_MONO + gap, SAVED_BOOT, synced=False)[0]
        return [list(w.samples) for w in engine.rate_points()[POINT].rates]

    @settings(max_examples=40, deadline=None)
    @given(step=st.floats(-56 * 365 * 86400.0, 10 * 365 * 86400.0), gap=st.floats(0.0, 4000.0))
    def check(step: float, gap: float) -> None:
        assert windows(gap + step, gap) == windows(gap, gap)

    check()
