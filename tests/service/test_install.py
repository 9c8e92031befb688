"""systemd/install.sh: a dry run changes nothing and shows every step; `--root DIR` installs
the files into DIR (the commands acting on the running system are only printed) and can be
run again without losing a site's config. An upgrade is staged, checked by the new version
(CHECK_PYTHON under --root) against every config the gateway may boot, and only then switched:
a config the new version refuses leaves the installed version as it was."""

from __future__ import annotations

import filecmp
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "systemd" / "install.sh"


def install(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("CHECK_PYTHON", "DESTDIR")}
    return subprocess.run(["sh", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=120, check=False, env={**base, **(env or {})})


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
        "python3 -m venv /opt/roomwarden/venv.new",
        "/opt/roomwarden/venv.new/bin/pip install --quiet --disable-pip-version-check "
        f"-c {REPO}/constraints.txt {REPO}",
        f"cp -R {REPO}/hardware/profiles /usr/share/roomwarden/profiles.new",
        f"cp -R {REPO}/edge_rules /usr/share/roomwarden/rules.new",
        "mv /opt/roomwarden/venv.new /opt/roomwarden/venv",
        # the unit's byte-code, compiled before the first start (test_unit_run.py: it then
        # compiles nothing), into the unit's cache directory, owned by its user
        "install -d -m 0750 /var/cache/roomwarden",
        "env PYTHONPYCACHEPREFIX=/var/cache/roomwarden/pycache PYTHONNODEBUGRANGES=1 "
        "/opt/roomwarden/venv/bin/python -m gateway.precompile",
        "chown -R roomwarden:roomwarden /var/cache/roomwarden/pycache",
        "mv /usr/share/roomwarden/profiles.new /usr/share/roomwarden/profiles",
        "mv /usr/share/roomwarden/rules.new /usr/share/roomwarden/rules",
        "install -d -m 0750 /etc/roomwarden",
        f"install -m 0640 {REPO}/firmware_configs/telecom_equipment_room.yaml "
        "/etc/roomwarden/gateway.yaml",
        "chown root:roomwarden /etc/roomwarden/gateway.yaml",
        "/etc/modules-load.d/roomwarden.conf",
        "install -m 0644 " + str(REPO / "systemd/roomwarden.service") +
        " /etc/systemd/system/roomwarden.service",
        "systemctl daemon-reload",
        "roomwarden.service NOT enabled: /etc/roomwarden/gateway.yaml is the example config",
        "then: sudo systemctl enable --now roomwarden",
        "would run: systemctl try-restart roomwarden.service",
    ]:
        assert step in out, (step, out)
    assert "systemctl restart" not in out and "roomwarden-ingest.service\n" not in out.split(
        "install -m 0644")[0]
    assert "install --quiet --upgrade pip" not in out  # no network needed for pip itself
    assert "systemctl enable roomwarden.service" not in out  # not on the example config
    started = install("--dry-run", "--start", "--ingest").stdout
    assert "would run: systemctl enable roomwarden.service" in started  # asked to start it
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
    assert "would run: useradd" in first.stdout and "would run: chown root:roomwarden" in \
        first.stdout
    # the example config just installed: not enabled (it would poll and switch outputs at
    # the example's addresses at the next boot)
    assert "systemctl enable roomwarden.service" not in first.stdout
    assert "roomwarden.service NOT enabled" in first.stdout

    config.write_text("# this site's own config\n")
    second = install("--root", str(root))
    assert second.returncode == 0, second.stderr
    assert config.read_text() == "# this site's own config\n"  # never overwritten
    assert f"keeping {config}" in second.stdout
    assert "would run: systemctl enable roomwarden.service" in second.stdout  # the site's own
    assert not list(share.glob("*.new"))
    # --root cannot run the new venv: without CHECK_PYTHON the check is skipped, and says so
    assert f"config check SKIPPED for {config}" in second.stdout


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


# --- upgrades: staged, checked by the new version, then switched ------------------------------

EXAMPLE = REPO / "firmware_configs/telecom_equipment_room.yaml"
CHECKER = {"CHECK_PYTHON": str(REPO / ".venv/bin/python")}
if not Path(CHECKER["CHECK_PYTHON"]).exists():  # another layout: the interpreter running us
    CHECKER = {"CHECK_PYTHON": sys.executable}


def installed(tmp_path: Path) -> Path:
    """A root with RoomWarden installed, its share dirs and units marked as the old version's
    (so a test can tell them from the checkout's)."""
    root = tmp_path / "target"
    root.mkdir()
    first = install("--root", str(root))
    assert first.returncode == 0, first.stderr
    share = root / "usr/share/roomwarden"
    with (share / "rules/fire.yaml").open("a") as f:
        f.write("# the old version's\n")
    with (share / "profiles/generic_th_sensor.yaml").open("a") as f:
        f.write("# the old version's\n")
    for unit in (root / "etc/systemd/system").iterdir():
        unit.write_text("# the old version's unit\n")
    return root


def with_bus_timeout(timeout: str, text: str | None = None) -> str:
    """The example config with its UPS bus's timeout (1s) set to `timeout`."""
    text = EXAMPLE.read_text() if text is None else text
    assert text.count("\n    timeout: 1s\n") == 1
    return text.replace("\n    timeout: 1s\n", f"\n    timeout: {timeout}\n")


def assert_old_version_in_place(root: Path) -> None:
    share = root / "usr/share/roomwarden"
    assert (share / "rules/fire.yaml").read_text().endswith("# the old version's\n")
    assert (share / "profiles/generic_th_sensor.yaml").read_text().endswith(
        "# the old version's\n")
    assert sorted(p.name for p in share.iterdir()) == ["profiles", "rules"]  # no .new/.previous
    for unit in (root / "etc/systemd/system").iterdir():
        assert unit.read_text() == "# the old version's unit\n"
    assert not list((root / "etc/roomwarden").glob(".*"))  # no check copy left behind


def test_an_upgrade_whose_checker_refuses_the_config_changes_nothing(tmp_path: Path) -> None:
    """The bricking upgrade: a bus timeout of 15 s, more than the limit (10 s,
    gateway/config/site.py MAX_BUS_TIMEOUT_S), is refused before anything is switched."""
    root = installed(tmp_path)
    config = root / "etc/roomwarden/gateway.yaml"
    config.write_text(with_bus_timeout("15s"))
    result = install("--root", str(root), env=CHECKER)
    assert result.returncode == 1, result.stdout
    assert f"FAIL {config}" in result.stdout
    assert "buses[ups-serial].timeout: 15s is longer than the limit of 10s" in result.stdout
    assert f"refuses the config(s): {config}" in result.stderr
    assert "the running service are unchanged" in result.stderr
    assert "mv " not in result.stdout and "try-restart" not in result.stdout
    assert_old_version_in_place(root)
    assert config.read_text() == with_bus_timeout("15s")


def test_an_upgrade_the_checker_accepts_switches_and_keeps_the_previous(tmp_path: Path) -> None:
    root = installed(tmp_path)
    config = root / "etc/roomwarden/gateway.yaml"
    result = install("--root", str(root), env=CHECKER)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ok   {config}: gateway fsu-gz-tianhe-0301" in result.stdout
    share = root / "usr/share/roomwarden"
    assert filecmp.cmp(share / "rules/fire.yaml", REPO / "edge_rules/fire.yaml", shallow=False)
    assert (share / "rules.previous/fire.yaml").read_text().endswith("# the old version's\n")
    assert (share / "profiles.previous/generic_th_sensor.yaml").read_text().endswith(
        "# the old version's\n")
    for unit in ("roomwarden.service", "roomwarden-ingest.service"):
        assert filecmp.cmp(root / "etc/systemd/system" / unit, REPO / "systemd" / unit,
                           shallow=False)
    # the venv is switched the same way (printed under --root), and the service restarted
    assert "would run: mv /opt/roomwarden/venv /opt/roomwarden/venv.previous" in result.stdout
    assert "would run: mv /opt/roomwarden/venv.new /opt/roomwarden/venv" in result.stdout
    assert "would run: systemctl try-restart roomwarden.service" in result.stdout
    assert "sudo mv \"$d.previous\" \"$d\"" in result.stdout  # how to go back
    # again: one .previous of each, no staged copies left
    again = install("--root", str(root), env=CHECKER)
    assert again.returncode == 0, again.stdout + again.stderr
    assert sorted(p.name for p in share.iterdir()) == [
        "profiles", "profiles.previous", "rules", "rules.previous"]
    assert filecmp.cmp(share / "rules.previous/fire.yaml", REPO / "edge_rules/fire.yaml",
                       shallow=False)


def test_a_site_profile_in_the_shipped_library_survives_an_upgrade(tmp_path: Path) -> None:
    """A technician's profile in /usr/share/roomwarden/profiles, which the site's config uses,
    is carried into the new library (with a warning naming it) instead of deleted: without it
    the gateway could not start ("profile 'acme_th_sensor' not found")."""
    root = installed(tmp_path)
    share = root / "usr/share/roomwarden"
    own = (REPO / "hardware/profiles/generic_th_sensor.yaml").read_text().replace(
        "id: generic_th_sensor", "id: acme_th_sensor")
    (share / "profiles/acme_th_sensor.yaml").write_text(own)
    config = root / "etc/roomwarden/gateway.yaml"
    config.write_text(EXAMPLE.read_text().replace("profile: generic_th_sensor",
                                                  "profile: acme_th_sensor"))
    result = install("--root", str(root), env=CHECKER)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (share / "profiles/acme_th_sensor.yaml").read_text() == own
    assert (share / "profiles.previous/acme_th_sensor.yaml").read_text() == own
    warning = result.stderr
    assert "does not ship: acme_th_sensor.yaml" in warning
    assert "/etc/roomwarden/profiles" in warning and "profiles_dir" in warning
    assert f"ok   {config}" in result.stdout


def test_an_invalid_flashed_config_refuses_the_upgrade(tmp_path: Path) -> None:
    """The flashed last-known-good config (the store's `active` generation) is booted before
    the installed file: the new version checks it too, as the gateway reads it (its relative
    paths from /etc/roomwarden)."""
    root = installed(tmp_path)
    store = root / "var/lib/roomwarden/config"
    generation = store / "configs/v7-0123456789ab-1733390000000000000"
    generation.mkdir(parents=True)
    (store / "active").symlink_to("configs/" + generation.name)
    flashed = store / "active/config.yaml"
    (generation / "config.yaml").write_text(with_bus_timeout("15s"))
    result = install("--root", str(root), env=CHECKER)
    assert result.returncode == 1, result.stdout
    assert f"ok   {root / 'etc/roomwarden/gateway.yaml'}" in result.stdout
    assert f"FAIL {flashed}" in result.stdout
    assert "buses[ups-serial].timeout: 15s is longer than the limit of 10s" in result.stdout
    assert f"refuses the config(s): {flashed}" in result.stderr
    assert_old_version_in_place(root)

    # a good flashed config whose own profiles are in /etc/roomwarden/profiles
    # (`profiles_dir: profiles`, relative to /etc/roomwarden, not to the generation)
    site_profiles = root / "etc/roomwarden/profiles"
    site_profiles.mkdir()
    (site_profiles / "acme_th_sensor.yaml").write_text(
        (REPO / "hardware/profiles/generic_th_sensor.yaml").read_text().replace(
            "id: generic_th_sensor", "id: acme_th_sensor"))
    (generation / "config.yaml").write_text(
        "profiles_dir: profiles\n" + EXAMPLE.read_text().replace(
            "profile: generic_th_sensor", "profile: acme_th_sensor"))
    result = install("--root", str(root), env=CHECKER)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ok   {flashed}" in result.stdout
    assert not list((root / "etc/roomwarden").glob(".*"))


def test_force_switches_anyway_and_says_so(tmp_path: Path) -> None:
    root = installed(tmp_path)
    (root / "etc/roomwarden/gateway.yaml").write_text(with_bus_timeout("15s"))
    result = install("--root", str(root), "--force", env=CHECKER)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--force: switching to the new version ANYWAY" in result.stderr
    share = root / "usr/share/roomwarden"
    assert filecmp.cmp(share / "rules/fire.yaml", REPO / "edge_rules/fire.yaml", shallow=False)


def test_the_check_reads_the_staged_rule_packs(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    """ROOMWARDEN_RULES (as ROOMWARDEN_PROFILES for profiles) is where the rule packs are
    read: install.sh points it at the staged rules.new for the new version's check."""
    from gateway.rules.config import default_rules_dir

    monkeypatch.setenv("ROOMWARDEN_RULES", str(tmp_path))
    assert default_rules_dir() == tmp_path
    monkeypatch.delenv("ROOMWARDEN_RULES")
    assert default_rules_dir() == REPO / "edge_rules"
