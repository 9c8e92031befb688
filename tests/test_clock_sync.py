"""gateway.clocksync (the kernel's boot id and clock-synchronisation state) and the manual
clock's wall-clock step, which the clock-jump tests use."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gateway import clocksync
from gateway.clock import ManualClock


def test_a_wall_step_moves_only_the_wall_clock() -> None:
    clock = ManualClock(start_ns=10**18, start_mono=5.0)
    clock.step_wall(-3600.0)
    assert clock.now_ns() == 10**18 - 3600 * 10**9 and clock.monotonic() == 5.0
    clock.advance(2.0)
    assert clock.now_ns() == 10**18 - 3598 * 10**9 and clock.monotonic() == 7.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's adjtimex, /proc")
def test_the_kernel_is_asked() -> None:
    status = clocksync.kernel_status()
    assert isinstance(status, int)  # adjtimex with modes 0: read only, never a change
    if not clocksync.TIMESYNCD_FLAG.exists():
        assert clocksync.synchronised() == (not status & clocksync.STA_UNSYNC)
    boot = clocksync.boot_id()
    assert boot is not None and len(boot) == 36 and boot == clocksync.boot_id()


def test_timesyncds_flag_first_then_the_unsync_bit(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    """timesyncd's flag is enough (ctypes is never imported for it: ~0.8 MiB for good);
    without the flag the kernel's STA_UNSYNC decides."""
    monkeypatch.setattr(clocksync, "TIMESYNCD_FLAG", tmp_path / "synchronized")
    asked: list[int] = []

    def kernel(status: int) -> None:
        def read() -> int:
            asked.append(1)
            return status

        monkeypatch.setattr(clocksync, "kernel_status", read)

    kernel(0x2000 | clocksync.STA_UNSYNC)
    assert not clocksync.synchronised() and asked
    kernel(0x2001)  # STA_PLL | STA_NANO
    assert clocksync.synchronised()
    (tmp_path / "synchronized").touch()
    asked.clear()
    kernel(0x2000 | clocksync.STA_UNSYNC)
    assert clocksync.synchronised() and not asked


def test_without_adjtimex_timesyncds_flag_is_taken(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setattr(clocksync, "kernel_status", lambda: None)
    monkeypatch.setattr(clocksync, "TIMESYNCD_FLAG", tmp_path / "synchronized")
    assert not clocksync.synchronised()
    (tmp_path / "synchronized").touch()
    assert clocksync.synchronised()


def test_no_boot_id_where_the_kernel_gives_none(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setattr(clocksync, "BOOT_ID_PATH", tmp_path / "missing")
    assert clocksync.boot_id() is None
    (tmp_path / "empty").write_text("\n")
    monkeypatch.setattr(clocksync, "BOOT_ID_PATH", tmp_path / "empty")
    assert clocksync.boot_id() is None
