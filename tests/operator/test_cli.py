"""`roomwarden ack | shelve | unshelve` as a central operator types them: real processes
against a real mosquitto and a gateway on a simulated room; the exit status and the printed
outcome follow the gateway's `cmd/result`."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from gateway.localservices import free_port
from tests.fixtures.operators import Keys
from tests.fixtures.services import Broker
from tests.operator.rig import OWNER, Rig, rig

ROOMWARDEN = Path(sys.executable).with_name("roomwarden")


async def roomwarden(r: Rig, broker: Broker, *args: str, key: Path) -> tuple[int, str]:
    cfg = r.gateway.loaded.config
    proc = await asyncio.create_subprocess_exec(
        str(ROOMWARDEN), *args, "--gateway", cfg.gateway.id, "--site", cfg.gateway.site,
        "--broker", f"mqtt://127.0.0.1:{broker.port}", "--key", str(key), "--timeout", "20s",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "ROOMWARDEN_KEYS": str(key.parent)})
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_the_operator_cli_end_to_end(tmp_path: Path, broker: Broker,
                                           keys: Keys) -> None:
    async with rig(tmp_path, broker, keys.operators()) as (r, _restart):
        await r.fire(True)
        alarm = str(r.fire_key())  # rule@subject
        zhang, acker = keys.zhang.private_path, keys.acker.private_path

        code, out = await roomwarden(r, broker, "shelve", "--alarm", alarm, "--for", "200h",
                                     "--reason", "quiet please", key=zhang)
        assert code == 1 and "REFUSED [too_long]" in out, out
        code, out = await roomwarden(r, broker, "shelve", "--alarm", alarm, "--for", "30m",
                                     "--reason", "quiet please", key=acker)
        assert code == 1 and "REFUSED [not_permitted]" in out, out
        code, out = await roomwarden(r, broker, "unshelve", "--alarm", alarm, key=zhang)
        assert code == 1 and "REFUSED [not_applicable]" in out and "not shelved" in out, out
        await r.still_sounding()

        code, out = await roomwarden(r, broker, "ack", "--alarm", alarm, "--note",
                                     "on my way", key=zhang)
        assert code == 0, out
        assert f"done: 1 alarm(s) changed, journalled as {OWNER}" in out
        await r.coil(False)
        assert r.gateway.core.alarms.get(r.fire_key()).acked_by == OWNER

        code, out = await roomwarden(r, broker, "shelve", "--alarm", alarm, "--for", "30m",
                                     "--reason", "detector being cleaned", key=zhang)
        assert code == 0, out
        assert r.gateway.core.alarms.get(r.fire_key()).shelf is not None
        code, out = await roomwarden(r, broker, "unshelve", "--alarm", alarm, key=zhang)
        assert code == 0 and r.gateway.core.alarms.get(r.fire_key()).shelf is None, out

        # nothing sent: a bad alarm, a missing key, a broker that is not there
        code, out = await roomwarden(r, broker, "ack", "--alarm", "no-at-sign", key=zhang)
        assert code == 2 and "RULE@SUBJECT" in out, out
        code, out = await roomwarden(r, broker, "ack", "--all", key=tmp_path / "none.key")
        assert code == 2 and "no such key file" in out, out
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            str(ROOMWARDEN), "ack", "--all", "--gateway", "g", "--site", "s", "--broker",
            f"mqtt://127.0.0.1:{port}", "--key", str(zhang),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out_b, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 2 and "cannot connect" in out_b.decode(), out_b
