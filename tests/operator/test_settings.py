"""The `operators:` section as a technician writes it: `roomwarden check`'s loader names the
file, line, path and reason of every mistake; a good section trusts the keys it lists."""

from __future__ import annotations

from pathlib import Path

import yaml

from gateway.config.loader import load_gateway_config
from tests.fixtures.operators import Keys
from tests.helpers import refused_in

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"


def with_operators(tmp_path: Path, operators: object) -> Path:
    data = yaml.safe_load(SITE.read_text())
    data["operators"] = operators
    data["profiles_dir"] = str(REPO / "hardware" / "profiles")
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_every_mistake_is_named_with_file_line_and_path(tmp_path: Path, keys: Keys) -> None:
    good = keys.zhang.public.line()
    path = with_operators(tmp_path, {"keys": [
        {"key": "ed25519:AAAA noc.li", "may": ["acknowledge"]},
        {"key": good, "may": ["acknowledge", "reboot"]},
        {"key": good.split()[0], "may": ["shelve"]},
        {"key": keys.acker.public.line(), "may": []},
    ], "allow_unsigned": "sometimes"})
    text = refused_in(path, "operators")
    assert "operators.keys[0]: key: the public key decodes to 3 bytes" in text
    assert "operators.keys[1].may[1]: Input should be 'acknowledge'" in text
    assert "operators.keys[2]: " in text and "name the key's owner" in text
    assert "operators.keys[3].may:" in text
    assert "operators.allow_unsigned:" in text


def test_a_good_section_trusts_its_keys(tmp_path: Path, keys: Keys) -> None:
    loaded = load_gateway_config(with_operators(tmp_path, keys.operators()))
    ops = loaded.config.operators
    zhang = ops.find(keys.zhang.public.key_id)
    assert zhang is not None and zhang.owner == "Zhang Wei (NOC)"
    acker = ops.find(keys.acker.public.key_id)
    assert acker is not None and acker.owner == "noc.acker" and acker.may == ("acknowledge",)
    assert ops.find(keys.stranger.public.key_id) is None and not ops.allow_unsigned
    # the shipped examples trust their example keys
    assert load_gateway_config(SITE).config.operators.keys
