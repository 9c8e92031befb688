"""`roomwarden config apply --key` works the version out, like `flash` (issue 14): the running
config's + 1, asked over the control socket of a real running service."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.apply.conftest import device, edit_config, running_service


async def test_signed_local_apply_without_version(tmp_path: Path) -> None:
    from gateway.flashing.keys import load_private_key, new_key_pair, public_key_line, public_of

    private_path, _ = new_key_pair(tmp_path / "keys", "ops")
    key = load_private_key(private_path)

    def signed_only(data: dict[str, Any]) -> None:
        data["flashing"].update({"trusted_keys": [public_key_line(public_of(key), "ops")],
                                 "allow_local_unsigned": False})

    def offset(data: dict[str, Any]) -> None:
        device(data, "th-tx-a03").setdefault("points", {})["temperature"] = {"offset": -0.5}

    async with running_service(tmp_path, change=signed_only) as run:
        gw = run.service.gateway
        assert gw.config_version == 0
        new = tmp_path / "new.yaml"
        new.write_text(edit_config(run.text, offset), encoding="utf-8")
        out = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "gateway", "config", "apply", str(new), "--key",
            str(private_path), "--socket", str(run.control), "--author", "alice"],
            capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "signing as version 1" in out.stdout
        assert gw.config_version == 1


def test_no_gateway_no_version_is_a_clear_error(tmp_path: Path) -> None:
    from gateway.flashing.keys import new_key_pair

    private_path, _ = new_key_pair(tmp_path / "keys", "ops")
    site = Path(__file__).resolve().parents[2] / "firmware_configs" / "telecom_equipment_room.yaml"
    out = subprocess.run([sys.executable, "-m", "gateway", "config", "apply", str(site),
                          "--key", str(private_path), "--socket", str(tmp_path / "none.sock")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 3
    assert "no gateway is running here" in out.stderr
