"""`flash` and `config apply` check a config with `roomwarden check`'s own check and print its
errors exactly as `check` does: items named by id, the nearest key suggested. (`flash` said
`devices[0].poll_intervall: unknown key …` where `check` says
`devices[th-tx-a03].poll_intervall: … did you mean 'poll_interval'?`.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.cli import main
from gateway.flashing.keys import new_key_pair
from gateway.localservices import free_port

ROOT = Path(__file__).resolve().parents[2]
SITE_FILE = ROOT / "firmware_configs" / "telecom_equipment_room.yaml"
GW = "fsu-gz-tianhe-0301"
TYPO = "devices[th-tx-a03].poll_intervall: unknown key"


@pytest.fixture
def misspelt(tmp_path: Path) -> Path:
    """The shipped site with `poll_interval` of its first device (th-tx-a03) misspelt."""
    data = yaml.safe_load(SITE_FILE.read_text(encoding="utf-8"))
    first = data["devices"][0]
    assert first["id"] == "th-tx-a03"
    first["poll_intervall"] = first.pop("poll_interval")
    data["profiles_dir"] = str(ROOT / "hardware" / "profiles")
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return new_key_pair(tmp_path / "keys", "ops")[0]


def check_output(path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["check", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"FAIL {path}: 1 error(s)"
    assert TYPO in lines[1] and lines[1].endswith("did you mean 'poll_interval'?"), lines
    return lines


def test_flash_prints_the_errors_as_check_does(misspelt: Path, key: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    expected = check_output(misspelt, capsys)
    port = free_port()  # nothing is sent: the check comes first
    assert main(["flash", str(misspelt), "--gateway", GW, "--broker",
                 f"mqtt://127.0.0.1:{port}", "--key", str(key)]) == 2
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert err[:len(expected)] == expected, captured.err
    assert err[len(expected):] == [f"flash: nothing was sent: {misspelt} has 1 error(s)"]
    assert "devices[0]" not in captured.err and captured.out == ""


def test_config_apply_prints_the_errors_as_check_does(misspelt: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    expected = check_output(misspelt, capsys)
    assert main(["config", "apply", str(misspelt), "--socket",
                 str(tmp_path / "no-gateway.sock")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[:len(expected)] == expected, err
    assert err[len(expected):] == [f"roomwarden config apply: {misspelt} not applied "
                                   "(1 error(s))"]


def test_flash_prints_checks_warnings_too(tmp_path: Path, key: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A config that trusts no signing key: `check` warns (the gateway would refuse every
    later flash as `lockout`), and so does `flash` before it connects."""
    data = yaml.safe_load(SITE_FILE.read_text(encoding="utf-8"))
    data["flashing"]["trusted_keys"] = []
    data["uplink"] = {"broker": "mqtt://127.0.0.1:18830"}  # never connected to
    data["profiles_dir"] = str(ROOT / "hardware" / "profiles")
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    assert main(["check", str(path)]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines()
                if line.startswith("  warning: ")]
    assert any("trusts no signing key" in w for w in warnings), warnings
    port = free_port()
    assert main(["flash", str(path), "--gateway", GW, "--broker", f"mqtt://127.0.0.1:{port}",
                 "--key", str(key)]) == 2
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert out[0].startswith(f"checked {path}: gateway {GW}")
    assert out[1:len(warnings) + 1] == warnings
    # and flash's own: the profiles of profiles_dir do not travel with the config
    assert [line.split(":")[1] for line in out[len(warnings) + 1:]] == [
        f" profiles_dir {data['profiles_dir']!r} is not sent with the config"]
    assert f"cannot connect to 127.0.0.1:{port}" in captured.err
