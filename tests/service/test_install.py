"""systemd/install.sh: a dry run changes nothing and shows every step; `--root DIR` installs
the files into DIR (the commands acting on the running system are only printed) and can be
run again without losing a site's config."""

from __future__ import annotations

import filecmp
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "systemd" / "install.sh"


def install(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, **(env or {})})


def test_a_dry_run_shows_every_step_and_changes_nothing(tmp_path: Path) -> None:
    result = install("--dry-run", "--root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written
    plain = install("--dry-run")
    assert plain.returncode == 0, plain.stderr
    out = plain.stdout
    for step in [
        "useradd --system --user-group --groups dialout --home-dir /var/lib/roomwarden",
        "--shell /usr/sbin/nologin",
        "python3 -m venv /opt/roomwarden/venv",
        f"/opt/roomwarden/venv/bin/pip install --quiet --upgrade {REPO}",
        "/usr/share/roomwarden/profiles", "/usr/share/roomwarden/rules",
        "install -d -m 0750 /etc/roomwarden",
        f"install -m 0640 {REPO}/firmware_configs/telecom_equipment_room.yaml "
        "/etc/roomwarden/gateway.yaml",
        "chown root:roomwarden /etc/roomwarden/gateway.yaml",
        "/etc/modules-load.d/roomwarden.conf",
        "install -m 0644 " + str(REPO / "systemd/roomwarden.service") +
        " /etc/systemd/system/roomwarden.service",
        "systemctl daemon-reload", "systemctl enable roomwarden.service",
    ]:
        assert step in out, (step, out)
    assert "restart" not in out and "roomwarden-ingest.service\n" not in out.split(
        "install -m 0644")[0]
    started = install("--dry-run", "--start", "--ingest").stdout
    assert "would run: systemctl enable roomwarden-ingest.service" in started
    assert "would run: systemctl restart roomwarden.service" in started


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_install_into_a_root_and_again(tmp_path: Path) -> None:
    root = tmp_path / "target"
    root.mkdir()
    first = install(env={"DESTDIR": str(root)})
    assert first.returncode == 0, first.stderr
    units = root / "etc/systemd/system"
    for unit in ("roomwarden.service", "roomwarden-ingest.service"):
        assert filecmp.cmp(units / unit, REPO / "systemd" / unit, shallow=False)
        assert mode(units / unit) == 0o644
    config = root / "etc/roomwarden/gateway.yaml"
    assert mode(config) == 0o640 and mode(config.parent) == 0o750
    assert filecmp.cmp(config, REPO / "firmware_configs/telecom_equipment_room.yaml",
                       shallow=False)
    share = root / "usr/share/roomwarden"
    assert sorted(p.name for p in (share / "profiles").iterdir()) == sorted(
        p.name for p in (REPO / "hardware/profiles").iterdir())
    assert (share / "rules" / "fire.yaml").is_file()
    assert (root / "usr/share/doc/roomwarden/README.md").is_file()
    modules = (root / "etc/modules-load.d/roomwarden.conf").read_text().split("\n")
    assert "usbserial" in modules and "cdc_acm" in modules
    # what would act on the running system is printed, never done, under --root
    assert "would run: useradd" in first.stdout and "would run: systemctl enable" in first.stdout
    assert "would run: chown root:roomwarden" in first.stdout

    config.write_text("# this site's own config\n")
    second = install("--root", str(root))
    assert second.returncode == 0, second.stderr
    assert config.read_text() == "# this site's own config\n"  # never overwritten
    assert f"keeping {config}" in second.stdout
    assert not list(share.glob("*.new"))


def test_bad_options_are_refused() -> None:
    result = install("--frobnicate")
    assert result.returncode == 2 and "unknown option" in result.stderr
    assert install("--root").returncode == 2
    assert install("--dry-run", "--source", "/nonexistent").returncode == 1


def test_make_install_runs_the_script() -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    result = subprocess.run([make, "-n", "install", "INSTALL_FLAGS=--dry-run"], cwd=REPO,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and "sh systemd/install.sh --dry-run" in result.stdout


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck() -> None:
    result = subprocess.run(["shellcheck", "--shell=sh", str(SCRIPT)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout
