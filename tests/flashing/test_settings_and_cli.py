"""The `flashing:` config section, and `roomwarden keys new`."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from gateway.config.loader import ConfigErrors, load_gateway_config
from gateway.config.site import FlashingSettings
from gateway.flashing.cli import add_parsers
from gateway.flashing.keys import load_private_key, new_key_pair, public_of

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "firmware_configs" / "telecom_equipment_room.yaml"


def write_site(tmp_path: Path, flashing: object) -> Path:
    data = yaml.safe_load(SITE.read_text())
    data["profiles_dir"] = str(ROOT / "hardware" / "profiles")
    data["flashing"] = flashing
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return path


def test_flashing_section_defaults_and_trusted_keys(tmp_path: Path) -> None:
    _, pub_a = new_key_pair(tmp_path / "k", "ops")
    _, pub_b = new_key_pair(tmp_path / "k", "li.wei")
    lines = [pub_a.read_text().strip(), pub_b.read_text().strip()]
    loaded = load_gateway_config(write_site(tmp_path, {"trusted_keys": lines,
                                                       "health_timeout": "45s"}))
    settings = loaded.config.flashing
    assert settings is not None
    assert settings.health_timeout == 45.0 and settings.max_bytes == 512 * 1024
    assert settings.allow_local_unsigned is True
    assert [k.name for k in settings.trusted()] == ["ops", "li.wei"]
    private = load_private_key(tmp_path / "k" / "ops.key")
    assert settings.trusted()[0].raw == public_of(private).raw
    without = yaml.safe_load(SITE.read_text())
    without.pop("flashing", None)
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump(without))
    assert load_gateway_config(bare, base_dir=SITE.parent).config.flashing is None  # optional
    assert FlashingSettings().trusted() == ()


@pytest.mark.parametrize(("flashing", "reason"), [
    ({"trusted_keys": ["ssh-rsa AAAA me"]}, "trusted_keys[0]: 'ssh-rsa AAAA me' is not a "
                                            "public key line"),
    ({"max_bytes": 10}, "greater than or equal to 1024"),
    ({"max_bytes": 10**9}, "less than or equal to 524288"),
    ({"health_timeout": "soon"}, "not a duration"),
    ({"trusted": []}, "unknown key"),
])
def test_bad_flashing_sections_are_reported_with_file_and_line(
        tmp_path: Path, flashing: object, reason: str) -> None:
    path = write_site(tmp_path, flashing)
    with pytest.raises(ConfigErrors) as info:
        load_gateway_config(path)
    text = str(info.value)
    assert reason in text and f"{path}:" in text and "flashing" in text


def test_a_key_listed_twice_is_refused(tmp_path: Path) -> None:
    _, pub = new_key_pair(tmp_path / "k", "ops")
    line = pub.read_text().strip()
    with pytest.raises(ConfigErrors, match="listed twice"):
        load_gateway_config(write_site(tmp_path, {"trusted_keys": [line, line + "x"]}))


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="roomwarden")
    config_sub = add_parsers(parser.add_subparsers())
    extra = config_sub.add_parser("apply")  # the lead adds `config apply` this way
    extra.set_defaults(func=lambda _args: 7)
    args = parser.parse_args(list(argv))
    result: int = args.func(args)
    return result


def test_keys_new_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "pass"
    secret.write_text("s3cret\n")
    assert run("keys", "new", "ops", "--dir", str(tmp_path / "keys")) == 0
    out = capsys.readouterr().out
    line = (tmp_path / "keys" / "ops.pub").read_text().strip()
    assert f'  - "{line}"' in out and "key id " in out
    assert run("keys", "new", "ops", "--dir", str(tmp_path / "keys")) == 1
    assert "already exists" in capsys.readouterr().err
    assert run("keys", "new", "vault", "--dir", str(tmp_path / "keys"),
               "--passphrase-file", str(secret)) == 0
    load_private_key(tmp_path / "keys" / "vault.key", b"s3cret")
    assert run("config", "apply") == 7
