"""`roomwarden ack | shelve | unshelve` as a central operator types them: real processes
against a real mosquitto and a gateway on a simulated room; the exit status and the printed
outcome follow the gateway's `cmd/result`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from gateway.localservices import free_port
from tests.fixtures.operators import Keys
from tests.fixtures.services import Broker, Subscriber
from tests.operator.rig import OWNER, Rig, rig

ROOMWARDEN = Path(sys.executable).with_name("roomwarden")
REPO = Path(__file__).resolve().parents[2]


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


async def test_a_command_the_cli_signed_for_another_site_or_root_is_refused_here(
        tmp_path: Path, broker: Broker, keys: Keys) -> None:
    """`roomwarden ack --site other-site` (or `--root acme/rw`) for a gateway of the same id:
    its payload, taken off the broker and published to this site's gateway, is refused
    `wrong_gateway` and changes nothing — the signature binds the command to its site and
    topic root, not to the gateway id alone (ids are unique within a site only, and a NOC key
    is trusted at every site). Before, it was carried out and the siren went off (an audit).
    The same CLI aimed at this gateway is carried out."""
    async with rig(tmp_path, broker, keys.operators()) as (r, _restart):
        await r.fire(True)
        ref = r.fire_ref()
        alarm = f"{ref.rule}@{ref.subject}"

        async def cli(site: str, root: str, timeout: str) -> tuple[int, str]:
            # `-m gateway` from this checkout (the installed script may import another one)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "ack", "--alarm", alarm, "--gateway",
                r.gateway_id, "--site", site, "--root", root, "--broker",
                f"mqtt://127.0.0.1:{broker.port}", "--key", str(keys.zhang.private_path),
                "--timeout", timeout, cwd=REPO, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode is not None
            return proc.returncode, out.decode()

        for site, root in (("other-site", "roomwarden"), (r.site_id, "acme/rw")):
            wire = Subscriber(broker.port, f"{root}/{site}/{r.gateway_id}/cmd")
            try:
                assert wire.subscribed.wait(5)
                code, out = await cli(site, root, "1s")  # nobody answers there
                assert code == 1 and "no answer" in out, out
                captured = wire.snapshot(lambda m: True)
                assert len(captured) == 1, captured
            finally:
                wire.close()
            payload = captured[0].payload
            r.send(payload)  # replayed at this site's gateway of the same id
            answer = await r.answer(json.loads(payload)["id"])
            assert not answer.ok and answer.code == "wrong_gateway", (site, root, answer)
            await r.still_sounding()
        assert r.owner_acks() == []

        code, out = await cli(r.site_id, "roomwarden", "20s")
        assert code == 0 and "done: 1 alarm(s) changed" in out, out
        await r.coil(False)
